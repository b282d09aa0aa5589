"""The gate in PostgreSQL: a player's ledger transaction needs the decision that allowed it.

Hand-written SQL (real commits), as the application role and as the owner playing a superuser,
also with `session_replication_role = replica` (the trigger is enabled ALWAYS): a transaction
of a player is refused without a decision, with a denial, with another player's decision, with
a decision about another kind of movement, or with a decision already used; with a proper one
it commits (its postings balanced, for the deferred double-entry check). A house-only
transaction (no player) needs no decision.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core import ledger
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import RULESET

pytestmark = pytest.mark.commits

NEEDS_DECISION = "needs a decision that allowed it"
USED = "uq_ledger_transactions_decision_id"
# Each kind of movement and the decisions that may allow it (the trigger's own table).
ALLOWED_BY = [
    ("stake", "bet.place", -100),  # the player's cash side of the postings
    ("payout", "bet.settle", 100),
    ("rollback", "bet.rollback", 100),
    ("adjustment", "adjustment.credit", 100),
    ("adjustment", "adjustment.debit", -100),
]


@dataclass(frozen=True)
class Funded:
    """A committed player with 50.00 cash, their accounts, and two house accounts."""

    player_id: uuid.UUID
    cash: int  # account ids
    bonus: int
    house: int
    other_house: int


async def funded_player(uows: UnitOfWorkFactory) -> Funded:
    async with uows() as uow:
        player_id = await factories.player(uow, cash="50.00")
        await uow.commit()
    async with uows() as uow:
        funded = Funded(
            player_id,
            (await ledger.account_by_code(uow, ledger.player_account_code(player_id, "cash"))).id,
            (await ledger.account_by_code(uow, ledger.player_account_code(player_id, "bonus"))).id,
            (await ledger.house_account(uow, kind="manual_adjustment", currency="EUR")).id,
            (await ledger.house_account(uow, kind="bonus_liability", currency="EUR")).id,
        )
        await uow.commit()  # a house account is opened on first use
    return funded


@pytest.fixture
async def funded(committed_uows: UnitOfWorkFactory) -> Funded:
    return await funded_player(committed_uows)


@pytest.fixture(params=["app", "owner", "owner-replica"])
async def conn(
    request: pytest.FixtureRequest, app_engine: AsyncEngine, owner_engine: AsyncEngine
) -> AsyncIterator[AsyncConnection]:
    """A bare connection outside any service: the application role, or the owner (in replica
    mode too, where only triggers enabled ALWAYS still fire)."""
    replica = request.param == "owner-replica"
    async with (app_engine if request.param == "app" else owner_engine).connect() as bare:
        if replica:  # for the session, not one transaction: the tests commit and go on
            await bare.execute(sa.text("SET session_replication_role = replica"))
            await bare.commit()
            assert await bare.scalar(sa.text("SHOW session_replication_role")) == "replica"
        yield bare
        await bare.rollback()
        if replica:  # the pooled connection goes back as it came
            await bare.execute(sa.text("RESET session_replication_role"))
            await bare.commit()


async def decision(
    uows: UnitOfWorkFactory,
    player_id: uuid.UUID | None,
    action: str,
    effect: str = "allow",
    amount: int | None = None,
) -> uuid.UUID:
    """A stored decision, written by hand (committed) as the application would store it; with
    `amount` (EUR minor units), the amount it allows, as the gate records it since 0010."""
    decision_id = uuid.uuid4()
    async with uows() as uow:
        await uow.session.execute(
            sa.text(
                "INSERT INTO policy_decisions (id, action, player_id, facts, version,"
                " content_hash, rule_ids, effect, reason_code, decided_at, amount_minor,"
                " amount_currency) VALUES (:id, :action, :player, :facts, :version, :hash,"
                " :rules, :effect, :reason, now(), :amount, :currency)"
            ),
            {
                "amount": amount,
                "currency": None if amount is None else "EUR",
                "id": decision_id,
                "action": action,
                "player": player_id,
                "facts": Jsonb({}),
                "version": RULESET,
                "hash": "sha256:" + "0" * 64,
                "rules": [f"{effect}-by-hand"],
                "effect": effect,
                "reason": "ok" if effect == "allow" else "zone_off",
            },
        )
        await uow.commit()
    return decision_id


async def new_transaction(
    conn: AsyncConnection, kind: str, player_id: uuid.UUID | None, decision_id: uuid.UUID | None
) -> int:
    txn = await conn.scalar(
        sa.text(
            "INSERT INTO ledger_transactions (kind, created_at, player_id, decision_id)"
            " VALUES (:kind, now(), :player, :decision) RETURNING id"
        ),
        {"kind": kind, "player": player_id, "decision": decision_id},
    )
    return int(txn)


async def post(conn: AsyncConnection, txn: int, account_id: int, amount: int) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO postings (transaction_id, account_id, shard, currency, amount,"
            " posted_at) VALUES (:t, :a, 0, 'EUR', :m, now())"
        ),
        {"t": txn, "a": account_id, "m": amount},
    )


async def books(uows: UnitOfWorkFactory, player: Funded) -> tuple[int, int, int]:
    """The player's cash balance, their ledger transactions, and all ledger transactions."""
    async with uows() as uow:
        counts = (
            await uow.session.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM ledger_transactions WHERE player_id = :p),"
                    " (SELECT count(*) FROM ledger_transactions)"
                ),
                {"p": player.player_id},
            )
        ).one()
        return (await ledger.balance(uow, player.cash), *counts)


