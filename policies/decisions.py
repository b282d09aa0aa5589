"""Decisions as records: taken, stored with the facts and the ruleset that decided, replayed.

A record holds only facts (flags and amounts in minor units, never personal data), the ruleset
version and its content hash, the rules that matched, the effect and the reason code. Replaying
it re-evaluates the same facts under the same files (checked against the hash), so it gives the
same decision also after a newer version was activated; `what_if` re-evaluates past decisions
under another version and lists those that would change.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from core import journal, sql
from core.errors import NotFound
from core.journal import EventContext
from core.money import Money
from core.uow import UnitOfWork
from policies import registry, ruleset
from policies.engine import Decision, Engine, InvalidFacts, UnknownAction

Facts = Mapping[str, bool | int | str]


@dataclass(frozen=True)
class Recorded:
    """A decision with its id and the facts it was taken on: stored by `store`."""

    id: uuid.UUID
    decision: Decision
    player_id: uuid.UUID | None
    facts: Facts
    decided_at: datetime
    # What the movement moves, in the wallet's currency: PostgreSQL holds the ledger
    # transaction that names this decision to it (migration 0010).
    amount: Money | None = None


def _declared(engine: Engine, facts: Facts) -> Facts:
    return {name: value for name, value in facts.items() if name in engine.ruleset.facts}


def evaluate(
    engine: Engine,
    *,
    action: str,
    facts: Facts,
    player_id: uuid.UUID | None,
    at: datetime,
    amount: Money | None = None,
) -> Recorded:
    """Decide with `engine` on the facts it declares, not yet stored. The record keeps every
    fact it was given, so another version (declaring others) can be tried on it later."""
    return Recorded(
        uuid.uuid4(),
        engine.decide(action, _declared(engine, facts)),
        player_id,
        dict(facts),
        at,
        amount,
    )


async def store(uow: UnitOfWork, recorded: Recorded, ctx: EventContext) -> None:
    """Store the decision and journal it (without its facts: they are in the record), in one
    statement: a gated bet pays one round trip for its decision, not two."""
    decision = recorded.decision
    event = journal.envelope(
        event="policy.decided",
        ts=uow.now,
        ctx=ctx,
        player_id=recorded.player_id,
        amount=recorded.amount,
        data={
            "decision_id": str(recorded.id),
            "action": decision.action,
            "effect": decision.effect,
            "reason_code": decision.reason_code,
            "rule_ids": list(decision.rule_ids),
            "policy_ver": decision.version,
        },
    )
    await sql.run(
        uow,
        "WITH decided AS (INSERT INTO policy_decisions (id, action, player_id, facts, version,"
        " content_hash, rule_ids, effect, reason_code, reason, decided_at, amount_minor,"
        " amount_currency) VALUES (%(id)s, %(action)s, %(player)s, %(facts)s, %(version)s,"
        " %(hash)s, %(rules)s, %(effect)s, %(reason)s, %(words)s, %(at)s, %(minor)s,"
        " %(currency)s))"
        " INSERT INTO journal_events (event, ts, player_id, envelope)"
        " VALUES ('policy.decided', %(now)s, %(player)s, %(event)s)",
        {
            "id": recorded.id,
            "action": decision.action,
            "player": recorded.player_id,
            "facts": Jsonb(dict(recorded.facts)),
            "version": decision.version,
            "hash": decision.ruleset_hash,
            "rules": list(decision.rule_ids),
            "effect": decision.effect,
            "reason": decision.reason_code,
            "words": decision.reason,
            "at": recorded.decided_at,
            "minor": recorded.amount.minor if recorded.amount else None,
            "currency": recorded.amount.currency if recorded.amount else None,
            "now": uow.now,
            "event": Jsonb(event),
        },
    )


async def decide(
    uow: UnitOfWork,
    *,
    action: str,
    jurisdiction: str,
    facts: Facts,
    player_id: uuid.UUID | None,
    ctx: EventContext,
    root: Path = ruleset.RULESETS,
) -> Recorded:
    """Ask the active ruleset of the jurisdiction, and store and journal the answer."""
    activation = await registry.active(uow, jurisdiction)
    engine = registry.engine_for(activation.version, activation.content_hash, root=root)
    recorded = evaluate(engine, action=action, facts=facts, player_id=player_id, at=uow.now)
    await store(uow, recorded, ctx)
    return recorded


@dataclass(frozen=True)
class Replayed:
    id: uuid.UUID
    stored_effect: str
    stored_reason: str
    stored_rules: tuple[str, ...]
    now: Decision

    @property
    def same(self) -> bool:
        return (self.stored_effect, self.stored_reason, self.stored_rules) == (
            self.now.effect,
            self.now.reason_code,
            self.now.rule_ids,
        )


_STORED = (
    "SELECT id, action, facts, version, content_hash, rule_ids, effect, reason_code"
    " FROM policy_decisions"
)


async def replay(
    uow: UnitOfWork, decision_id: uuid.UUID, *, root: Path = ruleset.RULESETS
) -> Replayed:
    row = await sql.one(uow, _STORED + " WHERE id = %(id)s", {"id": decision_id})
    if row is None:
        raise NotFound("unknown_decision", "no such decision", decision_id=str(decision_id))
    engine = registry.engine_for(row["version"], row["content_hash"], root=root)
    return _replayed(row, engine.decide(row["action"], _declared(engine, row["facts"])))


def _replayed(row: dict[str, Any], now: Decision) -> Replayed:
    return Replayed(row["id"], row["effect"], row["reason_code"], tuple(row["rule_ids"]), now)


@dataclass(frozen=True)
class WhatIf:
    version: str
    tried: int
    changed: list[Replayed]
    # Decisions the version cannot take on what was recorded: (id, why), e.g. a fact it needs
    # that did not exist when the decision was taken, or an action it has no rule for.
    undecidable: list[tuple[uuid.UUID, str]]


async def what_if(
    uow: UnitOfWork, *, version: str, since: datetime, root: Path = ruleset.RULESETS
) -> WhatIf:
    """Past decisions (since `since`) that `version` would have decided otherwise."""
    engine = registry.engine_for(version, ruleset.content_hash(root / version), root=root)
    rows = await sql.all_rows(
        uow, _STORED + " WHERE decided_at >= %(since)s ORDER BY decided_at", {"since": since}
    )
    changed, undecidable = [], []
    for row in rows:
        try:
            now = engine.decide(row["action"], _declared(engine, row["facts"]))
        except (InvalidFacts, UnknownAction) as error:
            undecidable.append((row["id"], str(error)))
            continue
        if (row["effect"], row["reason_code"]) != (now.effect, now.reason_code):
            changed.append(_replayed(row, now))
    return WhatIf(version, len(rows), changed, undecidable)
