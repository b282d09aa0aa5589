"""The facts a decision is taken on, gathered in one statement under the player's lock.

Everything is read in the same transaction that then moves the money, after the wallet lock,
so no concurrent stake of the same player can change a limit's usage in between; and whatever
committed before the read counts, even when its timestamp is a hair later than this unit's
`now` (a stake, an exclusion), so clocks cannot open a gap. The facts are flags and integers
(amounts in minor units of the wallet currency, the due-diligence ones in EUR cents), the
player's jurisdiction and age in years: nothing that identifies a person without the player id
(no name, date of birth, document or contact). The gate hands the active ruleset the facts its
manifest declares. The overrides in force for the player and the action (compliance.overrides)
come in the same statement: a player without any pays one index probe for them.
"""

import logging
import uuid
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from compliance import overrides, rg
from compliance.ages import AgeSource
from compliance.jurisdictions import Jurisdictions
from core import fx, sql
from core.errors import DomainError, InvalidRequest, NotFound, Unavailable
from core.guard import Movement
from core.money import Money, convert
from core.uow import UnitOfWork
from policies.killswitch import ZONE_OF_ACTION

log = logging.getLogger(__name__)


class Screening(Protocol):
    """A KYT deny list (compliance.kyt.DenyList): screens a withdrawal's crypto address."""

    @property
    def content_hash(self) -> str: ...

    def screen(self, address: str) -> object | None: ...


Facts = dict[str, bool | int | str]
NO_LIMIT = -1
UNKNOWN_AGE = -1
_STAKE_ACTIONS = {"bet.place"}
_ADDS_TO_DUE_DILIGENCE = {"bet.place", "deposit"}
_DUE_DILIGENCE = frozenset(
    {
        "due_diligence_total_eur_minor",
        "due_diligence_threshold_eur_minor",
        "due_diligence_amount_eur_minor",
        "due_diligence_reached",
    }
)


# Usage windows end now and start `period` earlier. The database keeps usage per player and
# UTC hour (migration 0007): a window is its full hours from there, plus the bets of its
# partial first hour from `bets` itself, so it is exact without summing a player's history.
# In hours: '7 days' on a timestamptz follows the session's time zone across a DST change.
_PERIODS = {"24h": "24 hours", "7d": "168 hours", "30d": "720 hours"}


def _start(period: str) -> str:
    return f"(%(now)s - interval '{period}')"


def _full_hours(period: str) -> str:
    return f"(date_trunc('hour', {_start(period)}, 'UTC') + interval '1 hour')"


def _usage_columns() -> str:
    columns = []
    for name, period in _PERIODS.items():
        hours = f"h.hour >= {_full_hours(period)}"
        wager = f"sum(e.stake) FILTER (WHERE e.win = '{name}')"
        loss = f"sum(e.stake - coalesce(e.payout, 0)) FILTER (WHERE e.win = '{name}')"
        columns.append(
            f"(coalesce(sum(h.wager) FILTER (WHERE {hours}), 0)"  # noqa: S608 - constants
            f" + (SELECT coalesce({wager}, 0) FROM edge e))::bigint AS wager_{name}"
        )
        columns.append(
            f"greatest(coalesce(sum(h.loss) FILTER (WHERE {hours}), 0)"  # noqa: S608 - constants
            f" + (SELECT coalesce({loss}, 0) FROM edge e), 0)::bigint AS loss_{name}"
        )
    return ",\n    ".join(columns)


# A deposit counts from the moment it is initiated until it fails or expires, so deposits in
# flight cannot jump a limit side by side.
_DEPOSIT_COUNTS = "'initiated', 'pending', 'confirmed'"


def _deposit_columns() -> str:
    return ",\n    ".join(
        f"coalesce(sum(y.amount) FILTER (WHERE y.created_at > {_start(period)}), 0)::bigint"
        f" AS deposit_{name}"
        for name, period in _PERIODS.items()
    )


