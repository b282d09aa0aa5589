"""Responsible gambling: deposit, loss and wager limits, time-outs and self-exclusions.

Limits: a decrease (or a first limit) takes effect at once; an increase or a removal only after
a 24-hour cooling-off, and the player is told when. The limit in force at T is the newest
request that has taken effect by T, so a decrease made during a pending increase wins over it.
Exclusions take effect at once; a time-out lasts 24 hours to 6 weeks; a self-exclusion lasts at
least 6 months (or indefinitely) and cannot be shortened. Usage is recomputed from the bets
themselves: wager is the stakes placed in the period (voided ones excepted), loss is stakes
minus payouts (an open bet counts as lost), deposits are gross, from initiation until they
fail or expire.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from core import journal, players, sql
from core.errors import Conflict, InvalidRequest
from core.journal import EventContext
from core.money import format_minor
from core.uow import UnitOfWork

Kind = Literal["deposit", "loss", "wager"]
Period = Literal["24h", "7d", "30d"]
KINDS: tuple[Kind, ...] = ("deposit", "loss", "wager")
PERIODS: dict[Period, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
COOLING_OFF = timedelta(hours=24)
TIME_OUT_MIN, TIME_OUT_MAX = timedelta(hours=24), timedelta(weeks=6)
SELF_EXCLUSION_MIN = timedelta(days=182)  # six months


@dataclass(frozen=True)
class LimitChange:
    kind: Kind
    period: Period
    amount: int | None
    effective_at: datetime
    immediate: bool


@dataclass(frozen=True)
class Limits:
    in_force: dict[tuple[Kind, Period], int]  # absent: no limit
    pending: dict[tuple[Kind, Period], tuple[int | None, datetime]]


async def limits(uow: UnitOfWork, player_id: uuid.UUID, at: datetime | None = None) -> Limits:
    at = at or uow.now
    rows = await sql.all_rows(
        uow,
        "SELECT kind, period, amount, requested_at, effective_at FROM rg_limits"
        " WHERE player_id = %(p)s ORDER BY requested_at, id",
        {"p": player_id},
    )
    in_force: dict[tuple[Kind, Period], int | None] = {}
    pending: dict[tuple[Kind, Period], tuple[int | None, datetime]] = {}
    for row in rows:
        key = (row["kind"], row["period"])
        if row["effective_at"] <= at:
            in_force[key] = row["amount"]
            pending.pop(key, None)  # a newer request that took effect supersedes
        else:
            pending[key] = (row["amount"], row["effective_at"])
    return Limits({k: v for k, v in in_force.items() if v is not None}, pending)


async def set_limit(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    kind: Kind,
    period: Period,
    amount: int | None,
    actor: str,
    ctx: EventContext,
) -> LimitChange:
    """Request a limit (None removes it): at once if it tightens, after cooling-off if not."""
    if kind not in KINDS or period not in PERIODS:
        raise InvalidRequest("invalid_limit", "kind is deposit, loss or wager; period 24h, 7d, 30d")
    if amount is not None and amount < 0:
        raise InvalidRequest("invalid_limit", "a limit cannot be negative")
    await players.lock_player(uow, player_id)  # in order with the player's stakes
    current = (await limits(uow, player_id)).in_force.get((kind, period))
    tightens = amount is not None and (current is None or amount <= current)
    effective_at = uow.now if tightens else uow.now + COOLING_OFF
    await sql.run(
        uow,
        "INSERT INTO rg_limits (player_id, kind, period, amount, requested_at, effective_at,"
        " set_by) VALUES (%(p)s, %(k)s, %(per)s, %(a)s, %(now)s, %(eff)s, %(by)s)",
        {
            "p": player_id,
            "k": kind,
            "per": period,
            "a": amount,
            "now": uow.now,
            "eff": effective_at,
            "by": actor,
        },
    )
    await journal.record(
        uow,
        "rg.limit_requested",
        ctx=ctx,
        player_id=player_id,
        data={
            "kind": kind,
            "period": period,
            "amount_minor": amount,
            "effective_at": journal.rfc3339(effective_at),
            "immediate": tightens,
            "actor": actor,
        },
    )
    return LimitChange(kind, period, amount, effective_at, tightens)


@dataclass(frozen=True)
class Exclusion:
    kind: Literal["time_out", "self_exclusion"]
    starts_at: datetime
    ends_at: datetime | None


async def exclusions_in_force(
    uow: UnitOfWork, player_id: uuid.UUID, at: datetime | None = None
) -> list[Exclusion]:
    rows = await sql.all_rows(
        uow,
        "SELECT kind, starts_at, ends_at FROM rg_exclusions WHERE player_id = %(p)s"
        " AND starts_at <= %(at)s AND (ends_at IS NULL OR ends_at > %(at)s) ORDER BY id",
        {"p": player_id, "at": at or uow.now},
    )
    return [Exclusion(**row) for row in rows]


async def exclude(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    kind: Literal["time_out", "self_exclusion"],
    until: datetime | None,
    actor: str,
    reason: str,
    ctx: EventContext,
) -> Exclusion:
    """Start a time-out or a self-exclusion now (`until` None: an indefinite self-exclusion)."""
    await players.lock_player(uow, player_id)  # in order with the player's stakes
    length = None if until is None else until - uow.now
    if kind == "time_out" and (length is None or not TIME_OUT_MIN <= length <= TIME_OUT_MAX):
        raise InvalidRequest("invalid_exclusion", "a time-out lasts from 24 hours to 6 weeks")
    if kind == "self_exclusion" and length is not None and length < SELF_EXCLUSION_MIN:
        raise InvalidRequest("invalid_exclusion", "a self-exclusion lasts at least 6 months")
    for current in await exclusions_in_force(uow, player_id):
        if current.kind == "self_exclusion" and (
            current.ends_at is None or (until is not None and until < current.ends_at)
        ):
            raise Conflict(
                "exclusion_cannot_be_shortened",
                "a self-exclusion in force cannot be shortened",
                ends_at=journal.rfc3339(current.ends_at) if current.ends_at else None,
            )
    await sql.run(
        uow,
        "INSERT INTO rg_exclusions (player_id, kind, starts_at, ends_at, set_by, reason)"
        " VALUES (%(p)s, %(k)s, %(now)s, %(until)s, %(by)s, %(why)s)",
        {"p": player_id, "k": kind, "now": uow.now, "until": until, "by": actor, "why": reason},
    )
    await journal.record(
        uow,
        "rg.exclusion_started",
        ctx=ctx,
        player_id=player_id,
        data={
            "kind": kind,
            "ends_at": journal.rfc3339(until) if until else None,
            "actor": actor,
        },
    )
    return Exclusion(kind, uow.now, until)


async def usage(
    uow: UnitOfWork, player_id: uuid.UUID, at: datetime | None = None
) -> dict[tuple[Kind, Period], int]:
    """Wager, loss and deposit used in each period ending at `at`, in minor units."""
    at = at or uow.now
    row = await sql.one(uow, _USAGE, {"p": player_id, "at": at})
    deposits = await sql.one(uow, _DEPOSITS, {"p": player_id, "at": at})
    assert row is not None  # noqa: S101 - an aggregate always yields a row
    assert deposits is not None  # noqa: S101 - an aggregate always yields a row
    used: dict[tuple[Kind, Period], int] = {}
    for period in PERIODS:
        used["wager", period] = int(row[f"wager_{period}"])
        used["loss", period] = max(0, int(row[f"loss_{period}"]))  # net: never below 0
        used["deposit", period] = int(deposits[f"deposit_{period}"])
    return used


_WINDOW = "FILTER (WHERE placed_at > %(at)s - interval "
_USAGE = (
    "SELECT"
    " coalesce(sum(stake) " + _WINDOW + "'24 hours'), 0) AS wager_24h,"
    " coalesce(sum(stake) " + _WINDOW + "'168 hours'), 0) AS wager_7d,"
    " coalesce(sum(stake) " + _WINDOW + "'720 hours'), 0) AS wager_30d,"
    " coalesce(sum(stake - coalesce(payout, 0)) " + _WINDOW + "'24 hours'), 0) AS loss_24h,"
    " coalesce(sum(stake - coalesce(payout, 0)) " + _WINDOW + "'168 hours'), 0) AS loss_7d,"
    " coalesce(sum(stake - coalesce(payout, 0)) " + _WINDOW + "'720 hours'), 0) AS loss_30d"
    " FROM bets WHERE player_id = %(p)s AND status <> 'VOID' AND placed_at <= %(at)s"
)
# Gross deposits, counted from initiation until they fail or expire (as the gate counts them).
_CREATED = "FILTER (WHERE created_at > %(at)s - interval "
_DEPOSITS = (
    "SELECT"
    " coalesce(sum(amount) " + _CREATED + "'24 hours'), 0) AS deposit_24h,"
    " coalesce(sum(amount) " + _CREATED + "'168 hours'), 0) AS deposit_7d,"
    " coalesce(sum(amount) " + _CREATED + "'720 hours'), 0) AS deposit_30d"
    " FROM payments WHERE player_id = %(p)s AND kind = 'deposit'"
    " AND state IN ('initiated', 'pending', 'confirmed') AND created_at <= %(at)s"
)


def describe(change: LimitChange, currency: str) -> str:
    amount = "no limit" if change.amount is None else format_minor(change.amount, currency)
    when = "now" if change.immediate else f"on {journal.rfc3339(change.effective_at)}"
    return f"{change.kind} limit per {change.period}: {amount}, in force {when}"


async def end_cooling_off(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    kind: Kind,
    period: Period,
    actor: str,
    reason: str,
    ctx: EventContext,
) -> LimitChange:
    """A raised (or removed) limit waiting for its cooling-off takes effect now: an appeal
    overturned (decision 0023). The table stays append-only: the same amount is requested
    again, in force at once; 409 `no_pending_limit` when none waits."""
    await players.lock_player(uow, player_id)  # in order with the player's stakes
    pending = (await limits(uow, player_id)).pending.get((kind, period))
    if pending is None:
        raise Conflict(
            "no_pending_limit", f"no {kind} limit per {period} is waiting for its cooling-off"
        )
    amount, was_due = pending
    await sql.run(
        uow,
        "INSERT INTO rg_limits (player_id, kind, period, amount, requested_at, effective_at,"
        " set_by) VALUES (%(p)s, %(k)s, %(per)s, %(a)s, %(now)s, %(now)s, %(by)s)",
        {"p": player_id, "k": kind, "per": period, "a": amount, "now": uow.now, "by": actor},
    )
    await journal.record(
        uow,
        "rg.limit_requested",
        ctx=ctx,
        player_id=player_id,
        data={
            "kind": kind,
            "period": period,
            "amount_minor": amount,
            "effective_at": journal.rfc3339(uow.now),
            "immediate": True,
            "actor": actor,
            "cooling_off_ended": journal.rfc3339(was_due),
            "reason": reason,
        },
    )
    return LimitChange(kind, period, amount, uow.now, immediate=True)
