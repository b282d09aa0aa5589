"""The age fact, without personal data leaving the vault.

The gate needs the player's age in whole years; the date of birth lives only in the vault. An
`AgeSource` answers the age; `VaultAges` reads the date through the vault role the first time a
player is seen and keeps it in this process's memory (bounded, least recently used first out),
so a player's later decisions cost no vault round trip. Players registered without personal data
have no age on file (None): the rules decide what that means.

What is remembered is read again after a time to live (an hour by default): personal data stored
after a first decision, or erased through another process, is seen within that time. An erasure
through this process drops the entry at once (`forget`).
"""

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Protocol

from compliance.vault import service
from compliance.vault.keys import KeyProvider
from core.uow import UnitOfWorkFactory


class AgeSource(Protocol):
    async def age_years(self, player_id: uuid.UUID, on: date) -> int | None: ...


def whole_years(born: date, on: date) -> int:
    """Completed years: a birthday counts from its day (29 February: from 1 March)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class VaultAges:
    def __init__(
        self,
        uows: UnitOfWorkFactory,
        keys: KeyProvider,
        *,
        capacity: int = 100_000,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uows = uows
        self._keys = keys
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._clock = clock
        # player -> (read again from this instant of `clock`, date of birth or None on file)
        self._born: OrderedDict[uuid.UUID, tuple[float, date | None]] = OrderedDict()

    async def age_years(self, player_id: uuid.UUID, on: date) -> int | None:
        now = self._clock()
        cached = self._born.get(player_id)
        if cached is not None and now < cached[0]:
            born = cached[1]
        else:
            async with self._uows() as uow:
                born = await service.date_of_birth(uow, player_id=player_id, keys=self._keys)
            self._born[player_id] = (now + self._ttl_s, born)
        self._born.move_to_end(player_id)
        if len(self._born) > self._capacity:
            self._born.popitem(last=False)
        return None if born is None else whole_years(born, on)

    def forget(self, player_id: uuid.UUID) -> None:
        """Drop what is remembered of a player (after an erasure)."""
        self._born.pop(player_id, None)
