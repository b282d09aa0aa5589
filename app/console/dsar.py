"""A data subject access request answered from the console: everything Pitwarden holds about a
player, in one JSON file the data protection officer downloads and sends.

The personal data comes out of the vault under its own rules (the DPO's purpose `dsar`), the
rest from the money core and the gate: the account, balances, every bet and payment, the
gate's decisions about the player's money, KYC levels, limits and exclusions (the console's
own decisions about officers' access are not the player's: an AML case would show in them).
What the law lets us withhold is withheld and said so: AML holds and linked accounts (telling
the subject would tip them off), and what officers wrote about the player (the DPO reviews those
on request).
"""

import uuid
from datetime import datetime
from typing import Any

from app.console import players
from compliance.vault import service as vault
from compliance.vault.keys import KeyProvider
from core import journal, sql
from core.errors import NotFound
from core.journal import EventContext
from core.money import format_minor
from core.uow import UnitOfWork

FORMAT = "pitwarden-dsar-1"
WITHHELD = (
    (
        "AML holds, linked accounts and any suspicion reported: anti-money-laundering law"
        " forbids telling the subject (tipping off)."
    ),
    (
        "What officers wrote about the player (reasons and notes) and officers' identities:"
        " reviewed by the data protection officer before release, on request."
    ),
)


def _money(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_minor(minor, currency)


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return journal.rfc3339(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


async def _personal(
    uow: UnitOfWork, player_id: uuid.UUID, keys: KeyProvider, actor: str, ctx: EventContext
) -> dict[str, Any]:
    try:
        return await vault.export(uow, player_id=player_id, actor=actor, keys=keys, ctx=ctx)
    except NotFound as error:
        if error.code != "no_personal_data":
            raise
        # registered without personal data: nothing in the vault to give
        return {"player_id": str(player_id), "fields": {}, "documents": []}


async def gathered(
    uow: UnitOfWork,
    vault_uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    keys: KeyProvider,
    actor: str,
    ctx: EventContext,
) -> dict[str, Any]:
    """The whole answer (the vault's export is journaled as `vault.exported` by the vault)."""
    shown = await players.page(uow, player_id)
    currency = shown.currency
    answer: dict[str, Any] = {
        "format": FORMAT,
        "player_id": player_id,
        "generated_at": uow.now,
        "account": {
            "jurisdiction": shown.jurisdiction,
            "currency": currency,
            "registered_at": shown.registered_at,
            "balances": {"cash": shown.cash, "bonus": shown.bonus, "held": shown.held},
        },
        "personal_data": await _personal(vault_uow, player_id, keys, actor, ctx),
        "kyc_levels": await sql.all_rows(
            uow,
            "SELECT level, set_at FROM kyc_levels WHERE player_id = %(p)s ORDER BY id",
            {"p": player_id},
        ),
        "limits": [
            {**row, "amount": _money(row["amount"], currency)}
            for row in await sql.all_rows(
                uow,
                "SELECT kind, period, amount, requested_at, effective_at FROM rg_limits"
                " WHERE player_id = %(p)s ORDER BY id",
                {"p": player_id},
            )
        ],
        "exclusions": await sql.all_rows(
            uow,
            "SELECT kind, starts_at, ends_at FROM rg_exclusions WHERE player_id = %(p)s"
            " ORDER BY id",
            {"p": player_id},
        ),
        "bets": await players.bets(uow, player_id, currency, limit=None),
        "payments": await players.payments(uow, player_id, limit=None),
        "decisions": await sql.all_rows(
            uow,
            "SELECT id, action, effect, reason_code, reason, version, decided_at"
            " FROM policy_decisions WHERE player_id = %(p)s AND action NOT LIKE 'console.%%'"
            " ORDER BY decided_at, id",
            {"p": player_id},
        ),
        "withheld": WITHHELD,
    }
    return _plain(answer)  # type: ignore[return-value]
