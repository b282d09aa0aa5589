"""Keeping the audit log current: integrate committed journal events, then sign a checkpoint.

The server runs `keep_log_current` in the background (a checkpoint at most every
`audit_interval_s` while entries arrive); `pitwarden audit integrate` runs `catch_up` once.
Each batch is its own transaction, because the integrator's snapshot must not hold back the
line below which events are known to be committed.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from audit import log
from audit.note import Signer
from core.uow import UnitOfWorkFactory

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaughtUp:
    integrated: int
    published: log.Published | None


async def catch_up(
    uows: UnitOfWorkFactory,
    *,
    origin: str,
    signers: Sequence[Signer],
    checkpoint: bool = True,
    force: bool = False,
) -> CaughtUp:
    integrated = 0
    while True:
        async with uows() as uow:
            added = await log.integrate(uow)
            await uow.commit()
        integrated += added
        if not added:
            break
    published = None
    if checkpoint:
        async with uows() as uow:
            published = await log.publish_checkpoint(
                uow, origin=origin, signers=signers, force=force
            )
            await uow.commit()
    return CaughtUp(integrated, published)


async def keep_log_current(
    uows: UnitOfWorkFactory, *, origin: str, signers: Sequence[Signer], interval_s: float
) -> None:
    while True:
        try:
            await catch_up(uows, origin=origin, signers=signers)
        except Exception:  # the log catches up on the next round; the server stays up
            logger.exception("keeping the audit log current failed")
        await asyncio.sleep(interval_s)
