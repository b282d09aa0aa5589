"""Payments in PostgreSQL: what the database itself refuses, whatever the code does.

Hand-written SQL on a bare connection, as the application role, as the owner playing a
superuser, and as the owner with `session_replication_role = replica` (every payment trigger is
enabled ALWAYS, so it fires there too). Each test runs in one database transaction that is
rolled back at the end and uses savepoints for the statements it expects refused; nothing is
committed, so where a test must show its rows would commit it runs the deferred checks (double
entry, a payment's opening transition) on demand (`SET CONSTRAINTS ALL IMMEDIATE`).

Rows made by hand are the ones the rules allow: a payment with its opening transition (to its
first state), and a transition that moves money naming a ledger transaction of the payment's
own (its player's, under its reference, of the kind the step moves, let in by a decision of its
action, posting the payment's amount as core/payments/service.py does: see LEGS). A player
account a posting would take below zero is first credited the difference by a manual
adjustment, so every ledger transaction made here balances and would commit.

What is expected is derived from core/payments/lifecycle.py wherever the lifecycle says it (its
edges, initial states and money effects), so a change to either the lifecycle or migration 0009
that is not made on both sides fails here.
"""

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from core import ledger, players
from core.database import MIGRATIONS_DIR, DatabaseUrls, create_engine_sync, ensure_database
from core.errors import InvalidRequest
from core.guard import Movement
from core.journal import EventContext
from core.money import Money
from core.payments import lifecycle, service
from core.payments.lifecycle import Event, IllegalTransition, Kind, MoneyEffect, State
from core.uow import UnitOfWork, UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, RULESET, Clock

KINDS: tuple[Kind, ...] = ("deposit", "withdrawal")
MACHINES = lifecycle._MACHINES
ALL_STATES: list[State] = sorted(MACHINES["deposit"].states | MACHINES["withdrawal"].states)
AMOUNT = 1_000  # minor units of every payment made here
ROUTES = ["fastpay", "slowpay"]

# What PostgreSQL says when it refuses.
NOT_AN_EDGE = "cannot become"
NO_TRANSITION_ROW = "only with its transition recorded"
NOT_FIRST_STATE = "opens in its first state"
OPENS_ELSEWHERE = "ck_payment_transitions_opens_in_the_first_state"
WHAT_IT_IS_CHANGED = "cannot change what it is"
PROVIDER_CHANGED = "already belongs to provider"
SAME_STATE_TWICE = "uq_payment_transitions_payment_state"
SAME_LEDGER_TXN = "uq_payment_transitions_ledger_transaction_id"
MONEY_CHECK = "ck_payment_transitions_money_moves_where_the_lifecycle_says"
NOT_ITS_OWN = "needs its own"  # "... needs its own <kind> ledger transaction"
NOT_OPENED = "was opened without its opening transition"
NO_REDIRECT_WITHOUT_PROVIDER = "ck_payments_redirect_with_provider"
NOT_A_ROUTE = "ck_payments_provider_routed"
ONE_OF_A_KIND = "uq_accounts_player_id_kind"
NEEDS_DECISION = "needs a decision that allowed it"
NON_NEGATIVE = "ck_balances_non_negative"
ALL_IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE"  # the deferred checks, as at commit

# The ledger transaction core/payments/service.py posts for each money effect.
LEDGER_KINDS = {
    MoneyEffect.CREDIT_PLAYER: "deposit",
    MoneyEffect.HOLD: "withdrawal_hold",
    MoneyEffect.RELEASE_HOLD: "withdrawal_release",
    MoneyEffect.PAY_OUT: "withdrawal_payout",
}


def _money_kinds(kind: Kind) -> dict[str, str]:
    """The states whose reaching moves money, per the lifecycle, each with the kind of ledger
    transaction it moves: the opening's effect for the initial state, the effect of the edges
    into it for every other (they must agree)."""
    machine = MACHINES[kind]
    effects: dict[str, set[MoneyEffect]] = {machine.initial: {machine.opening}}
    for (_, to_state), effect in machine.edges.items():
        effects.setdefault(to_state, set()).add(effect)
    # The CHECK and the link trigger key on the state alone.
    assert all(len(v) == 1 for v in effects.values()), effects
    return {
        state: LEDGER_KINDS[effect]
        for state, (effect,) in effects.items()
        if effect is not MoneyEffect.NONE
    }


MONEY_KINDS = {kind: _money_kinds(kind) for kind in KINDS}
MONEY_STATES = {kind: frozenset(MONEY_KINDS[kind]) for kind in KINDS}
# The gate's map for the payment kinds of ledger transaction (migration 0009, and what
# core/payments/service.py posts under): the one action whose decision allows each.
PAYMENT_GATE = {
    "deposit": "deposit",
    "withdrawal_hold": "withdrawal",
    "withdrawal_release": "withdrawal.release",
    "withdrawal_payout": "withdrawal.pay_out",
}


def moved(kind: Kind, current: State, event: State) -> bool:
    """Whether the lifecycle moves a `kind` in `current` by `event`."""
    try:
        outcome = lifecycle.step(kind, current, cast("Event", event))
    except (IllegalTransition, InvalidRequest):
        return False
    return isinstance(outcome, lifecycle.Moved)


def path_to(kind: Kind, state: State) -> list[tuple[State, State]]:
    """The shortest walk along the lifecycle's edges from the initial state to `state`."""
    machine = MACHINES[kind]
    paths: dict[State, list[tuple[State, State]]] = {machine.initial: []}
    frontier = [machine.initial]
    while frontier:
        reached: list[State] = []
        for a, b in sorted(machine.edges):
            if a in frontier and b not in paths:
                paths[b] = [*paths[a], (a, b)]
                reached.append(b)
        frontier = reached
    return paths[state]


def came_from(kind: Kind, state: str) -> str | None:
    """The `from_state` of a row into `state` that no rule on its own refuses: none for the
    opening (into the initial state), else a state with an edge into it."""
    if state == MACHINES[kind].initial:
        return None
    return min(a for a, b in MACHINES[kind].edges if b == state)


def reached_on_way(kind: Kind, state: State) -> set[State]:
    """The states a payment walked to `state` has a transition row to: the opening's, the
    initial state, and each step's."""
    return {MACHINES[kind].initial} | {b for _, b in path_to(kind, state)}


# -- a bare connection, in each of the three ways ---------------------------------------------


@dataclass(frozen=True)
class Db:
    """One database transaction on a bare connection, rolled back after the test; `uows` run
    the services inside it (as savepoints) to make valid rows."""

    conn: AsyncConnection
    uows: UnitOfWorkFactory
    role: str  # "app" or "owner"

    async def scalar(self, statement: str, **params: Any) -> Any:
        return await self.conn.scalar(sa.text(statement), params)

    async def run(self, statement: str, **params: Any) -> int:
        return (await self.conn.execute(sa.text(statement), params)).rowcount

    @property
    def append_only(self) -> str:
        """The refusal of an edit of an append-only table: no privilege, or the trigger."""
        return "permission denied" if self.role == "app" else "append-only"


