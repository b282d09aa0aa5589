"""Why a player was refused: their recent denied decisions, in the ruleset's own words.

Each reason is read from the very ruleset (version and content hash) that decided, so a later
version cannot reword an old refusal. A responsible-gambling refusal carries the help contacts
of the player's country. The facts a decision saw stay out: they are for officers and
regulators.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from compliance.helplines import Contact, contacts_for
from core import sql
from core.errors import NotFound
from core.uow import UnitOfWork
from policies import registry

MAX_LISTED = 100


@dataclass(frozen=True)
class Denial:
    decision_id: uuid.UUID
    action: str
    reason_code: str
    reason: str
    category: str
    policy_version: str
    decided_at: datetime
    help: tuple[Contact, ...]
    rule_ids: tuple[str, ...] = ()  # the deny rules that matched (none: no rule allowed it)
    content_hash: str = ""  # of the ruleset version that decided


async def recent(uow: UnitOfWork, *, player_id: uuid.UUID, limit: int) -> list[Denial]:
    """The player's `limit` (at most 100) newest denied decisions, newest first."""
    country = await sql.scalar(
        uow, "SELECT jurisdiction FROM players WHERE id = %(p)s", {"p": player_id}
    )
    if country is None:
        raise NotFound("unknown_player", "no such player", player_id=str(player_id))
    rows = await sql.all_rows(
        uow,
        "SELECT id, action, version, content_hash, rule_ids, reason_code, decided_at"
        " FROM policy_decisions WHERE player_id = %(p)s AND effect = 'deny'"
        " ORDER BY decided_at DESC, id LIMIT %(n)s",
        {"p": player_id, "n": min(limit, MAX_LISTED)},
    )
    denials = []
    for row in rows:
        reason = registry.engine_for(row["version"], row["content_hash"]).ruleset.reasons[
            row["reason_code"]
        ]
        category = reason["category"]
        denials.append(
            Denial(
                decision_id=row["id"],
                action=row["action"],
                reason_code=row["reason_code"],
                reason=reason["en"],
                category=category,
                policy_version=row["version"],
                decided_at=row["decided_at"],
                help=contacts_for(country) if category == "responsible_gambling" else (),
                rule_ids=tuple(row["rule_ids"]),
                content_hash=row["content_hash"],
            )
        )
    return denials
