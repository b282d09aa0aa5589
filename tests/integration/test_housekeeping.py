"""Nonces are forgotten once the signature window alone refuses their replay."""

from datetime import timedelta

import sqlalchemy as sa

from core import clients
from core.models import RequestNonce
from core.uow import UnitOfWorkFactory
from tests.conftest import Clock


async def test_only_nonces_older_than_twice_the_window_are_forgotten(
    uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = clock() - timedelta(seconds=601)
    async with uows() as uow:
        assert await clients.consume_nonce(uow, client_id="c", nonce="old-nonce-0000000")
        await uow.commit()
    clock.advance(seconds=2)
    async with uows() as uow:
        assert await clients.consume_nonce(uow, client_id="c", nonce="recent-nonce-00000")
        await uow.commit()
    clock.now = None
    async with uows() as uow:
        forgotten = await clients.forget_nonces_before(uow, clients.window_start(uow.now, 300))
        kept = await uow.session.scalars(
            sa.select(RequestNonce.nonce).where(RequestNonce.client_id == "c")
        )
        assert forgotten >= 1  # other tests' committed nonces may be old enough too
        assert kept.all() == ["recent-nonce-00000"]
