"""What the console shows of a player on one page: money, play, payments, decisions, limits,
exclusions, KYC, AML and links. Reads only; every read is bounded (newest first, a page);
the DSAR export (dsar.py) reads all bets and payments through the same functions."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compliance import kyc, rg
from core import players, sql
from core.money import format_minor
from core.uow import UnitOfWork

RECENT = 20


@dataclass(frozen=True)
class PlayerPage:
    player_id: uuid.UUID
    currency: str
    jurisdiction: str
    registered_at: datetime
    cash: str
    bonus: str
    held: str
    standing: kyc.Standing
    limits: list[dict[str, Any]]
    exclusions: list[rg.Exclusion]
    bets: list[dict[str, Any]]
    payments: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


async def page(uow: UnitOfWork, player_id: uuid.UUID) -> PlayerPage:
    wallet = await players.wallet(uow, player_id)
    row = await sql.one(
        uow,
        "SELECT jurisdiction, created_at FROM players WHERE id = %(p)s",
        {"p": player_id},
    )
    assert row is not None  # noqa: S101 - the wallet exists, so does the player
    currency = wallet.currency
    limits = await rg.limits(uow, player_id)
    shown_limits = [
        {
            "kind": kind,
            "period": period,
            "in_force": format_minor(limits.in_force[(kind, period)], currency)
            if (kind, period) in limits.in_force
            else "none",
            "pending": _pending(limits.pending.get((kind, period)), currency),
        }
        for kind, period in sorted({*limits.in_force, *limits.pending})
    ]
    return PlayerPage(
        player_id=player_id,
        currency=currency,
        jurisdiction=row["jurisdiction"],
        registered_at=row["created_at"],
        cash=format_minor(wallet.cash_balance, currency),
        bonus=format_minor(wallet.bonus_balance, currency),
        held=format_minor(wallet.held_balance, currency),
        standing=await kyc.standing(uow, player_id),
        limits=shown_limits,
        exclusions=await rg.exclusions_in_force(uow, player_id),
        bets=await bets(uow, player_id, currency),
        payments=await payments(uow, player_id),
        decisions=await sql.all_rows(
            uow,
            "SELECT id, action, effect, reason_code, reason, version, rule_ids, decided_at"
            " FROM policy_decisions WHERE player_id = %(p)s"
            " ORDER BY decided_at DESC, id DESC LIMIT %(n)s",
            {"p": player_id, "n": RECENT},
        ),
    )


def _pending(pending: tuple[int | None, datetime] | None, currency: str) -> str:
    if pending is None:
        return ""
    amount, effective_at = pending
    shown = "no limit" if amount is None else format_minor(amount, currency)
    return f"{shown} from {effective_at:%Y-%m-%d %H:%M} UTC"


async def bets(
    uow: UnitOfWork, player_id: uuid.UUID, currency: str, *, limit: int | None = RECENT
) -> list[dict[str, Any]]:
    """The newest bets first (`limit` None: all of them)."""
    rows = await sql.all_rows(
        uow,
        "SELECT bet_ref, provider_code, status, stake, payout, currency, placed_at FROM bets"
        " WHERE player_id = %(p)s ORDER BY placed_at DESC, id DESC LIMIT %(n)s",
        {"p": player_id, "n": limit},
    )
    for row in rows:
        row["stake"] = format_minor(row["stake"], row["currency"] or currency)
        row["payout"] = "" if row["payout"] is None else format_minor(row["payout"], currency)
    return rows


async def payments(
    uow: UnitOfWork, player_id: uuid.UUID, *, limit: int | None = RECENT
) -> list[dict[str, Any]]:
    """The newest payments first (`limit` None: all of them)."""
    rows = await sql.all_rows(
        uow,
        "SELECT id, kind, state, amount, currency, provider, created_at FROM payments"
        " WHERE player_id = %(p)s ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        {"p": player_id, "n": limit},
    )
    for row in rows:
        row["amount"] = format_minor(row["amount"], row["currency"])
    return rows