@pytest.fixture(params=["app", "owner", "owner-replica"])
async def db(
    request: pytest.FixtureRequest,
    app_engine: AsyncEngine,
    owner_engine: AsyncEngine,
    clock: Clock,
) -> AsyncIterator[Db]:
    mode: str = request.param
    async with (app_engine if mode == "app" else owner_engine).connect() as conn:
        outer = await conn.begin()
        if mode == "owner-replica":  # only triggers enabled ALWAYS fire; LOCAL ends with it
            await conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            assert await conn.scalar(sa.text("SHOW session_replication_role")) == "replica"
        assert await conn.scalar(sa.text("SELECT current_user")) == (
            "pitwarden_app" if mode == "app" else conn.engine.url.username
        )
        sessions = async_sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        yield Db(conn, UnitOfWorkFactory(sessions, clock), "app" if mode == "app" else "owner")
        await outer.rollback()


@asynccontextmanager
async def refusal(db: Db, match: str) -> AsyncIterator[None]:
    """The statements inside are refused (in a savepoint, so the test goes on)."""
    with pytest.raises(sa.exc.DBAPIError, match=match):
        async with db.conn.begin_nested():
            yield


async def attempt(db: Db, *statements: tuple[str, dict[str, Any]]) -> str | None:
    """Run the statements in a savepoint that is then undone: None if all were accepted, else
    the database's refusal."""
    nested = await db.conn.begin_nested()
    try:
        for statement, params in statements:
            await db.conn.execute(sa.text(statement), params)
    except sa.exc.DBAPIError as error:
        return str(error.orig)
    finally:
        await nested.rollback()
    return None


# -- rows to start from -----------------------------------------------------------------------


async def new_player(db: Db, cash: str = "0", currency: str = "EUR") -> uuid.UUID:
    async with db.uows() as uow:
        player_id = await factories.player(uow, cash=cash, currency=currency)
        await uow.commit()  # releases the savepoint only
    return player_id


DECISION = (
    "INSERT INTO policy_decisions (id, action, player_id, facts, version, content_hash, rule_ids,"
    " effect, reason_code, decided_at) VALUES (gen_random_uuid(), :action, :player, '{}',"
    " :version, :hash, ARRAY['by-hand'], :effect, :reason, now()) RETURNING id"
)


def _decision_params(player_id: uuid.UUID | None, action: str, effect: str) -> dict[str, Any]:
    return {
        "action": action,
        "player": player_id,
        "version": RULESET,
        "hash": "sha256:" + "0" * 64,
        "effect": effect,
        "reason": "ok" if effect == "allow" else "zone_off",
    }


async def decision(
    db: Db, player_id: uuid.UUID | None, action: str, effect: str = "allow"
) -> uuid.UUID:
    """A stored decision, written by hand as the gate would store it."""
    decision_id: uuid.UUID = await db.scalar(
        DECISION, **_decision_params(player_id, action, effect)
    )
    return decision_id


async def by_hand(uow: UnitOfWork, movement: Movement, ctx: EventContext) -> uuid.UUID:
    """A guard that allows every movement, storing its decision as the gate would."""
    del ctx
    decision_id: uuid.UUID = await uow.session.scalar(
        sa.text(DECISION), _decision_params(movement.player_id, movement.action, "allow")
    )
    return decision_id


async def opened(db: Db, kind: Kind, *, review: bool = True) -> uuid.UUID:
    """A payment opened through the service: a deposit `initiated`, or a withdrawal holding
    its amount, `requested` (or, without review, `approved` at once)."""
    player_id = await new_player(db, cash="50.00")
    async with db.uows() as uow:
        if kind == "deposit":
            payment = await service.open_deposit(
                uow,
                player_id=player_id,
                amount=Money(AMOUNT, "EUR"),
                method="card",
                routes=ROUTES,
                ctx=CTX,
                guard=by_hand,
            )
        else:
            payment = await service.open_withdrawal(
                uow,
                player_id=player_id,
                amount=Money(AMOUNT, "EUR"),
                method="crypto",
                destination="0x00000000000000000000000000000000000000aa",
                routes=ROUTES,
                needs_review=review,
                ctx=CTX,
                guard=by_hand,
            )
        await uow.commit()
    return payment.id


PAYMENT = (
    "INSERT INTO payments (id, kind, player_id, amount, currency, method, country, destination,"
    " state, routes, decision_id, needs_review, created_at, updated_at) VALUES (:id, :kind,"
    " :player, :amount, 'EUR', 'bank_transfer', 'MT', NULL, :state, :routes, :decision, false,"
    " now(), now())"
)


async def new_payment(
    db: Db,
    player_id: uuid.UUID,
    kind: Kind,
    state: str | None = None,
    *,
    opening: bool = True,
) -> uuid.UUID:
    """A payment inserted by hand (in its initial state unless told) with its opening
    transition (a withdrawal's naming its hold), or, `opening=False`, with no transition yet
    (refused at commit)."""
    payment_id = uuid.uuid4()
    allowed = await decision(db, player_id, kind)
    await db.run(
        PAYMENT,
        id=payment_id,
        kind=kind,
        player=player_id,
        amount=AMOUNT,
        state=state or MACHINES[kind].initial,
        routes=ROUTES,
        decision=allowed,
    )
    if opening:
        await transition(db, payment_id, kind, None, MACHINES[kind].initial)
    return payment_id


# The postings core/payments/service.py makes for each kind of ledger transaction: the
# account (a player's, or the house's in the payment's currency) and the sign of the amount.
LEGS: dict[str, tuple[tuple[str, int], ...]] = {
    "deposit": (("player_cash", 1), ("psp_clearing", -1)),
    "withdrawal_hold": (("player_cash", -1), ("player_held", 1)),
    "withdrawal_release": (("player_held", -1), ("player_cash", 1)),
    "withdrawal_payout": (("player_held", -1), ("psp_clearing", 1)),
}
Legs = list[tuple[int, int]]  # (account id, amount) of each posting

LEDGER_TXN = (
    "INSERT INTO ledger_transactions (kind, created_at, player_id, decision_id)"
    " VALUES (:kind, now(), :player, :decision) RETURNING id"
)
# In the account's own currency.
POSTING = (
    "INSERT INTO postings (transaction_id, account_id, shard, currency, amount, posted_at)"
    " SELECT :t, :a, 0, currency, :m, now() FROM accounts WHERE id = :a"
)
BALANCE = "SELECT sum(balance) FROM balances WHERE account_id = :a"
ACCOUNT_OF = "SELECT id FROM accounts WHERE player_id = :p AND kind = :kind"


async def house(db: Db, kind: str, currency: str = "EUR") -> int:
    """The house account of this kind (the clearing account of the first route's provider)."""
    async with db.uows() as uow:
        account = await ledger.house_account(
            uow,
            kind=kind,
            currency=currency,
            provider_code=ROUTES[0] if kind == "psp_clearing" else None,
        )
        await uow.commit()
    return account.id


async def account_of(db: Db, player_id: uuid.UUID, kind: str) -> int:
    """The player's account of this kind, or the house's of this kind in their currency."""
    if kind.startswith("player_"):
        return int(await db.scalar(ACCOUNT_OF, p=player_id, kind=kind))
    currency: str = await db.scalar("SELECT currency FROM players WHERE id = :p", p=player_id)
    return await house(db, kind, currency)


async def legs_of(db: Db, player_id: uuid.UUID, kind: str, amount: int = AMOUNT) -> Legs:
    """The postings of a ledger transaction of this kind moving `amount` for the player."""
    return [
        (await account_of(db, player_id, account), sign * amount) for account, sign in LEGS[kind]
    ]


