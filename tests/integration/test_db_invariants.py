"""Money invariants held by PostgreSQL itself, against hand-written SQL (real commits).

The application role may only read and append to the money and journal tables; even the owner
(playing a superuser) is refused edits of them by triggers enabled ALWAYS; double entry is
checked at commit by deferred constraint triggers; player balances never go below zero; and
the migrated schema is exactly what the models describe.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import app.console.models  # the console's tables
import app.player.models  # noqa: F401 - the player page's sessions
import audit.models  # noqa: F401 - the audit tables belong to the schema too
import compliance.models  # noqa: F401 - the responsible-gambling tables
import policies.models  # noqa: F401 - and the policy tables
from core import ledger
from core.database import DatabaseUrls, create_engine_sync
from core.models import Base
from core.uow import UnitOfWorkFactory
from tests import factories

pytestmark = pytest.mark.commits

APPEND_ONLY = (
    "accounts",
    "ledger_transactions",
    "postings",
    "journal_events",
    "fx_rates",
    "audit_entries",
    "audit_tree_hashes",
    "audit_checkpoints",
    "policy_activations",
    "policy_decisions",
    "kill_switches",
    "rg_limits",
    "rg_exclusions",
    "kyc_levels",
    "aml_holds",
    "player_links",
    "appeal_transitions",
    "appeal_messages",
)


@dataclass(frozen=True)
class Funded:
    """A committed player with 50.00 cash, and the house account that funded it."""

    player_id: uuid.UUID
    cash: int  # account ids
    bonus: int
    house: int


@pytest.fixture
async def funded(committed_uows: UnitOfWorkFactory) -> Funded:
    async with committed_uows() as uow:
        player_id = await factories.player(uow, cash="50.00")
        await uow.commit()
    async with committed_uows() as uow:
        return Funded(
            player_id,
            (await ledger.account_by_code(uow, ledger.player_account_code(player_id, "cash"))).id,
            (await ledger.account_by_code(uow, ledger.player_account_code(player_id, "bonus"))).id,
            (await ledger.house_account(uow, kind="manual_adjustment", currency="EUR")).id,
        )


@pytest.fixture
async def app_conn(app_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A bare connection as the application role, outside any service."""
    async with app_engine.connect() as conn:
        yield conn


async def books(uows: UnitOfWorkFactory, player: Funded) -> tuple[int, int, int, int]:
    """Cash balance, bonus balance, the player's postings and ledger transactions."""
    async with uows() as uow:
        counts = (
            await uow.session.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM postings WHERE account_id IN (:c, :b)),"
                    " (SELECT count(*) FROM ledger_transactions WHERE player_id = :p)"
                ),
                {"c": player.cash, "b": player.bonus, "p": player.player_id},
            )
        ).one()
        return (
            await ledger.balance(uow, player.cash),
            await ledger.balance(uow, player.bonus),
            *counts,
        )


async def new_transaction(conn: AsyncConnection, player_id: uuid.UUID) -> int:
    """A ledger transaction of `player_id` by hand, with the allowing decision the database
    asks for (tests/integration/test_gate_invariants.py holds the gate's own rules)."""
    decision = await conn.scalar(
        sa.text(
            "INSERT INTO policy_decisions (id, action, player_id, facts, version, content_hash,"
            " rule_ids, effect, reason_code, decided_at) VALUES (gen_random_uuid(),"
            " 'adjustment.credit', :p, '{}', 'by-hand', 'sha256:by-hand', '{}', 'allow', 'ok',"
            " now()) RETURNING id"
        ),
        {"p": player_id},
    )
    txn = await conn.scalar(
        sa.text(
            "INSERT INTO ledger_transactions (kind, created_at, player_id, decision_id)"
            " VALUES ('adjustment', now(), :p, :d) RETURNING id"
        ),
        {"p": player_id, "d": decision},
    )
    return int(txn)


async def post(
    conn: AsyncConnection, txn: int, account_id: int, amount: int, currency: str = "EUR"
) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO postings (transaction_id, account_id, shard, currency, amount,"
            " posted_at) VALUES (:t, :a, 0, :cur, :m, now())"
        ),
        {"t": txn, "a": account_id, "cur": currency, "m": amount},
    )


async def exists(uows: UnitOfWorkFactory, txn: int) -> bool:
    async with uows() as uow:
        found = await uow.session.scalar(
            sa.text("SELECT 1 FROM ledger_transactions WHERE id = :t"), {"t": txn}
        )
        return found is not None


