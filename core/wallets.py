"""Manual adjustments: until payments exist, the way funds enter and leave a wallet."""

import uuid
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from core import journal, ledger, players
from core.errors import Conflict, InvalidRequest, NotFound
from core.guard import Action, Guard, Movement
from core.journal import EventContext
from core.models import LedgerTransaction, Posting
from core.money import Money
from core.uow import UnitOfWork

Source = Literal["cash", "bonus"]
Direction = Literal["credit", "debit"]


@dataclass(frozen=True, slots=True)
class Adjusted:
    ledger_transaction_id: int
    wallet: players.Wallet


def insufficient_funds(wallet: players.Wallet, needed: Money) -> Conflict:
    return Conflict(
        "insufficient_funds",
        "the wallet does not hold enough funds",
        needed=needed.decimal_string,
        available=wallet.total.decimal_string,
        currency=wallet.currency,
    )


async def adjust(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    amount: Money,
    source: Source,
    direction: Direction,
    operator: str,
    reason: str,
    ctx: EventContext,
    guard: Guard,
) -> Adjusted:
    if not reason.strip() or not operator.strip():
        raise InvalidRequest("reason_required", "an adjustment needs an operator and a reason")
    wallet = await players.wallet(uow, player_id, lock=True)
    wallet.check_currency(amount)
    account = wallet.cash if source == "cash" else wallet.bonus
    held = wallet.cash_balance if source == "cash" else wallet.bonus_balance
    if direction == "debit" and held < amount.minor:
        raise insufficient_funds(wallet, amount)
    house = await ledger.house_account(
        uow,
        kind="manual_adjustment" if source == "cash" else "bonus_liability",
        currency=wallet.currency,
    )
    action: Action = "adjustment.credit" if direction == "credit" else "adjustment.debit"
    decision_id = await guard(uow, Movement(action, player_id, amount), ctx)
    signed = amount.minor if direction == "credit" else -amount.minor
    txn_id = await ledger.post(
        uow,
        kind="adjustment",
        legs=[ledger.Leg(account, signed), ledger.Leg(house, -signed)],
        ctx=ctx,
        player_id=player_id,
        operator=operator,
        reason=reason,
        decision_id=decision_id,
    )
    await journal.record(
        uow,
        "wallet.adjusted",
        ctx=ctx,
        player_id=player_id,
        amount=amount,
        data={
            "direction": direction,
            "source": source,
            "operator": operator,
            "reason": reason,
            "ledger_transaction_id": txn_id,
            "decision_id": str(decision_id),
        },
    )
    return Adjusted(txn_id, await players.wallet(uow, player_id))


async def reverse_adjustment(
    uow: UnitOfWork,
    *,
    transaction_id: int,
    operator: str,
    reason: str,
    ctx: EventContext,
    guard: Guard,
) -> Adjusted:
    """Correct a manual adjustment by a new transaction that mirrors it, linked to it."""
    if not reason.strip() or not operator.strip():
        raise InvalidRequest("reason_required", "a reversal needs an operator and a reason")
    original = await uow.session.get(LedgerTransaction, transaction_id)
    if original is None or original.kind != "adjustment" or original.player_id is None:
        raise NotFound(
            "unknown_adjustment", "no manual adjustment with this id", transaction_id=transaction_id
        )
    wallet = await players.wallet(uow, original.player_id, lock=True)
    if await uow.session.scalar(
        sa.select(LedgerTransaction.id).where(LedgerTransaction.reverses_id == transaction_id)
    ):
        raise Conflict("already_reversed", "this adjustment was already reversed")
    postings = (
        await uow.session.execute(
            sa.select(Posting.account_id, Posting.amount).where(
                Posting.transaction_id == transaction_id
            )
        )
    ).all()
    refs = {ref.id: ref for ref in (wallet.cash, wallet.bonus)}
    player_leg = next(p for p in postings if p.account_id in refs)
    held = wallet.cash_balance if player_leg.account_id == wallet.cash.id else wallet.bonus_balance
    if held < player_leg.amount:
        raise insufficient_funds(wallet, Money(player_leg.amount, wallet.currency))
    undo = Movement(
        "adjustment.debit" if player_leg.amount > 0 else "adjustment.credit",
        wallet.player_id,
        Money(abs(player_leg.amount), wallet.currency),
    )
    decision_id = await guard(uow, undo, ctx)
    house = [p for p in postings if p.account_id not in refs]
    legs = [ledger.Leg(refs[player_leg.account_id], -player_leg.amount)] + [
        ledger.Leg(await ledger.account_by_id(uow, p.account_id), -p.amount) for p in house
    ]
    txn_id = await ledger.post(
        uow,
        kind="adjustment",
        legs=legs,
        ctx=ctx,
        player_id=wallet.player_id,
        operator=operator,
        reason=reason,
        reverses_id=transaction_id,
        decision_id=decision_id,
    )
    await journal.record(
        uow,
        "wallet.adjustment_reversed",
        ctx=ctx,
        player_id=wallet.player_id,
        amount=Money(abs(player_leg.amount), wallet.currency),
        data={
            "reverses": transaction_id,
            "operator": operator,
            "reason": reason,
            "ledger_transaction_id": txn_id,
            "decision_id": str(decision_id),
        },
    )
    return Adjusted(txn_id, await players.wallet(uow, wallet.player_id))