async def post(db: Db, txn: int, legs: Legs) -> None:
    """The postings of a ledger transaction. A player's account a leg would take below zero is
    first credited the difference by a manual adjustment of its own (a transaction of the
    player, let in by an adjustment.credit decision), so the legs never trip the non-negative
    check, whatever the test built before."""
    for account, amount in legs:
        if amount >= 0:
            continue
        owner, currency, balance = (
            await db.conn.execute(
                sa.text(
                    "SELECT a.player_id, a.currency, b.balance FROM accounts a"
                    " JOIN balances b ON b.account_id = a.id AND b.shard = 0 WHERE a.id = :a"
                ),
                {"a": account},
            )
        ).one()
        if owner is None or balance >= -amount:
            continue
        allowed = await decision(db, owner, "adjustment.credit")
        funding = await db.scalar(LEDGER_TXN, kind="adjustment", player=owner, decision=allowed)
        short = -amount - balance
        await db.run(POSTING, t=funding, a=await house(db, "manual_adjustment", currency), m=-short)
        await db.run(POSTING, t=funding, a=account, m=short)
    for account, amount in legs:
        assert await db.run(POSTING, t=txn, a=account, m=amount) == 1


HOUSE_TXN = "INSERT INTO ledger_transactions (kind, created_at) VALUES ('transfer', now())"


async def house_txn(db: Db) -> int:
    """A ledger transaction of the house: no player, no reference, so it needs no decision and
    no transition may name it. It moves the payments' amount, between house accounts."""
    txn = int(await db.scalar(HOUSE_TXN + " RETURNING id"))
    clearing, adjustment = await house(db, "psp_clearing"), await house(db, "manual_adjustment")
    await post(db, txn, [(clearing, -AMOUNT), (adjustment, AMOUNT)])
    return txn


PLAYER_TXN = (
    "INSERT INTO ledger_transactions (kind, created_at, player_id, decision_id, reference)"
    " VALUES (:kind, now(), :player, :decision, :reference) RETURNING id"
)


async def player_txn(
    db: Db, player_id: uuid.UUID, kind: str, reference: str | None, legs: Legs | None = None
) -> int:
    """A ledger transaction of a player, let in by an allowing decision of its kind's action
    for that player, as the gate's trigger requires, with `legs` for postings (by default what
    the service posts for a payment of AMOUNT: see LEGS)."""
    allowed = await decision(db, player_id, PAYMENT_GATE[kind])
    txn = int(
        await db.scalar(
            PLAYER_TXN, kind=kind, player=player_id, decision=allowed, reference=reference
        )
    )
    await post(db, txn, await legs_of(db, player_id, kind) if legs is None else legs)
    return txn


async def own_txn(db: Db, payment_id: uuid.UUID, kind: str, legs: Legs | None = None) -> int:
    """A ledger transaction of the payment's own: its player's, under its reference (moving
    the payment's amount unless told other `legs`)."""
    player_id: uuid.UUID = await db.scalar(
        "SELECT player_id FROM payments WHERE id = :p", p=payment_id
    )
    return await player_txn(db, player_id, kind, f"payment:{payment_id}", legs)


TRANSITION = (
    "INSERT INTO payment_transitions (payment_id, kind, from_state, to_state, cause, actor,"
    " ledger_transaction_id, at) VALUES (:payment, :kind, :from, :to, 'request', 'by-hand',"
    " :txn, now())"
)
SET_STATE = "UPDATE payments SET state = :to, updated_at = now() WHERE id = :payment"
# Fails (division by zero) unless the payment is now in :to.
CHECK_STATE = "SELECT 1 / (state = :to)::int FROM payments WHERE id = :p"


async def transition(
    db: Db, payment_id: uuid.UUID, kind: Kind, from_state: str | None, to_state: str
) -> None:
    """A transition row, naming a ledger transaction of the payment's own exactly where the
    lifecycle moves money, of the kind it moves."""
    money = MONEY_KINDS[kind].get(to_state)
    txn = await own_txn(db, payment_id, money) if money else None
    await db.run(
        TRANSITION, payment=payment_id, kind=kind, **{"from": from_state}, to=to_state, txn=txn
    )


async def move(db: Db, payment_id: uuid.UUID, kind: Kind, from_state: str, to_state: str) -> None:
    await transition(db, payment_id, kind, from_state, to_state)
    assert await db.run(SET_STATE, payment=payment_id, to=to_state) == 1


async def walked_to(db: Db, player_id: uuid.UUID, kind: Kind, state: State) -> uuid.UUID:
    """A payment by hand, opened and moved along the lifecycle's shortest path to `state`."""
    payment_id = await new_payment(db, player_id, kind)
    for a, b in path_to(kind, state):
        await move(db, payment_id, kind, a, b)
    assert await state_of(db, payment_id) == state
    return payment_id


async def state_of(db: Db, payment_id: uuid.UUID) -> str:
    state: str = await db.scalar("SELECT state FROM payments WHERE id = :p", p=payment_id)
    return state


# -- 1. the migration's edges are the lifecycle's ---------------------------------------------


def test_what_the_lifecycle_says_moves_money() -> None:
    """The lifecycle's money effects, per state reached, as the migration's CHECK and its link
    trigger encode them (which state moves money, and the kind of ledger transaction): if this
    changes, they (and the tests below, derived from the lifecycle) must too."""
    assert MONEY_KINDS == {
        "deposit": {"confirmed": "deposit"},
        "withdrawal": {
            "requested": "withdrawal_hold",
            "rejected": "withdrawal_release",
            "failed": "withdrawal_release",
            "confirmed": "withdrawal_payout",
        },
    }
    assert set(LEDGER_KINDS.values()) == set(PAYMENT_GATE)
    assert {kind: MACHINES[kind].initial for kind in KINDS} == {
        "deposit": "initiated",
        "withdrawal": "requested",
    }


@pytest.mark.parametrize("kind", KINDS)
async def test_a_state_update_succeeds_exactly_on_the_lifecycles_edges(db: Db, kind: Kind) -> None:
    """Every (from, to) pair, `to` over the states of both kinds: with a matching transition
    row inserted first, the UPDATE is accepted exactly when lifecycle.step says Moved. Where
    the payment has reached `to` already (its opening's state included) no such row can be
    written, and the UPDATE alone is refused by the edge rule."""
    player_id = await new_player(db)
    machine = MACHINES[kind]
    expected = {(a, b) for a in machine.states for b in ALL_STATES if a != b and moved(kind, a, b)}
    assert len(expected) >= 6

    accepted: set[tuple[State, State]] = set()
    refused: dict[tuple[State, State], str] = {}
    bare: dict[tuple[State, State], str | None] = {}  # the UPDATE alone, where `b` was reached
    for a in sorted(machine.states):
        payment_id = await walked_to(db, player_id, kind, a)
        for b in ALL_STATES:
            if b == a:
                continue
            money = MONEY_KINDS[kind].get(b)
            txn = await own_txn(db, payment_id, money) if money else None
            row = {"payment": payment_id, "kind": kind, "from": a, "to": b, "txn": txn}
            refusal_text = await attempt(
                db,
                (TRANSITION, row),
                (SET_STATE, {"payment": payment_id, "to": b}),
                (CHECK_STATE, {"p": payment_id, "to": b}),
            )
            if refusal_text is None:
                accepted.add((a, b))
            else:
                refused[a, b] = refusal_text
            if b in reached_on_way(kind, a):
                bare[a, b] = await attempt(db, (SET_STATE, {"payment": payment_id, "to": b}))
        assert await state_of(db, payment_id) == a  # every attempt was undone

    assert accepted == expected
    for (a, b), text in refused.items():
        # The edge rule refused it, or the payment had reached `b` already (so no transition
        # row to `b` can be written: the unique payment + state).
        reason = SAME_STATE_TWICE if b in reached_on_way(kind, a) else NOT_AN_EDGE
        assert reason in text, (a, b, text)
    assert bare
    for (a, b), alone in bare.items():
        assert NOT_AN_EDGE in str(alone), (a, b, alone)


