"""Overrides: the remedy of an overturned appeal, honoured by the gate (issue 15, decision 0023).

An override lifts the deny rules that refused one decision — for that player and that action
only, from its grant for a period (`expires_at`) and, when given, at most `max_uses` times. The
gate reads the overrides in force in its one statement of facts (compliance.facts) and hands
the ruleset two facts: `overridden_rules` (the lifted rules' ids, each between spaces) and
`overrides` (which override of which appeal lifts them). Every appealable deny rule of
2026-12-v1 ends with `!(' <its id> ' in r.sub.overridden_rules)`, so pycasbin still decides,
and a rule that may not be appealed cannot be lifted.

An override is *used* by an allowing decision that its rules would otherwise have refused: the
gate asks the engine again with no rule lifted, and each override whose rules that refusal
names is used once (`override_uses`, numbered; PostgreSQL refuses a use past `max_uses`,
outside the period, or by a decision that did not allow its action). The last use ends it
(`uses_spent`); the server's sweep ends those whose period is over (`period_ended`). Each step
is journaled: `override.granted`, `override.used`, `override.expired`. History is never
rewritten: the refused decision keeps its facts (`overridden_rules` was '' then) and replays
to the same refusal.
"""

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core import journal, sql
from core.journal import EventContext
from core.uow import UnitOfWork
from policies.engine import Engine

MAX_DAYS = 90  # the longest period an officer may grant
MAX_USES = 100
ONE_USE_DAYS = 30  # "this may proceed": one use, within 30 days


@dataclass(frozen=True)
class InForce:
    id: uuid.UUID
    appeal_id: uuid.UUID
    rule_ids: tuple[str, ...]
    max_uses: int | None
    uses: int


def in_force(row: Mapping[str, Any]) -> list[InForce]:
    """The overrides in force from the facts' row (compliance.facts reads them)."""
    listed = row.get("overrides") or []
    if isinstance(listed, str):
        listed = json.loads(listed)
    return [
        InForce(uuid.UUID(str(o)), uuid.UUID(str(a)), tuple(rules), limit, int(uses))
        for o, a, rules, limit, uses in listed
    ]


def facts(found: list[InForce]) -> dict[str, str]:
    """`overridden_rules` and `overrides` for the ruleset (decision 0023)."""
    rules = sorted({rule for o in found for rule in o.rule_ids})
    return {
        "overridden_rules": f" {' '.join(rules)} " if rules else "",
        "overrides": "; ".join(
            f"override {o.id} of appeal {o.appeal_id}: {' '.join(o.rule_ids)}" for o in found
        ),
    }


def used_by(
    engine: Engine, action: str, sheet: Mapping[str, bool | int | str], found: list[InForce]
) -> list[InForce]:
    """The overrides an allowing decision on `sheet` used: those lifting a rule that, with
    nothing lifted, would have refused it."""
    if not found or "overridden_rules" not in engine.ruleset.facts:
        return []
    declared = {name: value for name, value in sheet.items() if name in engine.ruleset.facts}
    without = engine.decide(action, declared | {"overridden_rules": ""})
    if without.allowed:
        return []
    lifted = set(without.rule_ids)
    return [o for o in found if lifted & set(o.rule_ids)]


async def record_uses(
    uow: UnitOfWork,
    *,
    used: list[InForce],
    decision_id: uuid.UUID,
    player_id: uuid.UUID,
    ctx: EventContext,
) -> None:
    """Each use, numbered, journaled (`override.used`, naming the decision and the appeal); the
    last of a limited override ends it (`override.expired`, uses spent)."""
    for found in used:
        n = found.uses + 1
        await sql.run(
            uow,
            "INSERT INTO override_uses (override_id, n, decision_id, at)"
            " VALUES (%(o)s, %(n)s, %(d)s, %(now)s)",
            {"o": found.id, "n": n, "d": decision_id, "now": uow.now},
        )
        await journal.record(
            uow,
            "override.used",
            ctx=ctx,
            player_id=player_id,
            data={
                "override_id": str(found.id),
                "appeal_id": str(found.appeal_id),
                "decision_id": str(decision_id),
                "rule_ids": list(found.rule_ids),
                "use": n,
                "max_uses": found.max_uses,
            },
        )
        if found.max_uses is not None and n >= found.max_uses:
            await _expire(
                uow,
                override_id=found.id,
                appeal_id=found.appeal_id,
                player_id=player_id,
                why="uses_spent",
                ctx=ctx,
            )


@dataclass(frozen=True)
class Grant:
    """What an overturn grants: the refusal's rules lifted for `days`, at most `uses` times
    (None: as often as the period allows)."""

    days: int
    uses: int | None