# The partial first hour of each window, one index range each (an OR of the three ranges made
# PostgreSQL walk all of the player's bets: measured 3 ms at 3,000 bets).
_EDGES = "\n  UNION ALL ".join(
    f"SELECT '{name}' AS win, stake, payout FROM bets WHERE player_id = %(player)s"  # noqa: S608
    f" AND placed_at > {_start(period)} AND placed_at < {_full_hours(period)}"
    " AND status <> 'VOID'"
    for name, period in _PERIODS.items()
)
# Only the constants above are interpolated into the statement.
_GATHER = f"""
WITH RECURSIVE edge AS (
  {_EDGES}
),
linked (id, depth) AS (  -- links of links too, up to 4 steps away
  SELECT %(player)s::uuid, 0
  UNION
  SELECT CASE WHEN l.player_id = k.id THEN l.linked_player_id ELSE l.player_id END, k.depth + 1
  FROM linked k JOIN player_links l ON k.id IN (l.player_id, l.linked_player_id)
  WHERE k.depth < 4
)
SELECT p.jurisdiction, p.currency, act.version, act.content_hash,
  coalesce((SELECT k.off FROM kill_switches k WHERE k.zone = %(zone)s
            ORDER BY k.id DESC LIMIT 1), false) AS zone_off,
  (SELECT coalesce(json_agg(json_build_array(l.kind, l.period, l.amount)), '[]')
     FROM (SELECT DISTINCT ON (kind, period) kind, period, amount FROM rg_limits
           WHERE player_id = p.id AND effective_at <= %(now)s
           ORDER BY kind, period, requested_at DESC, id DESC) l) AS limits,
  EXISTS (SELECT 1 FROM rg_exclusions e WHERE e.player_id = p.id AND e.kind = 'self_exclusion'
          AND (e.ends_at IS NULL OR e.ends_at > %(now)s))
    AS self_excluded,
  EXISTS (SELECT 1 FROM rg_exclusions e WHERE e.player_id = p.id AND e.kind = 'time_out'
          AND (e.ends_at IS NULL OR e.ends_at > %(now)s))
    AS timed_out,
  coalesce((SELECT level FROM kyc_levels WHERE player_id = p.id ORDER BY id DESC LIMIT 1),
           'unverified') AS kyc_level,
  coalesce((SELECT on_hold FROM aml_holds WHERE player_id = p.id ORDER BY id DESC LIMIT 1),
           false) AS aml_hold,
  (SELECT coalesce(json_agg(json_build_array(t.currency, t.total)), '[]') FROM (
     SELECT currency, sum(staked)::bigint AS total FROM player_turnover
     WHERE player_id IN (SELECT id FROM linked) GROUP BY currency) t) AS staked_by_currency,
  (SELECT coalesce(json_agg(json_build_array(t.currency, t.total)), '[]') FROM (
     SELECT currency, sum(amount)::bigint AS total FROM payments
     WHERE player_id IN (SELECT id FROM linked) AND kind = 'deposit'
       AND state IN ({_DEPOSIT_COUNTS}) GROUP BY currency) t) AS deposited_by_currency,
  (SELECT array_agg(id ORDER BY id) FROM linked) AS linked_ids,
  (SELECT coalesce(json_agg(json_build_array(o.id, o.appeal_id, o.rule_ids, o.max_uses,
            (SELECT count(*) FROM override_uses s WHERE s.override_id = o.id))
          ORDER BY o.granted_at, o.id), '[]')
     FROM overrides o WHERE o.player_id = p.id AND o.action = %(action)s
     AND o.expires_at > %(now)s AND o.granted_at <= %(now)s
     AND (o.max_uses IS NULL
          OR (SELECT count(*) FROM override_uses s WHERE s.override_id = o.id) < o.max_uses)
  ) AS overrides,
  u.*, d.*
FROM players p
LEFT JOIN LATERAL (
  SELECT version, content_hash FROM policy_activations
  WHERE jurisdiction IN (p.jurisdiction, '*') ORDER BY jurisdiction = '*', id DESC LIMIT 1
) act ON true
CROSS JOIN LATERAL (
  SELECT
    {_usage_columns()}
  FROM player_usage_hourly h
  WHERE h.player_id = p.id AND h.hour >= {_full_hours(_PERIODS["30d"])}
) u
CROSS JOIN LATERAL (
  SELECT
    {_deposit_columns()}
  FROM payments y
  WHERE y.player_id = p.id AND y.kind = 'deposit' AND y.state IN ({_DEPOSIT_COUNTS})
    AND y.created_at > {_start(_PERIODS["30d"])}
) d
WHERE p.id = %(player)s
"""  # noqa: S608


def reads_due_diligence(needed: frozenset[str]) -> bool:
    return bool(needed & _DUE_DILIGENCE)


async def lock_linked(uow: UnitOfWork, linked_ids: list[uuid.UUID]) -> None:
    """Queue behind every other movement of these linked players that reads their common
    due-diligence total (advisory locks, in id order, until commit), so that their stakes and
    deposits are decided one after the other on what the ones before them committed. Taken after
    the player's own row lock, and never the other way round, so the two cannot deadlock."""
    await sql.run(
        uow,
        "SELECT pg_advisory_xact_lock(hashtextextended('due-diligence:' || id::text, 0))"
        " FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS linked(id, n) ORDER BY n",
        {"ids": linked_ids},
    )
    uow.retime()