async def test_the_installed_trigger_lists_exactly_the_lifecycles_edges(
    owner_engine: AsyncEngine,
) -> None:
    """The function PostgreSQL runs, read back: its edges and opening states are the
    lifecycle's (the pairs the UPDATE test cannot reach, such as sent -> approved, included)."""
    async with owner_engine.connect() as conn:
        source = await conn.scalar(
            sa.text("SELECT prosrc FROM pg_proc WHERE proname = 'pw_payment_rules'")
        )
    assert isinstance(source, str)
    edges = set(re.findall(r"\('(\w+)', '(\w+)', '(\w+)'\)", source))
    openings = set(re.findall(r"\('(\w+)', '(\w+)'\)", source))
    assert edges == {(kind, a, b) for kind in KINDS for a, b in MACHINES[kind].edges}
    assert openings == {(kind, MACHINES[kind].initial) for kind in KINDS}


# -- 2. transitions: recorded first, each state once, opened in the first state --------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_payment_opens_only_in_its_first_state(db: Db, kind: Kind) -> None:
    player_id = await new_player(db)
    others = sorted(set(ALL_STATES) - {MACHINES[kind].initial})
    for state in others:
        async with refusal(db, NOT_FIRST_STATE):
            await new_payment(db, player_id, kind, state)
    payment_id = await new_payment(db, player_id, kind)  # the control
    assert await state_of(db, payment_id) == lifecycle.begin(kind).to_state


@pytest.mark.parametrize("kind", KINDS)
async def test_an_opening_transition_goes_to_the_first_state(db: Db, kind: Kind) -> None:
    """A transition from no state, to any state (of either kind) but the kind's first, is
    refused, whoever writes it, though it names the ledger transaction of the payment's own
    that its state moves (so no other rule refuses it): the same row from a state with an edge
    into it is taken. The opening to the first state is taken, and would commit."""
    player_id = await new_player(db)
    payment_id = await new_payment(db, player_id, kind, opening=False)
    first = MACHINES[kind].initial
    outcomes: dict[tuple[str | None, str], str | None] = {}
    for state in ALL_STATES:
        money = MONEY_KINDS[kind].get(state)
        txn = await own_txn(db, payment_id, money) if money else None
        froms = {None, came_from(kind, state)} if state in MACHINES[kind].states else {None}
        for frm in froms:
            row = {"payment": payment_id, "kind": kind, "from": frm, "to": state, "txn": txn}
            outcomes[frm, state] = await attempt(db, (TRANSITION, row))
    assert {key for key, text in outcomes.items() if text is None} == {(None, first)} | {
        (came_from(kind, state), state) for state in MACHINES[kind].states - {first}
    }
    for key, text in outcomes.items():
        if text is not None:
            assert OPENS_ELSEWHERE in text, (key, text)
    # The control, written to stay (the candidates' ledger transactions, named by no step, would
    # not commit: only the checks on the payment and on double entry are run here).
    await transition(db, payment_id, kind, None, first)
    await db.run("SET CONSTRAINTS payments_opened, ledger_transactions_balanced IMMEDIATE")
    rows = "SELECT from_state, to_state FROM payment_transitions WHERE payment_id = :p"
    assert [tuple(row) for row in await db.conn.execute(sa.text(rows), {"p": payment_id})] == [
        (None, first)
    ]


async def test_a_withdrawal_opens_with_its_hold_so_cannot_release_anothers(db: Db) -> None:
    """The hole the rule closes: a withdrawal opened straight into `approved` (a state that
    moves no money, so with no hold), then rejected, releasing a hold it never made: another
    withdrawal's of the same player. Its opening is refused, whoever writes it, and the rest
    with it; opened in `requested` with a hold of its own, the same rejection releases only
    that, and the other hold stays."""
    player_id = await new_player(db, cash="50.00")
    await new_payment(db, player_id, "withdrawal")  # the other withdrawal, holding AMOUNT
    cash = await account_of(db, player_id, "player_cash")
    held = await account_of(db, player_id, "player_held")
    assert (await db.scalar(BALANCE, a=cash), await db.scalar(BALANCE, a=held)) == (4_000, AMOUNT)
    thief = await new_payment(db, player_id, "withdrawal", opening=False)
    async with refusal(db, OPENS_ELSEWHERE):
        await transition(db, thief, "withdrawal", None, "approved")  # no hold
        await move(db, thief, "withdrawal", "requested", "rejected")  # the other's hold back
        await db.run(ALL_IMMEDIATE)  # as at commit
    assert (await db.scalar(BALANCE, a=cash), await db.scalar(BALANCE, a=held)) == (4_000, AMOUNT)
    assert await state_of(db, thief) == "requested"

    # The control: opened with its hold, the same rejection would commit, and undoes only it.
    await transition(db, thief, "withdrawal", None, "requested")
    await move(db, thief, "withdrawal", "requested", "rejected")
    await db.run(ALL_IMMEDIATE)
    assert await state_of(db, thief) == "rejected"
    assert (await db.scalar(BALANCE, a=cash), await db.scalar(BALANCE, a=held)) == (4_000, AMOUNT)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_state_change_needs_its_own_transition_row(db: Db, kind: Kind) -> None:
    """On every edge: no transition row, or one from another state, and the UPDATE is refused
    (a row from no state is not even written: only an opening has none, and it opens in the
    first state); with the right row it goes through."""
    player_id = await new_player(db)
    machine = MACHINES[kind]
    for a, b in sorted(machine.edges):
        payment_id = await walked_to(db, player_id, kind, a)
        async with refusal(db, NO_TRANSITION_ROW):
            await db.run(SET_STATE, payment=payment_id, to=b)
        elsewhere = min(machine.states - {a, b})
        async with refusal(db, NO_TRANSITION_ROW):
            await transition(db, payment_id, kind, elsewhere, b)
            await db.run(SET_STATE, payment=payment_id, to=b)
        async with refusal(db, OPENS_ELSEWHERE):
            await transition(db, payment_id, kind, None, b)
            await db.run(SET_STATE, payment=payment_id, to=b)
        assert await state_of(db, payment_id) == a
        await move(db, payment_id, kind, a, b)
        assert await state_of(db, payment_id) == b


