"""Keeping the audit log current: integrate committed journal events, then sign a checkpoint.

The server runs `keep_log_current` in the background: it integrates every POLL_S (so that an
event is in the log well within a second) and signs a checkpoint at most every
`audit_interval_s` while entries arrive; `pitwarden audit integrate` runs `catch_up` once.
Each batch is its own transaction, because the integrator's snapshot must not hold back the
line below which events are known to be committed.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.outage import DatabaseWatch
from audit import log
from audit.note import Signer
from core.database import unavailable
from core.uow import UnitOfWorkFactory

logger = logging.getLogger(__name__)
POLL_S = 0.1


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
    integrated = await integrate_pending(uows)
    published = None
    if checkpoint:
        published = await publish(uows, origin=origin, signers=signers, force=force)
    return CaughtUp(integrated, published)


async def integrate_pending(uows: UnitOfWorkFactory) -> int:
    integrated = 0
    while True:
        async with uows() as uow:
            added = await log.integrate(uow)
            await uow.commit()
        integrated += added
        if not added:
            return integrated


async def publish(
    uows: UnitOfWorkFactory, *, origin: str, signers: Sequence[Signer], force: bool = False
) -> log.Published | None:
    async with uows() as uow:
        published = await log.publish_checkpoint(uow, origin=origin, signers=signers, force=force)
        await uow.commit()
    return published


def stopping() -> bool:
    """The running task has been asked to stop: whatever error the cancellation caused on its
    way (psycopg closes a connection whose query it interrupts, and the rollback after it then
    fails), the loop must end, not log it and carry on."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def keep_log_current(
    uows: UnitOfWorkFactory,
    *,
    origin: str,
    signers: Sequence[Signer],
    interval_s: float,
    watch: DatabaseWatch | None = None,
) -> None:
    signed_at = 0.0
    while True:
        try:
            await integrate_pending(uows)
            if time.monotonic() - signed_at >= interval_s:
                await publish(uows, origin=origin, signers=signers)
                signed_at = time.monotonic()
        except Exception as error:  # the log catches up on the next round; the server stays up
            if stopping():
                raise  # a cancellation that broke a query surfaces as a database error
            reason = unavailable(error)
            if reason is None:
                logger.exception("keeping the audit log current failed")
            elif watch is not None:
                watch.went_away(reason)  # said once for the whole outage
        await asyncio.sleep(POLL_S)
