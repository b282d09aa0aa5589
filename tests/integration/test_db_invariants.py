"""Money invariants held by PostgreSQL itself, against hand-written SQL (real commits)."""

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core import ledger
from core.database import DatabaseUrls, create_engine_sync
from core.models import Base
from core.uow import UnitOfWorkFactory
from tests import factories

pytestmark = pytest.mark.commits


@pytest.fixture
async def funded_player(committed_uows: UnitOfWorkFactory) -> uuid.UUID:
    async with committed_uows() as uow:
        player_id = await factories.player(uow, cash="50.00")
        await uow.commit()
    return player_id


@pytest.fixture
async def app_conn(app_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with app_engine.connect() as conn:
        yield conn


async def accounts(conn: AsyncConnection, player_id: uuid.UUID) -> tuple[int, int]:
    cash = await conn.scalar(
        sa.text("SELECT id FROM accounts WHERE code = :c"), {"c": f"player:{player_id}:cash"}
    )
    house = await conn.scalar(
        sa.text("SELECT id FROM accounts WHERE code = 'house:manual_adjustment:EUR'")
    )
    return int(cash), int(house)


async def insert_transaction(conn: AsyncConnection, legs: list[tuple[int, int]]) -> int:
    txn = await conn.scalar(
        sa.text(
            "INSERT INTO ledger_transactions (kind, created_at) VALUES ('test', now()) RETURNING id"
        )
    )
    for account_id, amount in legs:
        await conn.execute(
            sa.text(
                "INSERT INTO postings (transaction_id, account_id, shard, currency, amount,"
                " posted_at) VALUES (:t, :a, 0, 'EUR', :m, now())"
            ),
            {"t": txn, "a": account_id, "m": amount},
        )
    return int(txn)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "TRUNCATE postings",
        "UPDATE ledger_transactions SET reason = 'edited'",
        "DELETE FROM ledger_transactions",
        "UPDATE journal_events SET event = 'edited'",
        "DELETE FROM journal_events",
        "TRUNCATE journal_events",
        "UPDATE balances SET balance = 1000000",
        "INSERT INTO balances (account_id, shard, allow_negative, balance) VALUES (1, 99, true, 5)",
        "UPDATE accounts SET allow_negative = true",
        "DELETE FROM fx_rates",
    ],
)
async def test_the_application_role_cannot_rewrite_history(
    app_conn: AsyncConnection, funded_player: uuid.UUID, statement: str
) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        await app_conn.execute(sa.text(statement))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "UPDATE journal_events SET event = 'x'",
        "TRUNCATE ledger_transactions CASCADE",
    ],
)
@pytest.mark.parametrize("replica", [False, True])
async def test_even_the_owner_is_refused_by_always_enabled_triggers(
    owner_engine: AsyncEngine, funded_player: uuid.UUID, statement: str, replica: bool
) -> None:
    async with owner_engine.connect() as conn:
        if replica:  # plain triggers would not fire in this mode
            await conn.execute(sa.text("SET session_replication_role = replica"))
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            await conn.execute(sa.text(statement))
        await conn.rollback()


async def test_an_unbalanced_transaction_fails_at_commit(
    app_conn: AsyncConnection, funded_player: uuid.UUID
) -> None:
    cash, house = await accounts(app_conn, funded_player)
    await insert_transaction(app_conn, [(cash, 500), (house, -499)])
    with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
        await app_conn.commit()


async def test_a_transaction_without_postings_fails_at_commit(
    app_conn: AsyncConnection, funded_player: uuid.UUID
) -> None:
    cash, house = await accounts(app_conn, funded_player)
    await insert_transaction(app_conn, [(cash, 100), (house, -100)])
    await insert_transaction(app_conn, [])  # a transaction with no postings at all
    with pytest.raises(sa.exc.IntegrityError, match="fewer than two postings"):
        await app_conn.commit()


async def test_a_committed_transaction_takes_no_more_postings(
    app_conn: AsyncConnection, funded_player: uuid.UUID
) -> None:
    cash, house = await accounts(app_conn, funded_player)
    txn = await insert_transaction(app_conn, [(cash, 100), (house, -100)])
    await app_conn.commit()
    with pytest.raises(sa.exc.IntegrityError, match="closed"):
        await app_conn.execute(
            sa.text(
                "INSERT INTO postings (transaction_id, account_id, shard, currency, amount,"
                " posted_at) VALUES (:t, :a, 0, 'EUR', 5, now())"
            ),
            {"t": txn, "a": cash},
        )


async def test_a_player_balance_never_goes_below_zero(
    app_conn: AsyncConnection, funded_player: uuid.UUID, committed_uows: UnitOfWorkFactory
) -> None:
    cash, house = await accounts(app_conn, funded_player)
    with pytest.raises(sa.exc.IntegrityError, match="non_negative"):
        await insert_transaction(app_conn, [(cash, -5001), (house, 5001)])
    await app_conn.rollback()
    async with committed_uows() as uow:
        assert await ledger.balance(uow, cash) == 5000


async def test_a_posting_in_another_currency_than_its_account_is_refused(
    app_conn: AsyncConnection, funded_player: uuid.UUID
) -> None:
    cash, _ = await accounts(app_conn, funded_player)
    txn = await app_conn.scalar(
        sa.text(
            "INSERT INTO ledger_transactions (kind, created_at) VALUES ('t', now()) RETURNING id"
        )
    )
    with pytest.raises(sa.exc.IntegrityError, match="fk_postings_account_currency"):
        await app_conn.execute(
            sa.text(
                "INSERT INTO postings (transaction_id, account_id, shard, currency, amount,"
                " posted_at) VALUES (:t, :a, 0, 'USD', 5, now())"
            ),
            {"t": txn, "a": cash},
        )


def test_the_migrations_match_the_models(db_urls: DatabaseUrls) -> None:
    engine = create_engine_sync(db_urls.owner)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
