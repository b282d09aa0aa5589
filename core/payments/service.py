"""Payments in the database: open, bind to a provider, move along the lifecycle, post the money.

Every function runs inside the caller's unit of work and commits nothing. Provider calls (HTTP)
never happen here: the cashier (compliance/cashier.py) calls providers between units of work and
records what came back through these functions.

Money, per lifecycle.MoneyEffect, through the player's accounts and the provider's clearing
account `house:psp_clearing:<provider>:<currency>`:

    deposit confirmed       clearing -> cash     under the decision that allowed the deposit
    withdrawal requested    cash -> held         under the decision that allowed the withdrawal
    withdrawal rejected or failed   held -> cash     under a new withdrawal.release decision
    withdrawal confirmed    held -> clearing     under a new withdrawal.pay_out decision

A deposit is decided when it is initiated, not when the provider confirms it: by then the
provider has taken the player's money, and refusing to credit it would only strand it.

Order of locks: the player's row, then the payment's row (as every money movement of the
player), so a withdrawal racing a bet for the same cash is decided on the balance one of them
left, never both on the same.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core import journal, ledger, players, sql
from core.errors import Conflict, InvalidRequest, NotFound
from core.guard import Action, Guard, Movement
from core.journal import EventContext
from core.money import Money
from core.payments import lifecycle
from core.payments.lifecycle import Event, IllegalTransition, Kind, MoneyEffect
from core.payments.providers import Method
from core.uow import UnitOfWork
from core.wallets import insufficient_funds

Cause = Literal["request", "provider", "webhook", "officer", "timer", "kyt"]
METHODS: tuple[Method, ...] = ("card", "bank_transfer", "crypto")


@dataclass(frozen=True, slots=True)
class Payment:
    id: uuid.UUID
    kind: Kind
    player_id: uuid.UUID
    amount: Money
    method: Method
    country: str
    destination: str | None
    state: str
    routes: tuple[str, ...]
    provider: str | None
    provider_ref: str | None
    redirect_url: str | None
    decision_id: uuid.UUID
    needs_review: bool
    created_at: datetime
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return lifecycle.is_terminal(self.kind, self.state)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Applied:
    """What an event did: moved the payment (with the ledger transaction, if money moved) or
    nothing, because it was old news (`ignored` is "duplicate" or "stale")."""

    payment: Payment
    moved: bool
    ignored: str | None = None
    ledger_transaction_id: int | None = None


_COLUMNS = (
    "id, kind, player_id, amount, currency, method, country, destination, state, routes,"
    " provider, provider_ref, redirect_url, decision_id, needs_review, created_at, updated_at"
)


def _payment(row: dict[str, Any]) -> Payment:
    return Payment(
        id=row["id"],
        kind=row["kind"],
        player_id=row["player_id"],
        amount=Money(row["amount"], row["currency"]),
        method=row["method"],
        country=row["country"],
        destination=row["destination"],
        state=row["state"],
        routes=tuple(row["routes"]),
        provider=row["provider"],
        provider_ref=row["provider_ref"],
        redirect_url=row["redirect_url"],
        decision_id=row["decision_id"],
        needs_review=row["needs_review"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get(uow: UnitOfWork, payment_id: uuid.UUID, *, lock: bool = False) -> Payment:
    """The payment; with `lock`, the player's row and then the payment's row are locked."""
    if lock:
        owner = await sql.scalar(
            uow, "SELECT player_id FROM payments WHERE id = %(id)s", {"id": payment_id}
        )
        if owner is not None:
            await players.lock_player(uow, owner)
    row = await sql.one(
        uow,
        f"SELECT {_COLUMNS} FROM payments WHERE id = %(id)s" + (" FOR UPDATE" if lock else ""),  # noqa: S608
        {"id": payment_id},
    )
    if row is None:
        raise NotFound("unknown_payment", "no such payment", payment_id=str(payment_id))
    return _payment(row)


async def find(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID | None = None,
    state: str | None = None,
    needs_review: bool | None = None,
    limit: int = 50,
) -> list[Payment]:
    """Payments matching every filter given, newest first (an officer's queue: withdrawals
    `requested` with `needs_review`, oldest waiting last)."""
    rows = await sql.all_rows(
        uow,
        f"SELECT {_COLUMNS} FROM payments"  # noqa: S608 - constant columns
        " WHERE (%(player)s::uuid IS NULL OR player_id = %(player)s)"
        " AND (%(state)s::text IS NULL OR state = %(state)s)"
        " AND (%(review)s::boolean IS NULL OR needs_review = %(review)s)"
        " ORDER BY created_at DESC, id LIMIT %(limit)s",
        {"player": player_id, "state": state, "review": needs_review, "limit": limit},
    )
    return [_payment(row) for row in rows]


async def review_queue(uow: UnitOfWork, *, limit: int = 100) -> list[Payment]:
    """Withdrawals waiting for an officer, the longest waiting first (a partial index holds
    exactly these, migration 0013)."""
    rows = await sql.all_rows(
        uow,
        f"SELECT {_COLUMNS} FROM payments"  # noqa: S608 - constant columns
        " WHERE state = 'requested' AND needs_review ORDER BY created_at, id LIMIT %(limit)s",
        {"limit": limit},
    )
    return [_payment(row) for row in rows]


def _check_request(wallet: players.Wallet, amount: Money, method: str, routes: list[str]) -> None:
    wallet.check_currency(amount)
    if method not in METHODS:
        raise InvalidRequest("unknown_method", f"method is one of {', '.join(METHODS)}")
    if not routes:
        raise InvalidRequest("no_payment_route", "no provider serves this payment")


async def open_deposit(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    amount: Money,
    method: Method,
    routes: list[str],
    ctx: EventContext,
    guard: Guard,
) -> Payment:
    """Open a deposit in `initiated`, decided now (limits, exclusions, due diligence) with the
    amount counting towards the deposit limits from this moment."""
    wallet = await players.wallet(uow, player_id, lock=True)
    _check_request(wallet, amount, method, routes)
    decision_id = await guard(uow, Movement("deposit", player_id, amount), ctx)
    payment = await _insert(
        uow,
        kind="deposit",
        payment_id=uuid.uuid4(),
        player_id=player_id,
        amount=amount,
        method=method,
        destination=None,
        routes=routes,
        decision_id=decision_id,
        needs_review=False,
    )
    await _opened(uow, payment, ledger_transaction_id=None, ctx=ctx)
    return payment


async def open_withdrawal(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    amount: Money,
    method: Method,
    destination: str | None,
    routes: list[str],
    needs_review: bool,
    ctx: EventContext,
    guard: Guard,
) -> Payment:
    """Open a withdrawal in `requested` and hold its amount from the player's cash (bonus money
    is not withdrawable). Unless it `needs_review` by an officer, it is approved at once."""
    wallet = await players.wallet(uow, player_id, lock=True)
    _check_request(wallet, amount, method, routes)
    if not destination:  # every provider needs to know where the money goes
        raise InvalidRequest(
            "destination_required",
            "a withdrawal needs a destination: a crypto address, or the payout account's token",
        )
    if wallet.cash_balance < amount.minor:
        raise insufficient_funds(wallet, amount)
    movement = Movement("withdrawal", player_id, amount, destination=destination)
    decision_id = await guard(uow, movement, ctx)
    payment = await _insert(
        uow,
        kind="withdrawal",
        payment_id=uuid.uuid4(),
        player_id=player_id,
        amount=amount,
        method=method,
        destination=destination,
        routes=routes,
        decision_id=decision_id,
        needs_review=needs_review,
    )
    kind, legs = await _legs(uow, payment, MoneyEffect.HOLD, wallet)
    txn = await ledger.post(
        uow,
        kind=kind,
        legs=legs,
        ctx=ctx,
        player_id=player_id,
        reference=f"payment:{payment.id}",
        decision_id=decision_id,
    )
    await _opened(uow, payment, ledger_transaction_id=txn, ctx=ctx)
    if not needs_review:  # the player is locked and the payment is this transaction's own
        applied = await move(
            uow, payment, "approved", cause="request", actor="auto", ctx=ctx, guard=guard
        )
        payment = applied.payment
    return payment


async def _insert(
    uow: UnitOfWork,
    *,
    kind: Kind,
    payment_id: uuid.UUID,
    player_id: uuid.UUID,
    amount: Money,
    method: Method,
    destination: str | None,
    routes: list[str],
    decision_id: uuid.UUID,
    needs_review: bool,
) -> Payment:
    row = await sql.one(
        uow,
        "INSERT INTO payments (id, kind, player_id, amount, currency, method, country,"  # noqa: S608 - constant columns
        " destination, state, routes, decision_id, needs_review, created_at, updated_at)"
        " SELECT %(id)s, %(kind)s, p.id, %(amount)s, %(currency)s, %(method)s, p.jurisdiction,"
        " %(destination)s, %(state)s, %(routes)s, %(decision)s, %(review)s, %(now)s, %(now)s"
        f" FROM players p WHERE p.id = %(player)s RETURNING {_COLUMNS}",
        {
            "id": payment_id,
            "kind": kind,
            "player": player_id,
            "amount": amount.minor,
            "currency": amount.currency,
            "method": method,
            "destination": destination,
            "state": lifecycle.begin(kind).to_state,
            "routes": routes,
            "decision": decision_id,
            "review": needs_review,
            "now": uow.now,
        },
    )
    assert row is not None  # noqa: S101 - the wallet lock found the player
    return _payment(row)


async def _opened(
    uow: UnitOfWork, payment: Payment, *, ledger_transaction_id: int | None, ctx: EventContext
) -> None:
    await _transition(
        uow,
        payment,
        None,
        payment.state,
        cause="request",
        actor=ctx.actor,
        webhook_id=None,
        ledger_transaction_id=ledger_transaction_id,
    )
    await journal.record(
        uow,
        "payment.opened",
        ctx=ctx,
        player_id=payment.player_id,
        amount=payment.amount,
        data={
            "payment_id": str(payment.id),
            "kind": payment.kind,
            "state": payment.state,
            "method": payment.method,
            "routes": list(payment.routes),
            "needs_review": payment.needs_review,
            "decision_id": str(payment.decision_id),
            "ledger_transaction_id": ledger_transaction_id,
        },
    )


async def record_attempt(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    *,
    provider: str,
    outcome: str,
    status: int | None,
    ctx: EventContext,
) -> None:
    """One call to a provider and what came of it (the failover's trail), journaled."""
    player_id = await sql.scalar(
        uow,
        "INSERT INTO payment_attempts (payment_id, provider, outcome, status, at)"
        " SELECT id, %(provider)s, %(outcome)s, %(status)s, %(now)s FROM payments"
        " WHERE id = %(id)s RETURNING (SELECT player_id FROM payments WHERE id = %(id)s)",
        {
            "id": payment_id,
            "provider": provider,
            "outcome": outcome,
            "status": status,
            "now": uow.now,
        },
    )
    await journal.record(
        uow,
        "payment.attempt",
        ctx=ctx,
        player_id=player_id,
        data={
            "payment_id": str(payment_id),
            "provider": provider,
            "outcome": outcome,
            "status": status,
        },
    )


async def attempts(uow: UnitOfWork, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    return await sql.all_rows(
        uow,
        "SELECT provider, outcome, status, at FROM payment_attempts"
        " WHERE payment_id = %(id)s ORDER BY id",
        {"id": payment_id},
    )


async def bind(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    *,
    provider: str,
    provider_ref: str,
    redirect_url: str | None,
    ctx: EventContext,
    locked: Payment | None = None,
) -> Payment:
    """The provider that took the payment, once: a payment never moves to a second provider.
    `locked`: the payment as this unit of work already read it with `get(..., lock=True)`."""
    payment = locked or await get(uow, payment_id, lock=True)
    if payment.provider is not None:
        if (payment.provider, payment.provider_ref) != (provider, provider_ref):
            raise Conflict(
                "payment_bound_elsewhere",
                "the payment already belongs to another provider",
                payment_id=str(payment_id),
                provider=payment.provider,
            )
        return payment
    if provider not in payment.routes:
        raise Conflict(
            "provider_not_routed", "the provider is not on the payment's route", provider=provider
        )
    row = await sql.one(
        uow,
        "UPDATE payments SET provider = %(provider)s, provider_ref = %(ref)s,"  # noqa: S608 - constant columns
        " redirect_url = %(url)s, updated_at = %(now)s WHERE id = %(id)s"
        f" RETURNING {_COLUMNS}",
        {
            "id": payment_id,
            "provider": provider,
            "ref": provider_ref,
            "url": redirect_url,
            "now": uow.now,
        },
    )
    assert row is not None  # noqa: S101 - locked above
    await journal.record(
        uow,
        "payment.bound",
        ctx=ctx,
        player_id=payment.player_id,
        data={"payment_id": str(payment_id), "provider": provider, "provider_ref": provider_ref},
    )
    return _payment(row)


async def apply(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    event: Event,
    *,
    cause: Cause,
    actor: str,
    ctx: EventContext,
    guard: Guard,
    webhook_id: str | None = None,
) -> Applied:
    """Move the payment by `event` and post what the step moves; old news changes nothing and
    is journaled; an illegal event raises `IllegalTransition` (transient when premature)."""
    payment = await get(uow, payment_id, lock=True)
    return await move(
        uow,
        payment,
        event,
        cause=cause,
        actor=actor,
        ctx=ctx,
        guard=guard,
        webhook_id=webhook_id,
    )


async def move(
    uow: UnitOfWork,
    payment: Payment,
    event: Event,
    *,
    cause: Cause,
    actor: str,
    ctx: EventContext,
    guard: Guard,
    webhook_id: str | None = None,
) -> Applied:
    """`apply` to a payment this unit of work has already read with `get(..., lock=True)`."""
    outcome = lifecycle.step(payment.kind, payment.state, event)  # type: ignore[arg-type]
    if isinstance(outcome, lifecycle.Ignored):
        await journal.record(
            uow,
            "payment.event_ignored",
            ctx=ctx,
            player_id=payment.player_id,
            data={
                "payment_id": str(payment.id),
                "state": payment.state,
                "event": event,
                "reason": outcome.reason,
                "cause": cause,
                "webhook_id": webhook_id,
            },
        )
        return Applied(payment, moved=False, ignored=outcome.reason)
    txn: int | None = None
    decision_id: uuid.UUID | None = None
    if outcome.money_effect is not MoneyEffect.NONE:
        wallet = await players.wallet(uow, payment.player_id)
        if outcome.money_effect is MoneyEffect.CREDIT_PLAYER:
            txn, decision_id = await _credit_deposit(uow, payment, wallet, ctx)
        else:
            txn, decision_id = await _move_held(
                uow, payment, outcome.money_effect, wallet, ctx, guard=guard
            )
    await _transition(
        uow,
        payment,
        payment.state,
        outcome.to_state,
        cause=cause,
        actor=actor,
        webhook_id=webhook_id,
        ledger_transaction_id=txn,
    )
    row = await sql.one(
        uow,
        "UPDATE payments SET state = %(state)s, updated_at = %(now)s WHERE id = %(id)s"  # noqa: S608 - constant columns
        f" RETURNING {_COLUMNS}",
        {"id": payment.id, "state": outcome.to_state, "now": uow.now},
    )
    assert row is not None  # noqa: S101 - locked above
    moved = _payment(row)
    await journal.record(
        uow,
        "payment.moved",
        ctx=ctx,
        player_id=payment.player_id,
        amount=payment.amount,
        data={
            "payment_id": str(payment.id),
            "kind": payment.kind,
            "from": payment.state,
            "to": moved.state,
            "cause": cause,
            "provider": moved.provider,
            "webhook_id": webhook_id,
            "money_effect": outcome.money_effect.value,
            "ledger_transaction_id": txn,
            "decision_id": str(decision_id) if decision_id else None,
        },
    )
    return Applied(moved, moved=True, ledger_transaction_id=txn)


async def _credit_deposit(
    uow: UnitOfWork, payment: Payment, wallet: players.Wallet, ctx: EventContext
) -> tuple[int, uuid.UUID]:
    """Credit a confirmed deposit under the decision taken when it was initiated: the provider
    has the player's money by now, so refusing it here would only strand it. PostgreSQL still
    requires that decision to have allowed a deposit of this player and nothing else yet."""
    kind, legs = await _legs(uow, payment, MoneyEffect.CREDIT_PLAYER, wallet)
    txn = await ledger.post(
        uow,
        kind=kind,
        legs=legs,
        ctx=ctx,
        player_id=payment.player_id,
        reference=f"payment:{payment.id}",
        decision_id=payment.decision_id,
    )
    return txn, payment.decision_id


async def _move_held(
    uow: UnitOfWork,
    payment: Payment,
    effect: MoneyEffect,
    wallet: players.Wallet,
    ctx: EventContext,
    *,
    guard: Guard,
) -> tuple[int, uuid.UUID]:
    """A withdrawal's hold released to cash, or paid out to the provider: a decision each."""
    action: Action = (
        "withdrawal.release" if effect is MoneyEffect.RELEASE_HOLD else "withdrawal.pay_out"
    )
    kind, legs = await _legs(uow, payment, effect, wallet)
    decision_id = await guard(uow, Movement(action, payment.player_id, payment.amount), ctx)
    txn = await ledger.post(
        uow,
        kind=kind,
        legs=legs,
        ctx=ctx,
        player_id=payment.player_id,
        reference=f"payment:{payment.id}",
        decision_id=decision_id,
    )
    return txn, decision_id


async def _legs(
    uow: UnitOfWork, payment: Payment, effect: MoneyEffect, wallet: players.Wallet
) -> tuple[str, list[ledger.Leg]]:
    """The ledger kind and postings of a money effect (see the module docstring)."""
    minor = payment.amount.minor
    assert wallet.held is not None  # noqa: S101 - every player has a held account (0009)
    if effect is MoneyEffect.HOLD:
        return "withdrawal_hold", [ledger.Leg(wallet.cash, -minor), ledger.Leg(wallet.held, minor)]
    if effect is MoneyEffect.RELEASE_HOLD:
        return "withdrawal_release", [
            ledger.Leg(wallet.held, -minor),
            ledger.Leg(wallet.cash, minor),
        ]
    if payment.provider is None:
        raise Conflict("payment_unbound", "no provider has taken this payment")
    clearing = await ledger.house_account(
        uow, kind="psp_clearing", currency=payment.amount.currency, provider_code=payment.provider
    )
    if effect is MoneyEffect.CREDIT_PLAYER:
        return "deposit", [ledger.Leg(wallet.cash, minor), ledger.Leg(clearing, -minor)]
    return "withdrawal_payout", [ledger.Leg(wallet.held, -minor), ledger.Leg(clearing, minor)]


async def _transition(
    uow: UnitOfWork,
    payment: Payment,
    from_state: str | None,
    to_state: str,
    *,
    cause: Cause,
    actor: str,
    webhook_id: str | None,
    ledger_transaction_id: int | None,
) -> None:
    await sql.run(
        uow,
        "INSERT INTO payment_transitions (payment_id, kind, from_state, to_state, cause, actor,"
        " webhook_id, ledger_transaction_id, at) VALUES (%(id)s, %(kind)s, %(from)s, %(to)s,"
        " %(cause)s, %(actor)s, %(webhook)s, %(txn)s, %(now)s)",
        {
            "id": payment.id,
            "kind": payment.kind,
            "from": from_state,
            "to": to_state,
            "cause": cause,
            "actor": actor,
            "webhook": webhook_id,
            "txn": ledger_transaction_id,
            "now": uow.now,
        },
    )


async def transitions(uow: UnitOfWork, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    return await sql.all_rows(
        uow,
        "SELECT from_state, to_state, cause, actor, webhook_id, ledger_transaction_id, at"
        " FROM payment_transitions WHERE payment_id = %(id)s ORDER BY id",
        {"id": payment_id},
    )


__all__ = ["Applied", "IllegalTransition", "Payment"]