@pytest.mark.parametrize("kind", KINDS)
async def test_a_payment_reaches_each_state_once(db: Db, kind: Kind) -> None:
    """A second transition to a state the payment has reached is refused: a redelivered
    "confirmed" cannot credit twice. The opening row too (a withdrawal's, with a hold of its
    own: the refusal is the state's, not the ledger transaction's)."""
    player_id = await new_player(db)
    machine = MACHINES[kind]
    opening = await new_payment(db, player_id, kind)  # with its opening row
    async with refusal(db, SAME_STATE_TWICE):
        await transition(db, opening, kind, None, machine.initial)
    for a, b in sorted(machine.edges):
        payment_id = await walked_to(db, player_id, kind, a)
        await move(db, payment_id, kind, a, b)
        async with refusal(db, SAME_STATE_TWICE):
            await transition(db, payment_id, kind, a, b)
        assert (
            await db.scalar(
                "SELECT count(*) FROM payment_transitions WHERE payment_id = :p AND to_state = :s",
                p=payment_id,
                s=b,
            )
            == 1
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_a_payment_commits_only_with_its_opening_transition(db: Db, kind: Kind) -> None:
    """Checked when the transaction commits (run here on demand): a payment with no transition,
    or with only a step that is not its opening, is refused; with its opening row, written
    after the payment, it commits, by hand or through the service."""
    machine = MACHINES[kind]
    player_id = await new_player(db, cash="50.00")
    async with refusal(db, NOT_OPENED):
        await new_payment(db, player_id, kind, opening=False)  # accepted until the check runs
        await db.run(ALL_IMMEDIATE)
    a, b = min(
        (a, b) for a, b in machine.edges if a == machine.initial and not MONEY_KINDS[kind].get(b)
    )
    async with refusal(db, NOT_OPENED):
        payment_id = await new_payment(db, player_id, kind, opening=False)
        await transition(db, payment_id, kind, a, b)
        await db.run(ALL_IMMEDIATE)

    # The controls. By hand: the opening row names the payment's own hold where it holds,
    # with its postings (cash to held, from the player's own 50.00), so the ledger's
    # double-entry check passes too.
    payment_id = await new_payment(db, player_id, kind, opening=False)
    money = MONEY_KINDS[kind].get(machine.initial)
    txn = None
    if money is not None:
        assert money == "withdrawal_hold"
        txn = await own_txn(db, payment_id, money)
    opening = {"kind": kind, "from": None, "to": machine.initial, "txn": txn}
    await db.run(TRANSITION, payment=payment_id, **opening)
    service_made = await opened(db, kind)
    await db.run(ALL_IMMEDIATE)
    for made in (payment_id, service_made):
        assert await state_of(db, made) == machine.initial
    held = AMOUNT if money is not None else 0  # the hand-made hold, not topped up
    balances = {
        account: await db.scalar(BALANCE, a=await account_of(db, player_id, account))
        for account in ("player_cash", "player_held")
    }
    assert balances == {"player_cash": 5_000 - held, "player_held": held}


# -- 3. what a payment is never changes -------------------------------------------------------

WHAT_IT_IS = {
    "id": "id = gen_random_uuid()",
    "kind": "kind = CASE kind WHEN 'deposit' THEN 'withdrawal' ELSE 'deposit' END",
    "player_id": "player_id = :other_player",
    "amount": "amount = amount + 1",
    "currency": "currency = 'USD'",
    "method": "method = CASE method WHEN 'card' THEN 'crypto' ELSE 'card' END",
    "country": "country = 'SE'",
    "destination": "destination = coalesce(destination, '') || 'x'",
    "routes": "routes = array_append(routes, 'otherpay')",
    "routes order": "routes = ARRAY[routes[2], routes[1]]",
    "decision_id": "decision_id = :other_decision",
    "created_at": "created_at = created_at - interval '1 second'",
}
ROW = "SELECT * FROM payments WHERE id = :p"


@pytest.mark.parametrize("kind", KINDS)
async def test_what_a_payment_is_cannot_change(db: Db, kind: Kind) -> None:
    payment_id = await opened(db, kind)
    before = (await db.conn.execute(sa.text(ROW), {"p": payment_id})).one()
    other_player = await new_player(db)
    params = {
        "p": payment_id,
        "other_player": other_player,
        "other_decision": await decision(db, other_player, kind),
    }
    outcomes = {
        column: await attempt(db, (f"UPDATE payments SET {change} WHERE id = :p", params))  # noqa: S608
        for column, change in WHAT_IT_IS.items()
    }
    assert {column for column, text in outcomes.items() if text is None} == set()
    for column, text in outcomes.items():
        assert WHAT_IT_IS_CHANGED in str(text), (column, text)
    # The control: what may change does (the flag an officer clears, the time of the change).
    assert (
        await db.run(
            "UPDATE payments SET needs_review = NOT needs_review, updated_at = now() WHERE id = :p",
            p=payment_id,
        )
        == 1
    )
    after = (await db.conn.execute(sa.text(ROW), {"p": payment_id})).one()
    changed = {k for k in before._mapping if before._mapping[k] != after._mapping[k]}
    assert changed <= {"needs_review", "updated_at"}
    assert "needs_review" in changed


BIND = (
    "UPDATE payments SET provider = :provider, provider_ref = :ref, redirect_url = :url"
    " WHERE id = :p"
)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_provider_is_set_once_and_never_changed(db: Db, kind: Kind) -> None:
    payment_id = await opened(db, kind)
    url = "https://fastpay.example/pay/1" if kind == "deposit" else None
    async with refusal(db, "ck_payments_provider_ref"):  # a provider names its reference
        await db.run("UPDATE payments SET provider = 'fastpay' WHERE id = :p", p=payment_id)
    ref = f"fp_{payment_id.hex}"
    assert await db.run(BIND, provider="fastpay", ref=ref, url=url, p=payment_id) == 1  # once
    changes = [
        "provider = 'slowpay'",
        "provider_ref = provider_ref || '-2'",
        "redirect_url = 'https://elsewhere.example/pay'",
        "provider = 'slowpay', provider_ref = 'sp_1'",
        "provider = NULL, provider_ref = NULL, redirect_url = NULL",
    ]
    if url is not None:
        changes.append("redirect_url = NULL")
    for change in changes:
        async with refusal(db, PROVIDER_CHANGED):
            await db.run(f"UPDATE payments SET {change} WHERE id = :p", p=payment_id)  # noqa: S608
    row = (
        await db.conn.execute(
            sa.text("SELECT provider, provider_ref, redirect_url FROM payments WHERE id = :p"),
            {"p": payment_id},
        )
    ).one()
    assert tuple(row) == ("fastpay", ref, url)
    # Nor can another payment take the same provider reference.
    other = await opened(db, kind)
    async with refusal(db, "uq_payments_provider_provider_ref"):
        await db.run(BIND, provider="fastpay", ref=ref, url=None, p=other)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_provider_is_one_of_the_routes_and_a_redirect_needs_one(db: Db, kind: Kind) -> None:
    """A payment is bound only to a provider on its routes (exactly as spelt), and a redirect
    URL only comes with a provider."""
    payment_id = await opened(db, kind)
    assert await db.scalar("SELECT routes FROM payments WHERE id = :p", p=payment_id) == ROUTES
    outcomes = {
        (provider, with_url): await attempt(
            db,
            (
                BIND,
                {
                    "provider": provider,
                    "ref": None if provider is None else f"{provider}_{payment_id.hex}",
                    "url": "https://psp.example/pay/1" if with_url else None,
                    "p": payment_id,
                },
            ),
        )
        for provider in (None, *ROUTES, "otherpay", ROUTES[0].upper())
        for with_url in (False, True)
    }
    assert {key for key, text in outcomes.items() if text is None} == {
        (None, False),  # unbound, as opened
        *((route, with_url) for route in ROUTES for with_url in (False, True)),
    }
    for (provider, with_url), text in outcomes.items():
        if text is not None:
            reason = NO_REDIRECT_WITHOUT_PROVIDER if provider is None else NOT_A_ROUTE
            assert reason in text, (provider, with_url, text)
    row = "SELECT provider, redirect_url FROM payments WHERE id = :p"
    assert tuple((await db.conn.execute(sa.text(row), {"p": payment_id})).one()) == (None, None)


# -- 4. history is append-only ----------------------------------------------------------------

APPEND_ONLY = ("payment_transitions", "payment_attempts", "webhook_receipts")
HISTORY_EDITS = [
    "DELETE FROM payments WHERE id = :p",
    "DELETE FROM payments",
    "TRUNCATE payments CASCADE",
    *(
        edit
        for table in APPEND_ONLY
        for edit in (
            f"UPDATE {table} SET payment_id = payment_id WHERE payment_id = :p",  # noqa: S608
            f"DELETE FROM {table} WHERE payment_id = :p",  # noqa: S608
            f"TRUNCATE {table}",
        )
    ),
    "UPDATE payment_transitions SET ledger_transaction_id = NULL WHERE payment_id = :p",
    "UPDATE webhook_receipts SET outcome = 'ignored' WHERE payment_id = :p",
]
COUNTS = (
    "SELECT (SELECT count(*) FROM payments WHERE id = :p),"
    " (SELECT count(*) FROM payment_transitions WHERE payment_id = :p),"
    " (SELECT count(*) FROM payment_attempts WHERE payment_id = :p),"
    " (SELECT count(*) FROM webhook_receipts WHERE payment_id = :p)"
)


async def test_payments_and_their_history_cannot_be_deleted_or_rewritten(db: Db) -> None:
    """The application role has no privilege for it; the owner is refused by the triggers."""
    payment_id = await opened(db, "withdrawal", review=False)  # requested, then approved
    async with db.uows() as uow:
        await service.record_attempt(
            uow, payment_id, provider="fastpay", outcome="accepted", status=200, ctx=CTX
        )
        await uow.commit()
    await db.run(
        "INSERT INTO webhook_receipts (provider, message_id, payment_id, event, outcome,"
        " body_sha256, received_at) VALUES ('fastpay', :m, :p, 'sent', 'moved', :h, now())",
        m=f"msg_{payment_id.hex}",
        p=payment_id,
        h=b"\x00" * 32,
    )
    counts = (await db.conn.execute(sa.text(COUNTS), {"p": payment_id})).one()
    assert tuple(counts) == (1, 2, 1, 1)  # a row in each, for the row triggers to fire on
    # The rows would commit; and TRUNCATE refuses a table with deferred checks still pending
    # before any trigger of its own could.
    await db.run(ALL_IMMEDIATE)

    outcomes = {edit: await attempt(db, (edit, {"p": payment_id})) for edit in HISTORY_EDITS}
    assert {edit for edit, text in outcomes.items() if text is None} == set()
    for edit, text in outcomes.items():
        assert db.append_only in str(text), (edit, text)
    assert (await db.conn.execute(sa.text(COUNTS), {"p": payment_id})).one() == counts


async def test_the_payment_triggers_are_enabled_always(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT c.relname, t.tgname, t.tgenabled, t.tgdeferrable AND t.tginitdeferred"
                " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE NOT t.tgisinternal AND c.relname = ANY (:tables)"
            ),
            {"tables": ["payments", "ledger_transactions", *APPEND_ONLY]},
        )
        found = {(table, name): (mode, deferred) for table, name, mode, deferred in rows}
    expected = {
        ("payments", "payments_rules"),
        ("payments", "payments_opened"),
        ("payments", "payments_no_delete"),
        ("payments", "payments_no_truncate"),
        ("payment_transitions", "payment_transitions_money"),
        ("ledger_transactions", "ledger_transactions_payment_step"),
        *((t, f"{t}_{what}") for t in APPEND_ONLY for what in ("no_update_delete", "no_truncate")),
    }
    assert expected <= found.keys()
    assert {found[key][0] for key in expected} == {"A"}, found
    # Checked at commit: a payment's transitions are written after it, and a step's ledger
    # transaction before the transition that names it.
    assert {key for key in expected if found[key][1]} == {
        ("payments", "payments_opened"),
        ("ledger_transactions", "ledger_transactions_payment_step"),
    }