# -- the application role: read and append, nothing else -----------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount + 1 WHERE player_id = :p",
        "UPDATE postings SET account_id = account_id",
        "DELETE FROM postings WHERE player_id = :p",
        "DELETE FROM postings",
        "TRUNCATE postings",
        "UPDATE ledger_transactions SET reason = 'edited' WHERE player_id = :p",
        "DELETE FROM ledger_transactions WHERE player_id = :p",
        "TRUNCATE ledger_transactions CASCADE",
        "UPDATE journal_events SET event = 'edited' WHERE player_id = :p",
        "DELETE FROM journal_events WHERE player_id = :p",
        "TRUNCATE journal_events",
        "UPDATE balances SET balance = 1000000",
        (
            "UPDATE balances SET balance = balance + 1 WHERE account_id IN"
            " (SELECT id FROM accounts WHERE player_id = :p)"
        ),
        (
            "INSERT INTO balances (account_id, shard, allow_negative, balance)"
            " SELECT id, 99, true, 5 FROM accounts WHERE player_id = :p"
        ),
        "DELETE FROM balances",
        "TRUNCATE balances",
        "UPDATE accounts SET allow_negative = true WHERE player_id = :p",
        "DELETE FROM accounts WHERE player_id = :p",
        "UPDATE fx_rates SET rate = 2",
        "DELETE FROM fx_rates",
    ],
)
async def test_the_application_role_cannot_rewrite_history(
    app_conn: AsyncConnection,
    funded: Funded,
    committed_uows: UnitOfWorkFactory,
    statement: str,
) -> None:
    before = await books(committed_uows, funded)
    params = {"p": funded.player_id} if ":p" in statement else {}
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        await app_conn.execute(sa.text(statement), params)
    await app_conn.rollback()
    assert await books(committed_uows, funded) == before == (5000, 0, 1, 1)


# -- the owner, playing a superuser: the ALWAYS triggers refuse edits --------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount + 1 WHERE player_id = :p",
        "DELETE FROM postings WHERE player_id = :p",
        "TRUNCATE postings",
        "UPDATE ledger_transactions SET reason = 'edited' WHERE player_id = :p",
        "DELETE FROM ledger_transactions WHERE player_id = :p",
        "TRUNCATE ledger_transactions CASCADE",
        "UPDATE journal_events SET event = 'edited' WHERE player_id = :p",
        "DELETE FROM journal_events WHERE player_id = :p",
        "TRUNCATE journal_events CASCADE",
        "DELETE FROM accounts WHERE player_id = :p",
    ],
)
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica"])
async def test_even_the_owner_is_refused_by_always_enabled_triggers(
    owner_engine: AsyncEngine,
    funded: Funded,
    committed_uows: UnitOfWorkFactory,
    statement: str,
    replica: bool,
) -> None:
    before = await books(committed_uows, funded)
    params = {"p": funded.player_id} if ":p" in statement else {}
    async with owner_engine.connect() as conn:
        if replica:  # ordinary triggers do not fire in this mode; ALWAYS triggers do
            await conn.execute(sa.text("SET session_replication_role = replica"))
            assert await conn.scalar(sa.text("SHOW session_replication_role")) == "replica"
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            await conn.execute(sa.text(statement), params)
        await conn.rollback()
    assert await books(committed_uows, funded) == before == (5000, 0, 1, 1)


async def test_every_trigger_is_enabled_always(owner_engine: AsyncEngine) -> None:
    """No money trigger may be switched off by session_replication_role = replica."""
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT c.relname, t.tgname, t.tgenabled, t.tgdeferrable AND t.tginitdeferred"
                    " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND NOT t.tgisinternal"
                )
            )
        ).all()
    enabled = {(table, name): mode for table, name, mode, _ in rows}
    assert set(enabled.values()) == {"A"}, enabled
    append_only = {
        (t, f"{t}_{what}") for t in APPEND_ONLY for what in ("no_update_delete", "no_truncate")
    }
    assert append_only <= enabled.keys()
    deferred = {table for table, _, _, at_commit in rows if at_commit}
    assert "ledger_transactions" in deferred or "postings" in deferred  # double entry at commit


# -- double entry, checked at commit -----------------------------------------------------------


