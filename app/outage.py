"""When PostgreSQL goes away: answer 503 with Retry-After, say so once, and say when it is back.

A request that meets an unreachable database (refused, starting up, shutting down, in recovery,
a connection dropped mid-request, no connection free within `PITWARDEN_DB_WAIT_S`) is answered
503 `database_unavailable`. Its transaction is gone with the connection, the Idempotency-Key
claim with it, so the caller's retry under the same key acts exactly once. The first such error
logs one line and starts a probe that logs one more when the database answers again, with the
outage's length; errors in between log nothing (they are the same outage).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from core.database import unavailable

log = logging.getLogger(__name__)

PROBE_EVERY_S = 0.5

Probe = Callable[[], Awaitable[None]]


class DatabaseWatch:
    """One per app: the log's memory of an outage, and the probe that ends it."""

    def __init__(self, probe: Probe, *, every_s: float = PROBE_EVERY_S) -> None:
        self._probe = probe
        self._every_s = every_s
        self.down_since: float | None = None  # time.monotonic() of the first failure
        self.reason = ""
        self._task: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def went_away(self, reason: str) -> None:
        if self.down_since is not None:
            return  # the same outage: said already
        self.down_since = time.monotonic()
        self.reason = reason
        log.warning("database unavailable (%s): answering 503 until it is back", reason)
        self._task = asyncio.get_running_loop().create_task(self._wait_for_it())

    async def _wait_for_it(self) -> None:
        while self.down_since is not None:
            await asyncio.sleep(self._every_s)
            try:
                await self._probe()
            except Exception as error:  # noqa: BLE001 - any failure means: not back yet
                if unavailable(error) is None:
                    log.warning("database probe failed: %s", error)
                continue
            log.warning("database back after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