async def refused(
    conn: AsyncConnection,
    uows: UnitOfWorkFactory,
    player: Funded,
    kind: str,
    decision_id: uuid.UUID | None,
    match: str = NEEDS_DECISION,
) -> None:
    """The transaction is refused as it is inserted, and nothing changed."""
    before = await books(uows, player)
    with pytest.raises(sa.exc.IntegrityError, match=match):
        await new_transaction(conn, kind, player.player_id, decision_id)
    await conn.rollback()
    assert await books(uows, player) == before


# -- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted({kind for kind, _, _ in ALLOWED_BY}))
async def test_a_players_transaction_without_a_decision_is_refused(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory, kind: str
) -> None:
    await refused(conn, committed_uows, funded, kind, None)


async def test_a_decision_that_denied_allows_nothing(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    denial = await decision(committed_uows, funded.player_id, "bet.place", effect="deny")
    await refused(conn, committed_uows, funded, "stake", denial)


async def test_another_players_decision_allows_nothing(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    other = await funded_player(committed_uows)
    theirs = await decision(committed_uows, other.player_id, "bet.place")
    await refused(conn, committed_uows, funded, "stake", theirs)
    nobodys = await decision(committed_uows, None, "bet.place")  # a decision about no player
    await refused(conn, committed_uows, funded, "stake", nobodys)


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        ("stake", "bet.settle"),
        ("stake", "adjustment.debit"),
        ("payout", "bet.place"),
        ("rollback", "bet.settle"),
        ("adjustment", "bet.place"),
        ("adjustment", "bet.rollback"),
        ("deposit", "withdrawal"),
        ("withdrawal_hold", "deposit"),
        ("withdrawal_release", "withdrawal"),
        ("withdrawal_payout", "withdrawal.release"),
        ("test", "bet.place"),
    ],
)
async def test_a_decision_about_another_kind_of_movement_allows_nothing(
    conn: AsyncConnection,
    funded: Funded,
    committed_uows: UnitOfWorkFactory,
    kind: str,
    action: str,
) -> None:
    allowed = await decision(committed_uows, funded.player_id, action)
    await refused(conn, committed_uows, funded, kind, allowed)