async def test_a_balanced_transaction_by_hand_commits(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    """The control case: hand-written SQL that keeps the rules is accepted."""
    txn = await new_transaction(app_conn, funded.player_id)
    await post(app_conn, txn, funded.cash, 100)
    await post(app_conn, txn, funded.house, -100)
    await app_conn.commit()
    assert await exists(committed_uows, txn)
    assert (await books(committed_uows, funded))[0] == 5100


async def test_an_unbalanced_transaction_fails_at_commit(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    before = await books(committed_uows, funded)
    txn = await new_transaction(app_conn, funded.player_id)
    await post(app_conn, txn, funded.cash, 500)
    await post(app_conn, txn, funded.house, -499)  # accepted so far: the check is deferred
    with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
        await app_conn.commit()
    assert not await exists(committed_uows, txn)
    assert await books(committed_uows, funded) == before


async def test_a_transaction_balanced_overall_but_not_per_currency_fails_at_commit(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    async with committed_uows() as uow:
        dollars = await factories.player(uow, currency="USD")
        await uow.commit()
    async with committed_uows() as uow:
        usd_cash = (
            await ledger.account_by_code(uow, ledger.player_account_code(dollars, "cash"))
        ).id
    before = await books(committed_uows, funded)
    txn = await new_transaction(app_conn, dollars)
    await post(app_conn, txn, usd_cash, 100, "USD")
    await post(app_conn, txn, funded.house, -100, "EUR")
    with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
        await app_conn.commit()
    assert not await exists(committed_uows, txn)
    assert await books(committed_uows, funded) == before


async def test_a_transaction_with_one_posting_fails_at_commit(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    before = await books(committed_uows, funded)
    txn = await new_transaction(app_conn, funded.player_id)
    await post(app_conn, txn, funded.cash, 100)
    with pytest.raises(sa.exc.IntegrityError, match=r"fewer than two postings|does not balance"):
        await app_conn.commit()
    assert not await exists(committed_uows, txn)
    assert await books(committed_uows, funded) == before


async def test_a_transaction_without_postings_fails_at_commit(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    txn = await new_transaction(app_conn, funded.player_id)
    with pytest.raises(sa.exc.IntegrityError, match="fewer than two postings"):
        await app_conn.commit()
    assert not await exists(committed_uows, txn)


async def test_a_committed_transaction_takes_no_more_postings(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    txn = await new_transaction(app_conn, funded.player_id)
    await post(app_conn, txn, funded.cash, 100)
    await post(app_conn, txn, funded.house, -100)
    await app_conn.commit()
    before = await books(committed_uows, funded)
    with pytest.raises(sa.exc.IntegrityError, match="closed"):
        await post(app_conn, txn, funded.cash, 5)  # even the first leg of a balanced pair
    await app_conn.rollback()
    assert await books(committed_uows, funded) == before


async def test_a_posting_of_zero_is_refused(app_conn: AsyncConnection, funded: Funded) -> None:
    txn = await new_transaction(app_conn, funded.player_id)
    with pytest.raises(sa.exc.IntegrityError, match="amount_not_zero"):
        await post(app_conn, txn, funded.cash, 0)


async def test_a_posting_in_another_currency_than_its_account_is_refused(
    app_conn: AsyncConnection, funded: Funded
) -> None:
    txn = await new_transaction(app_conn, funded.player_id)
    with pytest.raises(sa.exc.IntegrityError, match="fk_postings_account_currency"):
        await post(app_conn, txn, funded.cash, 5, "USD")


# -- player balances never go below zero -------------------------------------------------------


@pytest.mark.parametrize("overdraft", [5001, 10**12])
async def test_a_player_balance_never_goes_below_zero(
    app_conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory, overdraft: int
) -> None:
    """A balanced transaction that would overdraw the player is refused by the CHECK."""
    before = await books(committed_uows, funded)
    txn = await new_transaction(app_conn, funded.player_id)
    await post(app_conn, txn, funded.house, overdraft)  # house first: any order must fail
    with pytest.raises(sa.exc.IntegrityError, match="non_negative"):
        await post(app_conn, txn, funded.cash, -overdraft)
    await app_conn.rollback()
    assert await books(committed_uows, funded) == before == (5000, 0, 1, 1)


# -- the schema is the models' -----------------------------------------------------------------


def test_the_migrations_match_the_models(db_urls: DatabaseUrls) -> None:
    engine = create_engine_sync(db_urls.owner)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