# -- 5. money moves where the lifecycle says --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_transition_names_a_ledger_transaction_exactly_where_money_moves(
    db: Db, kind: Kind
) -> None:
    """A row to each state, with no ledger transaction or with one of the payment's own of
    each kind a payment of this kind moves: accepted exactly with none where no money moves
    and with the lifecycle's kind where it does. The CHECK refuses a missing one where money
    moves, and one where none does even when the link trigger takes its kind."""
    player_id = await new_player(db)
    # No opening row: each row below (the opening one, or one from a state with an edge into
    # its state) is a try, undone.
    payment_id = await new_payment(db, player_id, kind, opening=False)
    accepted: set[tuple[str, str | None]] = set()
    by_check: set[tuple[str, str | None]] = set()
    for state in sorted(MACHINES[kind].states):
        for money in (None, *sorted(set(MONEY_KINDS[kind].values()))):
            txn = await own_txn(db, payment_id, money) if money else None
            refused = await try_step(db, payment_id, kind, state, txn)
            if refused is None:
                accepted.add((state, money))
            elif MONEY_CHECK in refused:
                by_check.add((state, money))
            else:  # a kind the link trigger does not take there, refused first
                assert NOT_ITS_OWN in refused, (state, money, refused)
    assert accepted == {(state, MONEY_KINDS[kind].get(state)) for state in MACHINES[kind].states}
    assert {state for state, money in by_check if money is None} == MONEY_STATES[kind]
    assert {state for state, money in by_check if money is not None} == (
        MACHINES[kind].states - MONEY_STATES[kind]
    )


async def try_step(
    db: Db, payment_id: uuid.UUID, kind: Kind, state: str, txn: int | None
) -> str | None:
    """A transition into `state` (from a state with an edge into it, or none for the first)
    naming `txn`, tried and undone: None if taken, else the refusal."""
    row = {"payment": payment_id, "kind": kind, "from": came_from(kind, state), "to": state}
    return await attempt(db, (TRANSITION, row | {"txn": txn}))


