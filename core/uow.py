"""Unit of work: one database transaction, rolled back unless its owner commits it."""

from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock, utc_now

__all__ = ["Clock", "UnitOfWork", "UnitOfWorkFactory", "utc_now"]


class UnitOfWork:
    """Services receive it explicitly and may flush; only the entrypoint that opened it commits.

    `now` is read once when the unit of work starts, so every row and event it writes carries
    the same instant (read again once after a lock wait, see `retime`); the clock is injectable
    for tests.
    """

    session: AsyncSession
    now: datetime

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock = utc_now) -> None:
        self._sessions = sessions
        self._clock = clock
        self.committed = False

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self.now = self._clock()
        self._driver: Any = None
        return self

    async def driver_connection(self) -> Any:  # noqa: ANN401 - psycopg.AsyncConnection
        """The DB-API connection under this unit's transaction (core.sql runs plain SQL on it)."""
        if self._driver is None:
            connection = await self.session.connection()
            self._driver = (await connection.get_raw_connection()).driver_connection
        return self._driver

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            await self.session.rollback()
        await self.session.close()

    async def commit(self) -> None:
        """Commit; what the unit does next is a new transaction, on whichever pooled connection
        the session takes then (the one it had went back to the pool with the commit)."""
        await self.session.commit()
        self._driver = None
        self.committed = True

    def retime(self) -> None:
        """Read the clock again after taking a lock that queues this unit behind others: its
        instant is then not before theirs, so a check of "what happened up to now" made under
        the lock sees everything the earlier holders wrote."""
        self.now = max(self.now, self._clock())

    async def rollback(self) -> None:
        """Discard everything so far and start afresh (with a new `now`)."""
        await self.session.rollback()
        self._driver = None  # the session may take another pooled connection next
        self.now = self._clock()


class UnitOfWorkFactory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock = utc_now) -> None:
        self.sessions = sessions
        self.clock = clock

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.clock)