async def test_a_decision_that_was_never_stored_allows_nothing(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    await refused(conn, committed_uows, funded, "stake", uuid.uuid4())


async def test_one_decision_allows_one_transaction(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    allowed = await decision(committed_uows, funded.player_id, "bet.place")
    first = await new_transaction(conn, "stake", funded.player_id, allowed)
    await post(conn, first, funded.cash, -100)
    await post(conn, first, funded.house, 100)
    await conn.commit()
    assert (await books(committed_uows, funded))[0] == 4_900

    await refused(conn, committed_uows, funded, "stake", allowed, match=USED)
    # Nor twice inside one database transaction.
    again = await decision(committed_uows, funded.player_id, "bet.place")
    await new_transaction(conn, "stake", funded.player_id, again)
    with pytest.raises(sa.exc.IntegrityError, match=USED):
        await new_transaction(conn, "stake", funded.player_id, again)
    await conn.rollback()
    assert (await books(committed_uows, funded))[0] == 4_900


# -- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "action", "cash"), ALLOWED_BY)
async def test_a_transaction_with_its_allowing_decision_commits(
    conn: AsyncConnection,
    funded: Funded,
    committed_uows: UnitOfWorkFactory,
    kind: str,
    action: str,
    cash: int,
) -> None:
    """The control case: hand-written SQL that keeps every rule is accepted."""
    cash_before, mine, everyone = await books(committed_uows, funded)
    allowed = await decision(committed_uows, funded.player_id, action)
    txn = await new_transaction(conn, kind, funded.player_id, allowed)
    await post(conn, txn, funded.cash, cash)
    await post(conn, txn, funded.house, -cash)
    await conn.commit()
    assert await books(committed_uows, funded) == (cash_before + cash, mine + 1, everyone + 1)
    async with committed_uows() as uow:
        named = await uow.session.scalar(
            sa.text("SELECT decision_id FROM ledger_transactions WHERE id = :t"), {"t": txn}
        )
    assert named == allowed


async def test_a_house_only_transaction_needs_no_decision(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory
) -> None:
    _, mine, everyone = await books(committed_uows, funded)
    txn = await new_transaction(conn, "transfer", None, None)
    await post(conn, txn, funded.house, 100)
    await post(conn, txn, funded.other_house, -100)
    await conn.commit()
    assert await books(committed_uows, funded) == (5_000, mine, everyone + 1)


# -- the gap: postings are not tied to the transaction's player --------------------------------


@pytest.mark.parametrize("disguise", ["house-only", "another player"])
async def test_a_players_money_cannot_move_under_another_name(
    conn: AsyncConnection, funded: Funded, committed_uows: UnitOfWorkFactory, disguise: str
) -> None:
    """A transaction that says it is the house's (player_id NULL, so no decision needed) or
    another player's (with that player's allowing decision) must not touch this player's
    accounts: otherwise the gate in the database is bypassed by leaving out a name."""
    other = await funded_player(committed_uows)
    theirs = await decision(committed_uows, other.player_id, "adjustment.credit")
    before = await books(committed_uows, funded)
    if disguise == "house-only":
        txn = await new_transaction(conn, "adjustment", None, None)
    else:
        txn = await new_transaction(conn, "adjustment", other.player_id, theirs)
    await post(conn, txn, funded.house, -100_000)  # house first: the order must not matter
    try:
        await post(conn, txn, funded.cash, 100_000)
        await conn.commit()
    except sa.exc.IntegrityError:
        await conn.rollback()  # refused, as it must be: when posting or at commit
    assert await books(committed_uows, funded) == before


# -- the amount a decision allows --------------------------------------------------------------

MOVES_WHAT_WAS_DECIDED = "allowed"


@pytest.mark.parametrize(("kind", "action", "cash"), ALLOWED_BY)
async def test_a_transaction_moves_exactly_what_its_decision_allowed(
    conn: AsyncConnection,
    funded: Funded,
    committed_uows: UnitOfWorkFactory,
    kind: str,
    action: str,
    cash: int,
) -> None:
    """A decision records its movement's amount; at commit the player's side of the ledger
    transaction naming it must move exactly that, the way the action moves money: one cent more
    or less, or the other direction, is refused, and nothing changed."""
    for moved in (cash + 1, cash - 1, -cash):
        before = await books(committed_uows, funded)
        allowed = await decision(committed_uows, funded.player_id, action, amount=abs(cash))
        txn = await new_transaction(conn, kind, funded.player_id, allowed)
        await post(conn, txn, funded.cash, moved)
        await post(conn, txn, funded.house, -moved)
        with pytest.raises(sa.exc.IntegrityError, match=MOVES_WHAT_WAS_DECIDED):
            await conn.commit()
        await conn.rollback()
        assert await books(committed_uows, funded) == before, moved
    # The amount decided commits; a credit split over cash and bonus (as a payout is) too.
    bonus = cash // 4 if cash > 0 else 0  # the player holds no bonus to take from
    cash_before, mine, everyone = await books(committed_uows, funded)
    allowed = await decision(committed_uows, funded.player_id, action, amount=abs(cash))
    txn = await new_transaction(conn, kind, funded.player_id, allowed)
    await post(conn, txn, funded.cash, cash - bonus)
    if bonus:
        await post(conn, txn, funded.bonus, bonus)
    await post(conn, txn, funded.house, -cash)
    await conn.commit()
    assert await books(committed_uows, funded) == (
        cash_before + cash - bonus,
        mine + 1,
        everyone + 1,
    )