async def only_the_right_one_passes(
    db: Db, kind: Kind, payment_id: uuid.UUID, tried: dict[str, dict[str, int]], *, right: str
) -> None:
    """For each money state, a transition naming each candidate ledger transaction is tried
    (and undone): only the `right` one is taken, every other is refused by the link trigger
    naming the kind it wanted, and no transition stays."""
    outcomes = {
        (state, name): await try_step(db, payment_id, kind, state, txn)
        for state, candidates in tried.items()
        for name, txn in candidates.items()
    }
    assert {key for key, text in outcomes.items() if text is None} == {
        (state, right) for state in MONEY_KINDS[kind]
    }
    for (state, name), text in outcomes.items():
        if text is not None:
            expected = f"{NOT_ITS_OWN} {MONEY_KINDS[kind][state]} ledger transaction"
            assert expected in text, (state, name, text)
    left = await db.scalar(
        "SELECT count(*) FROM payment_transitions WHERE payment_id = :p", p=payment_id
    )
    assert left == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_transition_moves_its_own_payments_money(db: Db, kind: Kind) -> None:
    """Where a step moves money, its ledger transaction is the payment's own (its player's,
    under its reference) and of the kind the lifecycle says; any other is refused, whoever
    writes the row."""
    player_id = await new_player(db)
    other_player = await new_player(db)
    # No opening row: each row below (the opening one, or one from a state with an edge into
    # its state) is a try, undone.
    payment_id = await new_payment(db, player_id, kind, opening=False)
    sibling = await new_payment(db, player_id, kind)  # another payment of the same player
    reference = f"payment:{payment_id}"
    tried: dict[str, dict[str, int]] = {}
    for state, money in sorted(MONEY_KINDS[kind].items()):
        candidates = {
            "its own": await own_txn(db, payment_id, money),
            "its sibling's": await own_txn(db, sibling, money),
            "unreferenced": await player_txn(db, player_id, money, None),
            "under another reference": await player_txn(db, player_id, money, f"{reference}x"),
            "another player's": await player_txn(db, other_player, money, reference),
            "the house's": await house_txn(db),
            **{
                f"its own {other}": await own_txn(db, payment_id, other)
                for other in sorted(PAYMENT_GATE)
                if other != money
            },
        }
        tried[state] = candidates
    await only_the_right_one_passes(db, kind, payment_id, tried, right="its own")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_transition_moves_its_payments_amount_on_the_players_side(
    db: Db, kind: Kind
) -> None:
    """Where a step moves money, its ledger transaction (the payment's own, of the kind the
    step moves) posts exactly the step's legs of the payment's amount on the player's accounts:
    one moving another sum, that sum only on a house leg, the legs the wrong way round, or an
    extra posting on the player's accounts is refused, whoever writes the row."""
    player_id = await new_player(db, cash="50.00")
    payment_id = await new_payment(db, player_id, kind, opening=False)
    clearing = await house(db, "psp_clearing")
    adjustment = await house(db, "manual_adjustment")
    tried: dict[str, dict[str, int]] = {}
    for state, money in sorted(MONEY_KINDS[kind].items()):
        (account, sign), *_ = LEGS[money]
        player_leg = await account_of(db, player_id, account)
        candidates = {
            "its amount": await own_txn(db, payment_id, money),
            **{
                name: await own_txn(
                    db, payment_id, money, await legs_of(db, player_id, money, sum_)
                )
                for name, sum_ in (
                    ("a minor unit more", AMOUNT + 1),
                    ("a minor unit less", AMOUNT - 1),
                    ("twice its amount", 2 * AMOUNT),
                )
            },
            "its amount on a house leg only": await own_txn(
                db,
                payment_id,
                money,
                [
                    (player_leg, sign * (AMOUNT - 1)),
                    (clearing, -sign * AMOUNT),
                    (adjustment, sign),
                ],
            ),
            "its legs the wrong way round": await own_txn(
                db,
                payment_id,
                money,
                [(a, -m) for a, m in await legs_of(db, player_id, money)],
            ),
            "an extra posting on the player's accounts": await own_txn(
                db,
                payment_id,
                money,
                [
                    *await legs_of(db, player_id, money),
                    (await account_of(db, player_id, "player_cash"), 1),
                    (adjustment, -1),
                ],
            ),
        }
        tried[state] = candidates
    await only_the_right_one_passes(db, kind, payment_id, tried, right="its amount")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_payment_is_in_its_players_currency(db: Db, kind: Kind) -> None:
    """An EUR payment of a player whose wallet is in USD could never move money: refused as it
    is inserted, whoever writes it."""
    dollar_player = await new_player(db, currency="USD")
    euro_player = await new_player(db)
    for player, refused in ((dollar_player, True), (euro_player, False)):
        row = {
            "id": uuid.uuid4(),
            "kind": kind,
            "player": player,
            "amount": AMOUNT,
            "state": MACHINES[kind].initial,
            "routes": ROUTES,
            "decision": await decision(db, player, kind),
        }
        text = await attempt(db, (PAYMENT, row))
        if refused:
            assert text is not None
            assert "not in the currency of its player's wallet" in text
        else:
            assert text is None


async def test_one_ledger_transaction_backs_one_transition(db: Db) -> None:
    """The same ledger transaction cannot back a second transition: not a second step of its
    payment (the unique constraint: a withdrawal's rejection and its failure both release), nor
    another payment's step (not that one's own: the link trigger refuses it first)."""
    player_id = await new_player(db)
    first = await new_payment(db, player_id, "withdrawal")
    second = await new_payment(db, player_id, "withdrawal")
    release = await own_txn(db, first, "withdrawal_release")
    rejected = {"kind": "withdrawal", "from": "requested", "to": "rejected", "txn": release}
    failed = rejected | {"from": "approved", "to": "failed"}
    await db.run(TRANSITION, payment=first, **rejected)
    async with refusal(db, SAME_LEDGER_TXN):  # its failure under the rejection's release
        await db.run(TRANSITION, payment=first, **failed)
    async with refusal(db, NOT_ITS_OWN):  # another payment's rejection
        await db.run(TRANSITION, payment=second, **rejected)
    # The controls: each under a release of its own.
    await db.run(
        TRANSITION,
        payment=first,
        **(failed | {"txn": await own_txn(db, first, "withdrawal_release")}),
    )
    await db.run(
        TRANSITION,
        payment=second,
        **(rejected | {"txn": await own_txn(db, second, "withdrawal_release")}),
    )


# -- 6. the gate's map for the payment kinds --------------------------------------------------


@dataclass(frozen=True)
class Accounts:
    cash: int
    held: int
    clearing: int


async def with_a_hold(db: Db) -> tuple[uuid.UUID, Accounts]:
    """A player with 50.00 cash, 10.00 of it held by a withdrawal opened through the service."""
    payment_id = await opened(db, "withdrawal")
    player_id: uuid.UUID = await db.scalar(
        "SELECT player_id FROM payments WHERE id = :p", p=payment_id
    )
    async with db.uows() as uow:
        wallet = await players.wallet(uow, player_id)
        clearing = await ledger.house_account(
            uow, kind="psp_clearing", currency="EUR", provider_code="fastpay"
        )
        await uow.commit()
    assert wallet.held is not None
    assert (wallet.cash_balance, wallet.held_balance) == (4_000, AMOUNT)
    return player_id, Accounts(wallet.cash.id, wallet.held.id, clearing.id)


@pytest.mark.parametrize("kind", sorted(PAYMENT_GATE))
async def test_a_payment_ledger_transaction_needs_the_decision_of_its_action(
    db: Db, kind: str
) -> None:
    player_id, accounts = await with_a_hold(db)
    other_player = await new_player(db)
    action = PAYMENT_GATE[kind]
    tries = {
        (who, act, effect): await decision(db, who, act, effect)
        for who, act, effect in [
            *((player_id, act, "allow") for act in sorted(set(PAYMENT_GATE.values()))),
            (player_id, action, "deny"),
            (other_player, action, "allow"),
            (None, action, "allow"),
        ]
    }
    allowed = set()
    for key, decision_id in tries.items():
        text = await attempt(
            db, (LEDGER_TXN, {"kind": kind, "player": player_id, "decision": decision_id})
        )
        if text is None:
            allowed.add(key)
        else:
            assert NEEDS_DECISION in text, (key, text)
    assert allowed == {(player_id, action, "allow")}

    # The right decision lets it in, and with its postings it would commit.
    legs = {
        "deposit": ((accounts.cash, 100), (accounts.clearing, -100)),
        "withdrawal_hold": ((accounts.cash, -100), (accounts.held, 100)),
        "withdrawal_release": ((accounts.held, -100), (accounts.cash, 100)),
        "withdrawal_payout": ((accounts.held, -100), (accounts.clearing, 100)),
    }[kind]
    before = {account: await db.scalar(BALANCE, a=account) for account, _ in legs}
    txn = await db.scalar(
        LEDGER_TXN, kind=kind, player=player_id, decision=tries[player_id, action, "allow"]
    )
    for account, amount in legs:
        await db.run(POSTING, t=txn, a=account, m=amount)
    await db.run("SET CONSTRAINTS ledger_transactions_balanced IMMEDIATE")  # double entry holds
    assert {account: await db.scalar(BALANCE, a=account) for account, _ in legs} == {
        account: before[account] + amount for account, amount in legs
    }
    # ...but money of a payment kind moves only as a payment's step: this one names none.
    outside = await attempt(db, ("SET CONSTRAINTS ledger_transactions_payment_step IMMEDIATE", {}))
    assert outside is not None
    assert "moves payment money outside a payment's step" in outside


