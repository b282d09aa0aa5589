"""Manual adjustments: until payments exist, the way funds enter and leave a wallet."""

import uuid
from dataclasses import dataclass
from typing import Literal

from core import journal, ledger, players
from core.errors import Conflict, InvalidRequest
from core.journal import EventContext
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
) -> Adjusted:
    if not reason.strip() or not operator.strip():
        raise InvalidRequest("reason_required", "an adjustment needs an operator and a reason")
    wallet = await players.wallet(uow, player_id, lock=True)
    if amount.currency != wallet.currency:
        raise InvalidRequest(
            "currency_mismatch",
            f"the wallet holds {wallet.currency}",
            currency=amount.currency,
            wallet_currency=wallet.currency,
        )
    account = wallet.cash if source == "cash" else wallet.bonus
    held = wallet.cash_balance if source == "cash" else wallet.bonus_balance
    if direction == "debit" and held < amount.minor:
        raise insufficient_funds(wallet, amount)
    house = await ledger.house_account(
        uow,
        kind="manual_adjustment" if source == "cash" else "bonus_liability",
        currency=wallet.currency,
    )
    signed = amount.minor if direction == "credit" else -amount.minor
    txn_id = await ledger.post(
        uow,
        kind="adjustment",
        legs=[ledger.Leg(account, signed), ledger.Leg(house, -signed)],
        player_id=player_id,
        operator=operator,
        reason=reason,
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
        },
    )
    return Adjusted(txn_id, await players.wallet(uow, player_id))
