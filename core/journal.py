"""The journal: every state change appends an event here in the same database transaction.

Envelope fields follow the seed: event, ts (UTC), player_id, session_id, trace_id, geo, device,
money as decimal string + ISO currency, schema_ver, and contract/calc versions where they
apply. Events carry ids and tokens only, never personal data.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from core import sql
from core.money import Money
from core.uow import UnitOfWork

SCHEMA_VER = 1
CALC_VER = "1"


@dataclass(frozen=True)
class EventContext:
    """Who and where an action came from: copied into every event it causes."""

    actor: str
    trace_id: str
    session_id: str | None = None
    geo: str | None = None
    device: str | None = None
    contract_ver: str | None = None


def rfc3339(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(
    *,
    event: str,
    ts: datetime,
    ctx: EventContext,
    player_id: uuid.UUID | None,
    amount: Money | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": event,
        "ts": rfc3339(ts),
        "player_id": str(player_id) if player_id else None,
        "session_id": ctx.session_id,
        "trace_id": ctx.trace_id,
        "geo": ctx.geo,
        "device": ctx.device,
        "actor": ctx.actor,
        "schema_ver": SCHEMA_VER,
        "calc_ver": CALC_VER,
    }
    if ctx.contract_ver:
        body["contract_ver"] = ctx.contract_ver
    if amount is not None:
        body["amount"] = amount.decimal_string
        body["currency"] = amount.currency
    body["data"] = data
    return body


async def record(
    uow: UnitOfWork,
    event: str,
    *,
    ctx: EventContext,
    player_id: uuid.UUID | None = None,
    amount: Money | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await record_many(uow, [(event, player_id, amount, data or {})], ctx=ctx)


# (event name, player, amount, event-specific data)
Event = tuple[str, uuid.UUID | None, Money | None, dict[str, Any]]


async def record_many(
    uow: UnitOfWork,
    events: list[Event],
    *,
    ctx: EventContext,
) -> None:
    """Append several events in one statement (the hot money path writes two or three)."""
    envelopes = [
        envelope(event=event, ts=uow.now, ctx=ctx, player_id=player_id, amount=amount, data=data)
        for event, player_id, amount, data in events
    ]
    await sql.run(
        uow,
        "INSERT INTO journal_events (event, ts, player_id, envelope)"
        " SELECT e->>'event', %(now)s, (e->>'player_id')::uuid, e"
        " FROM jsonb_array_elements(%(envelopes)s) WITH ORDINALITY AS events(e, n) ORDER BY n",
        {"now": uow.now, "envelopes": Jsonb(envelopes)},
    )