# -- 7. one account of each kind per player; the held one never negative ----------------------

HELD_ACCOUNTS = (
    "SELECT a.id, a.code, a.currency, a.allow_negative, a.balance_shards,"
    " (SELECT array_agg(b.balance) FROM balances b WHERE b.account_id = a.id) AS balances"
    " FROM accounts a WHERE a.player_id = :p AND a.kind = 'player_held'"
)


async def test_a_registered_player_has_one_held_account(db: Db) -> None:
    player_id = await new_player(db, currency="USD")
    rows = (await db.conn.execute(sa.text(HELD_ACCOUNTS), {"p": player_id})).all()
    assert [tuple(row)[1:] for row in rows] == [(f"player:{player_id}:held", "USD", False, 1, [0])]
    async with db.uows() as uow:
        wallet = await players.wallet(uow, player_id)
    assert wallet.held is not None
    assert wallet.held.id == rows[0].id


async def test_every_player_has_exactly_one_held_account_in_their_currency(db: Db) -> None:
    await new_player(db, currency="USD")  # at least one, whatever ran before
    total, wrong = (
        await db.conn.execute(
            sa.text(
                "SELECT count(*), count(*) FILTER (WHERE held.n IS DISTINCT FROM 1)"
                " FROM players p LEFT JOIN LATERAL (SELECT count(*) AS n FROM accounts a"
                " WHERE a.player_id = p.id AND a.kind = 'player_held'"
                " AND a.currency = p.currency) held ON true"
            )
        )
    ).one()
    assert total >= 1
    assert wrong == 0


async def test_a_held_account_never_goes_negative(db: Db) -> None:
    player_id = await new_player(db, cash="50.00")
    held = await db.scalar(
        "SELECT id FROM accounts WHERE player_id = :p AND kind = 'player_held'", p=player_id
    )
    cash = await db.scalar(
        "SELECT id FROM accounts WHERE player_id = :p AND kind = 'player_cash'", p=player_id
    )
    allowed = await decision(db, player_id, "withdrawal.release")
    txn = await db.scalar(LEDGER_TXN, kind="withdrawal_release", player=player_id, decision=allowed)
    await db.run(POSTING, t=txn, a=cash, m=100)  # the other leg first: the order must not matter
    async with refusal(db, NON_NEGATIVE):
        await db.run(POSTING, t=txn, a=held, m=-100)
    assert await db.scalar(BALANCE, a=held) == 0
    # Nor can a player's held account be opened that may go negative.
    async with refusal(db, "ck_accounts_player_accounts_never_negative"):
        await db.run(
            "INSERT INTO accounts (code, kind, currency, player_id, allow_negative,"
            " balance_shards, created_at) VALUES (:code, 'player_held', 'EUR', :p, true, 1,"
            " now())",
            code=f"player:{player_id}:held-2",
            p=player_id,
        )


ACCOUNT = (
    "INSERT INTO accounts (code, kind, currency, player_id, allow_negative, balance_shards,"
    " created_at) VALUES (:code, :kind, :currency, :p, :negative, 1, now())"
)
PLAYER_KINDS = ("player_cash", "player_bonus", "player_held")


async def test_a_player_has_one_account_of_each_kind(db: Db) -> None:
    """A second account of a kind the player has is refused, in any currency: the wallet
    finds a player's accounts by kind. A first one is not, nor several house accounts of one
    kind."""
    player_id = await new_player(db)
    for kind in PLAYER_KINDS:
        for currency in ("EUR", "USD"):
            async with refusal(db, ONE_OF_A_KIND):
                await db.run(
                    ACCOUNT,
                    code=f"player:{player_id}:{kind}:{currency}",
                    kind=kind,
                    currency=currency,
                    p=player_id,
                    negative=False,
                )
    # A player written by hand has no account yet: the first of each kind opens, the next not.
    bare = uuid.uuid4()
    await db.run(
        "INSERT INTO players (id, currency, jurisdiction, created_at)"
        " VALUES (:id, 'EUR', 'MT', now())",
        id=bare,
    )
    for kind in PLAYER_KINDS:
        account = {"kind": kind, "currency": "EUR", "p": bare, "negative": False}
        assert await db.run(ACCOUNT, code=f"player:{bare}:{kind}", **account) == 1
        async with refusal(db, ONE_OF_A_KIND):
            await db.run(ACCOUNT, code=f"player:{bare}:{kind}:2", **account)
    found = "SELECT count(*) FROM accounts WHERE player_id = :p"
    assert await db.scalar(found, p=bare) == len(PLAYER_KINDS)
    # The rule is the players': the house may have several accounts of one kind.
    for n in (1, 2):
        house = {"kind": "manual_adjustment", "currency": "EUR", "p": None, "negative": True}
        assert await db.run(ACCOUNT, code=f"house:{bare}:{n}", **house) == 1


@pytest.mark.commits
def test_the_migration_opens_a_held_account_for_every_existing_player(
    db_urls: DatabaseUrls,
) -> None:
    """Migration 0009 on a database of its own, with players from before it: each gets one
    held account in their currency, with its balance row."""
    owner = db_urls.owner.set(database=f"backfill_{uuid.uuid4().hex[:8]}")
    ensure_database(owner)
    engine = create_engine_sync(owner)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    existing = {uuid.uuid4(): "EUR", uuid.uuid4(): "USD", uuid.uuid4(): "SEK"}
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0008")
            for player_id, currency in existing.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO players (id, currency, jurisdiction, created_at)"
                        " VALUES (:id, :currency, 'MT', now())"
                    ),
                    {"id": player_id, "currency": currency},
                )
            command.upgrade(cfg, "0009")
            found = {
                row.player_id: (row.code, row.currency, row.allow_negative, row.balances)
                for row in conn.execute(
                    sa.text(
                        "SELECT a.player_id, a.code, a.currency, a.allow_negative,"
                        " (SELECT array_agg(b.balance) FROM balances b"
                        " WHERE b.account_id = a.id) AS balances"
                        " FROM accounts a WHERE a.kind = 'player_held'"
                    )
                )
            }
            count = conn.scalar(sa.text("SELECT count(*) FROM accounts WHERE kind = 'player_held'"))
    finally:
        engine.dispose()
        maintenance = create_engine_sync(owner.set(database="postgres"), autocommit=True)
        with maintenance.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{owner.database}" WITH (FORCE)'))
        maintenance.dispose()
    assert count == len(existing)
    assert found == {
        player_id: (f"player:{player_id}:held", currency, False, [0])
        for player_id, currency in existing.items()
    }
