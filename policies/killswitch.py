"""Kill-switches: an operator stops a whole zone of money movement at once, with a reason.

The state of a zone is its newest switch (the table is append-only, so every switch and its
reason stay on record, and each is journaled). The gate reads it for every decision as the
`zone_off` fact (in compliance/facts.py's statement), so a switch takes effect with the next
request.
"""

from dataclasses import dataclass
from datetime import datetime

from core import journal, sql
from core.errors import InvalidRequest
from core.journal import EventContext
from core.uow import UnitOfWork

# Stakes can stop without stopping what is owed to players (settlements, rollbacks) or money
# already gone (a payout the provider confirms); new deposits and withdrawals stop on their own.
ZONE_OF_ACTION = {
    "bet.place": "bet",
    "bet.settle": "settlement",
    "bet.rollback": "settlement",
    "deposit": "deposit",
    "withdrawal": "withdrawal",
    "withdrawal.release": "settlement",
    "withdrawal.pay_out": "settlement",
    "adjustment.credit": "adjustment",
    "adjustment.debit": "adjustment",
}
ZONES = tuple(sorted(set(ZONE_OF_ACTION.values())))


@dataclass(frozen=True)
class Switch:
    zone: str
    off: bool
    reason: str
    set_by: str
    set_at: datetime


async def switch(
    uow: UnitOfWork, *, zone: str, off: bool, reason: str, actor: str, ctx: EventContext
) -> Switch:
    if zone not in ZONES:
        raise InvalidRequest("unknown_zone", f"zones are {', '.join(ZONES)}", zone=zone)
    if not reason.strip():
        raise InvalidRequest("reason_required", "a kill-switch needs a reason")
    await sql.run(
        uow,
        "INSERT INTO kill_switches (zone, off, reason, set_by, set_at)"
        " VALUES (%(zone)s, %(off)s, %(reason)s, %(by)s, %(now)s)",
        {"zone": zone, "off": off, "reason": reason, "by": actor, "now": uow.now},
    )
    await journal.record(
        uow,
        "policy.kill_switch",
        ctx=ctx,
        data={"zone": zone, "off": off, "reason": reason, "actor": actor},
    )
    return Switch(zone, off, reason, actor, uow.now)


async def states(uow: UnitOfWork) -> dict[str, Switch]:
    """Every zone that was ever switched, as it stands now."""
    rows = await sql.all_rows(
        uow,
        "SELECT DISTINCT ON (zone) zone, off, reason, set_by, set_at FROM kill_switches"
        " ORDER BY zone, id DESC",
        {},
    )
    return {row["zone"]: Switch(**row) for row in rows}
