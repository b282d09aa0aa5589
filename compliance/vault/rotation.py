"""`pitwarden vault rotate-kek`: rewrap every data key under a new KEK version.

Field ciphertexts are not touched: only the small wrapped data keys change. Each batch is its
own transaction, so a crash loses at most the batch in flight; running the command again
resumes (it adds a new version only when no data key still lags behind the current one).
Versions that no data key uses any more are retired: their key material is destroyed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compliance.vault.keys import KeyProvider, WrappedKey
from core import journal, sql
from core.journal import EventContext
from core.uow import UnitOfWorkFactory

if TYPE_CHECKING:
    import uuid

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Rotation:
    version: int
    rewrapped: int
    retired: list[int]


async def _lagging(uows: UnitOfWorkFactory, version: int) -> int:
    async with uows() as uow:
        return int(
            await sql.scalar(
                uow,
                "SELECT count(*) FROM vault.data_keys WHERE kek_version < %(v)s",
                {"v": version},
            )
        )


async def rotate_kek(
    uows: UnitOfWorkFactory,
    keys: KeyProvider,
    *,
    ctx: EventContext,
    batch: int = 1000,
    progress: Progress | None = None,
) -> Rotation:
    if not await _lagging(uows, keys.current_version()):
        keys.add_version()
    version = keys.current_version()
    total = await _lagging(uows, version)
    done = 0
    while rewrapped := await _rewrap_batch(uows, keys, version, batch):
        done += rewrapped
        if progress:
            progress(done, total)
    retired = await _retire_unused(uows, keys, version)
    async with uows() as uow:
        await journal.record(
            uow,
            "vault.kek_rotated",
            ctx=ctx,
            data={"version": version, "rewrapped": done, "retired": retired},
        )
        await uow.commit()
    return Rotation(version, done, retired)


async def _rewrap_batch(
    uows: UnitOfWorkFactory, keys: KeyProvider, version: int, batch: int
) -> int:
    async with uows() as uow:
        rows = await sql.all_rows(
            uow,
            "SELECT player_id, kek_version, sealed FROM vault.data_keys"
            " WHERE kek_version < %(v)s ORDER BY player_id LIMIT %(n)s FOR UPDATE SKIP LOCKED",
            {"v": version, "n": batch},
        )
        if not rows:
            return 0
        players: list[uuid.UUID] = [row["player_id"] for row in rows]
        rewrapped = [
            keys.wrap(p, keys.unwrap(p, WrappedKey(row["kek_version"], bytes(row["sealed"]))))
            for p, row in zip(players, rows, strict=True)
        ]
        await sql.run(
            uow,
            "UPDATE vault.data_keys d SET kek_version = x.v, sealed = x.s, rewrapped_at = %(now)s"
            " FROM unnest(%(p)s::uuid[], %(v)s::int[], %(s)b::bytea[]) AS x(p, v, s)"
            " WHERE d.player_id = x.p",
            {
                "p": players,
                "v": [w.kek_version for w in rewrapped],
                "s": [w.sealed for w in rewrapped],
                "now": uow.now,
            },
        )
        await uow.commit()
        return len(rows)


async def _retire_unused(uows: UnitOfWorkFactory, keys: KeyProvider, version: int) -> list[int]:
    async with uows() as uow:
        used = {
            row["kek_version"]
            for row in await sql.all_rows(
                uow, "SELECT DISTINCT kek_version FROM vault.data_keys", {}
            )
        }
    retired = [
        info.version
        for info in keys.versions()
        if info.version < version and info.retired_at is None and info.version not in used
    ]
    for old in retired:
        keys.retire(old)
    return retired
