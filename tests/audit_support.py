"""Shared by the audit-log tests: signers, catching the log up, playing a superuser."""

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app import auditing
from audit import export
from audit.note import Signer
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api

ORIGIN = "test.pitwarden.example/audit"
SIGNER = Signer.generate(ORIGIN)


async def catch_up(
    uows: UnitOfWorkFactory, signers: Sequence[Signer] = (SIGNER,), *, force: bool = False
) -> auditing.CaughtUp:
    return await auditing.catch_up(uows, origin=ORIGIN, signers=signers, force=force)


async def play_some_rounds(api: Api, uows: UnitOfWorkFactory, *, rounds: int) -> uuid.UUID:
    """A funded player bets and wins a few times: adjustments, stakes and payouts in the log."""
    player_id = await factories.committed_player(uows, cash="100.00")
    for _ in range(rounds):
        bet = factories.bet_body(player_id, "2.00")
        await api.provider.post("/v1/wallet/bet", bet)
        await api.provider.post("/v1/wallet/win", factories.win_body(bet, "3.00"))
    return player_id


@asynccontextmanager
async def superuser(owner_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A superuser's transaction, rolled back afterwards so the shared log stays whole."""
    async with owner_engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


def uows_on(conn: AsyncConnection) -> UnitOfWorkFactory:
    """Units of work inside `conn`'s transaction (they see its uncommitted changes)."""
    sessions = async_sessionmaker(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    return UnitOfWorkFactory(sessions)


async def export_to(
    uows: UnitOfWorkFactory, directory: Path, signers: Sequence[Signer] = (SIGNER,)
) -> export.Exported:
    async with uows() as uow:
        return await export.export(
            uow, directory, origin=ORIGIN, verifiers=[s.verifier() for s in signers]
        )


def key_file(directory: Path, signers: Sequence[Signer] = (SIGNER,)) -> Path:
    path = directory / "trusted.vkey"
    path.write_text("".join(s.verifier().to_string() + "\n" for s in signers))
    return path


def entry_at(directory: Path, index: int) -> dict[str, object]:
    lines = (directory / "entries.jsonl").read_bytes().split(b"\n")
    parsed: dict[str, object] = json.loads(lines[index])
    return parsed