async def grant(
    uow: UnitOfWork,
    *,
    appeal_id: uuid.UUID,
    player_id: uuid.UUID,
    decision_id: uuid.UUID,
    action: str,
    rule_ids: tuple[str, ...],
    remedy: Grant,
    actor: str,
    ctx: EventContext,
) -> uuid.UUID:
    """The override, journaled (`override.granted`). PostgreSQL checks that the appeal is the
    player's overturned appeal of this refusal and that these rules refused it."""
    override_id = uuid.uuid4()
    expires_at = uow.now + timedelta(days=remedy.days)
    await sql.run(
        uow,
        "INSERT INTO overrides (id, player_id, appeal_id, decision_id, action, rule_ids,"
        " max_uses, granted_at, expires_at, granted_by) VALUES (%(id)s, %(p)s, %(a)s, %(d)s,"
        " %(act)s, %(rules)s, %(uses)s, %(now)s, %(until)s, %(by)s)",
        {
            "id": override_id,
            "p": player_id,
            "a": appeal_id,
            "d": decision_id,
            "act": action,
            "rules": list(rule_ids),
            "uses": remedy.uses,
            "now": uow.now,
            "until": expires_at,
            "by": actor,
        },
    )
    await journal.record(
        uow,
        "override.granted",
        ctx=ctx,
        player_id=player_id,
        data={
            "override_id": str(override_id),
            "appeal_id": str(appeal_id),
            "decision_id": str(decision_id),
            "action": action,
            "rule_ids": list(rule_ids),
            "max_uses": remedy.uses,
            "expires_at": journal.rfc3339(expires_at),
            "granted_by": actor,
        },
    )
    return override_id


async def _expire(
    uow: UnitOfWork,
    *,
    override_id: uuid.UUID,
    appeal_id: uuid.UUID,
    player_id: uuid.UUID,
    why: str,
    ctx: EventContext,
) -> None:
    await sql.run(
        uow,
        "INSERT INTO override_expiries (override_id, at, why) VALUES (%(o)s, %(now)s, %(why)s)",
        {"o": override_id, "now": uow.now, "why": why},
    )
    await journal.record(
        uow,
        "override.expired",
        ctx=ctx,
        player_id=player_id,
        data={"override_id": str(override_id), "appeal_id": str(appeal_id), "why": why},
    )


async def expire_due(uow: UnitOfWork, *, ctx: EventContext, limit: int = 500) -> int:
    """End the overrides whose period is over (`override.expired`, period ended): the sweep the
    server runs every minute. Returns how many it ended."""
    rows = await sql.all_rows(
        uow,
        "WITH ended AS (INSERT INTO override_expiries (override_id, at, why)"
        " SELECT o.id, %(now)s, 'period_ended' FROM overrides o WHERE o.expires_at <= %(now)s"
        " AND NOT EXISTS (SELECT 1 FROM override_expiries e WHERE e.override_id = o.id)"
        " ORDER BY o.expires_at, o.id LIMIT %(n)s"
        " ON CONFLICT DO NOTHING RETURNING override_id)"
        " SELECT o.id, o.appeal_id, o.player_id FROM overrides o"
        " JOIN ended ON ended.override_id = o.id ORDER BY o.expires_at, o.id",
        {"now": uow.now, "n": limit},
    )
    for row in rows:  # a concurrent sweep that ended one first ends it, and journals it, alone
        await journal.record(
            uow,
            "override.expired",
            ctx=ctx,
            player_id=row["player_id"],
            data={
                "override_id": str(row["id"]),
                "appeal_id": str(row["appeal_id"]),
                "why": "period_ended",
            },
        )
    return len(rows)


@dataclass(frozen=True)
class Shown:
    """An override as the console and the player's page show it."""

    id: uuid.UUID
    action: str
    rule_ids: tuple[str, ...]
    max_uses: int | None
    uses: int
    granted_at: datetime
    expires_at: datetime
    granted_by: str
    ended: str | None  # period_ended | uses_spent

    def active(self, now: datetime) -> bool:
        return (
            self.ended is None
            and now < self.expires_at
            and (self.max_uses is None or self.uses < self.max_uses)
        )


async def of_appeal(uow: UnitOfWork, appeal_id: uuid.UUID) -> Shown | None:
    row = await sql.one(
        uow,
        "SELECT o.id, o.action, o.rule_ids, o.max_uses, o.granted_at, o.expires_at,"
        " o.granted_by, (SELECT count(*) FROM override_uses s WHERE s.override_id = o.id)"
        " AS uses, (SELECT why FROM override_expiries e WHERE e.override_id = o.id) AS ended"
        " FROM overrides o WHERE o.appeal_id = %(a)s",
        {"a": appeal_id},
    )
    if row is None:
        return None
    return Shown(
        id=row["id"],
        action=row["action"],
        rule_ids=tuple(row["rule_ids"]),
        max_uses=row["max_uses"],
        uses=int(row["uses"]),
        granted_at=row["granted_at"],
        expires_at=row["expires_at"],
        granted_by=row["granted_by"],
        ended=row["ended"],
    )