async def read(uow: UnitOfWork, movement: Movement) -> dict[str, Any]:
    """The stored state behind the facts, and the ruleset active for the player."""
    row = await sql.one(
        uow,
        _GATHER,
        {
            "player": movement.player_id,
            "zone": ZONE_OF_ACTION[movement.action],
            "action": movement.action,
            "now": uow.now,
        },
    )
    if row is None:
        raise NotFound("unknown_player", "no such player", player_id=str(movement.player_id))
    return row


async def complete(
    uow: UnitOfWork,
    movement: Movement,
    row: dict[str, Any],
    *,
    needed: frozenset[str],
    geo: str | None,
    ages: AgeSource,
    jurisdictions: Jurisdictions,
    kyt: Screening,
) -> Facts:
    """The facts from `row`; the age (a vault read) and the due-diligence amounts (FX rates)
    only when the action's rules read them, so a settle never waits on either."""
    home = jurisdictions.of(row["jurisdiction"])
    where = jurisdictions.of(geo) if geo else home
    facts: Facts = {
        "jurisdiction": row["jurisdiction"],
        "jurisdiction_blocked": home.blocked or where.blocked,
        "jurisdiction_settings": jurisdictions.content_hash,
        "self_excluded": row["self_excluded"],
        "timed_out": row["timed_out"],
        "kyc_verified": row["kyc_level"] == "verified",
        "aml_hold": row["aml_hold"],
        "zone_off": row["zone_off"],
        "stake_minor": movement.amount.minor if movement.action in _STAKE_ACTIONS else 0,
        "deposit_minor": movement.amount.minor if movement.action == "deposit" else 0,
        **overrides.facts(overrides.in_force(row)),
    }
    if needed & {"destination_denied", "kyt_list"}:
        hit = kyt.screen(movement.destination) if movement.destination else None
        facts["destination_denied"] = hit is not None
        facts["kyt_list"] = kyt.content_hash
    if "age_years" in needed:
        facts["age_years"] = await _age(ages, movement.player_id, uow.now.date())
    if needed & _DUE_DILIGENCE:
        staked = await _in_eur(uow, row["staked_by_currency"])
        deposited = await _in_eur(uow, row["deposited_by_currency"])
        total = max(staked, deposited)
        threshold = home.due_diligence_threshold_eur_minor
        adds = movement.action in _ADDS_TO_DUE_DILIGENCE
        facts["due_diligence_total_eur_minor"] = total
        facts["due_diligence_threshold_eur_minor"] = threshold
        facts["due_diligence_amount_eur_minor"] = (
            await _in_eur(uow, [(movement.amount.currency, movement.amount.minor)]) if adds else 0
        )
        facts["due_diligence_reached"] = total >= threshold
    limits = {(kind, period): amount for kind, period, amount in row["limits"]}
    for kind in rg.KINDS:
        for period in rg.PERIODS:
            used = row[f"{kind}_{period}"]
            limit = limits.get((kind, period))
            facts[f"{kind}_{period}_minor"] = int(used)
            facts[f"{kind}_limit_{period}_minor"] = NO_LIMIT if limit is None else int(limit)
    return facts


async def _age(ages: AgeSource, player_id: uuid.UUID, on: date) -> int:
    """Age in years, UNKNOWN_AGE without a date of birth; the vault failing stops the movement
    (503) rather than guessing."""
    try:
        age = await ages.age_years(player_id, on)
    except (SQLAlchemyError, psycopg.Error, OSError, DomainError):
        log.exception("the vault could not give player %s's age", player_id)
        raise Unavailable("age_unavailable", "the player's age cannot be read right now") from None
    return UNKNOWN_AGE if age is None else age


async def in_eur(uow: UnitOfWork, amount: Money) -> int:
    """`amount` in EUR cents at the rate in force; InvalidRequest when there is no rate."""
    return await _in_eur(uow, [(amount.currency, amount.minor)])


async def _in_eur(uow: UnitOfWork, totals: list[Any]) -> int:
    """Sum amounts per currency in EUR cents, each converted at the rate in force (X/EUR, or
    the inverse of EUR/X when only that one is recorded)."""
    eur = 0
    for currency, total in totals:
        amount = Money(int(total), currency)
        if currency != "EUR":
            amount = convert(amount, rate=await _to_eur(uow, currency), to_currency="EUR")
        eur += amount.minor
    return eur


async def _to_eur(uow: UnitOfWork, currency: str) -> Decimal:
    try:
        return Decimal((await fx.rate_in_force(uow, base=currency, quote="EUR", at=uow.now)).rate)
    except InvalidRequest:
        inverse = await fx.rate_in_force(uow, base="EUR", quote=currency, at=uow.now)
        return Decimal(1) / Decimal(inverse.rate)
