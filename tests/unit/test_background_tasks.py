"""The server's background loops stop when the server does, even when the cancellation breaks
a query on its way (psycopg closes the connection, and the rollback after it fails)."""

import asyncio
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import pytest

from app import auditing, main


class BrokenOnCancel:
    """A unit of work whose query is interrupted by the cancellation and fails as a database
    error would, instead of letting CancelledError through. A loop that carries on anyway is
    stopped the next time round (so that a failing test ends rather than hangs)."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        if self.broken:
            raise asyncio.CancelledError
        self.broken = True
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ConnectionError("query cancellation interrupted the connection") from None
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


async def test_the_audit_loop_ends_when_cancelled_mid_query() -> None:
    uows: Any = BrokenOnCancel()
    task = asyncio.create_task(
        auditing.keep_log_current(uows, origin="test", signers=[], interval_s=1)
    )
    await asyncio.sleep(0.05)  # inside the "query"
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.done()
    assert not task.cancelled(), "the loop swallowed the error its cancellation caused"
    assert isinstance(task.exception(), ConnectionError)


async def test_an_ordinary_failure_does_not_stop_the_loop() -> None:
    calls = 0

    class FailingOnce:
        def __call__(self) -> Self:
            return self

        async def __aenter__(self) -> Self:
            nonlocal calls
            calls += 1
            raise ConnectionError("the database restarted")

        async def __aexit__(self, *_: object) -> None:
            return None

    uows: Any = FailingOnce()
    task = asyncio.create_task(
        auditing.keep_log_current(uows, origin="test", signers=[], interval_s=1)
    )
    await asyncio.sleep(auditing.POLL_S * 2.5)
    assert not task.done()
    assert calls >= 2  # it logged, waited and tried again
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_abandoned_deposits_are_expired_every_round_and_failures_do_not_stop_it() -> None:
    asked: list[timedelta] = []

    class Cashier:
        async def expire(self, *, older_than: timedelta, ctx: object) -> int:
            del ctx
            asked.append(older_than)
            if len(asked) == 1:
                raise ConnectionError("the database restarted")
            return 1

    cashier: Any = Cashier()
    task = asyncio.create_task(
        main.expire_abandoned_deposits(cashier, older_than=timedelta(hours=1), every_s=0.01)
    )
    await asyncio.sleep(0.1)
    assert len(asked) >= 3  # the failure was logged and the next round came
    assert set(asked) == {timedelta(hours=1)}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ended_overrides_are_swept_every_round_and_failures_do_not_stop_it() -> None:
    calls = 0

    class Failing:
        def __call__(self) -> Self:
            return self

        async def __aenter__(self) -> Self:
            nonlocal calls
            calls += 1
            raise ConnectionError("the database restarted")

        async def __aexit__(self, *_: object) -> None:
            return None

    uows: Any = Failing()
    task = asyncio.create_task(main.expire_overrides(uows, every_s=0.01))
    await asyncio.sleep(0.1)
    assert not task.done()
    assert calls >= 3  # logged, and the next round came
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
