"""The facts a decision is taken on, gathered in one statement under the player's lock.

Everything is read in the same transaction that then moves the money, after the wallet lock,
so no concurrent stake of the same player can change a limit's usage in between; and whatever
committed before the read counts, even when its timestamp is a hair later than this unit's
`now` (a stake, an exclusion), so clocks cannot open a gap. The facts are
flags and integers (amounts in minor units of the wallet currency, the due-diligence ones in
EUR cents) and the player's jurisdiction: never personal data. The gate hands the active
ruleset the facts its manifest declares.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from compliance import rg
from compliance.ages import AgeSource
from compliance.jurisdictions import Jurisdictions
from core import fx, sql
from core.errors import NotFound
from core.guard import Movement
from core.money import Money, convert
from core.uow import UnitOfWork
from policies.killswitch import ZONE_OF_ACTION

Facts = dict[str, bool | int | str]
NO_LIMIT = -1
UNKNOWN_AGE = -1
_STAKE_ACTIONS = {"bet.place"}


@dataclass(frozen=True)
class Sheet:
    """The facts, with the ruleset that is to decide on them."""

    facts: Facts
    jurisdiction: str
    version: str | None  # None: no ruleset is active for the jurisdiction
    content_hash: str | None


def _window(column: str, period: str) -> str:
    return f"coalesce(sum({column}) FILTER (WHERE placed_at > %(now)s - interval '{period}'), 0)"


_LOSS = "stake - coalesce(payout, 0)"  # an open bet counts as lost
# Only the constants above are interpolated into the statement.
_GATHER = f"""
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
  (SELECT coalesce(json_agg(json_build_array(t.currency, t.total)), '[]')
     FROM (SELECT b.currency, sum(b.stake)::bigint AS total FROM bets b
           WHERE b.status <> 'VOID' AND b.player_id IN (
             SELECT p.id UNION ALL
             SELECT linked_player_id FROM player_links WHERE player_id = p.id UNION ALL
             SELECT player_id FROM player_links WHERE linked_player_id = p.id)
           GROUP BY b.currency) t) AS staked_by_currency,
  u.*
FROM players p
LEFT JOIN LATERAL (
  SELECT version, content_hash FROM policy_activations
  WHERE jurisdiction IN (p.jurisdiction, '*') ORDER BY jurisdiction = '*', id DESC LIMIT 1
) act ON true
CROSS JOIN LATERAL (
  SELECT {_window("stake", "24 hours")}::bigint AS wager_24h,
         {_window("stake", "7 days")}::bigint AS wager_7d,
         {_window("stake", "30 days")}::bigint AS wager_30d,
         greatest({_window(_LOSS, "24 hours")}, 0)::bigint AS loss_24h,
         greatest({_window(_LOSS, "7 days")}, 0)::bigint AS loss_7d,
         greatest({_window(_LOSS, "30 days")}, 0)::bigint AS loss_30d
  FROM bets WHERE player_id = p.id AND status <> 'VOID'
    AND placed_at > %(now)s - interval '30 days'
) u
WHERE p.id = %(player)s
"""  # noqa: S608


async def gather(
    uow: UnitOfWork,
    movement: Movement,
    *,
    geo: str | None,
    ages: AgeSource,
    jurisdictions: Jurisdictions,
) -> Sheet:
    row = await sql.one(
        uow,
        _GATHER,
        {"player": movement.player_id, "zone": ZONE_OF_ACTION[movement.action], "now": uow.now},
    )
    if row is None:
        raise NotFound("unknown_player", "no such player", player_id=str(movement.player_id))
    home = jurisdictions.of(row["jurisdiction"])
    where = jurisdictions.of(geo) if geo else home
    age = await ages.age_years(movement.player_id, uow.now.date())
    staked = await _in_eur(uow, row["staked_by_currency"])
    deposited = 0  # gross deposits: none until payments exist
    total = max(staked, deposited)
    threshold = home.due_diligence_threshold_eur_minor
    facts: Facts = {
        "jurisdiction": row["jurisdiction"],
        "age_years": UNKNOWN_AGE if age is None else age,
        "jurisdiction_blocked": home.blocked or where.blocked,
        "self_excluded": row["self_excluded"],
        "timed_out": row["timed_out"],
        "kyc_verified": row["kyc_level"] == "verified",
        "aml_hold": row["aml_hold"],
        "zone_off": row["zone_off"],
        "due_diligence_total_eur_minor": total,
        "due_diligence_threshold_eur_minor": threshold,
        "due_diligence_reached": total >= threshold,
        "stake_minor": movement.amount.minor if movement.action in _STAKE_ACTIONS else 0,
        "deposit_minor": 0,
    }
    limits = {(kind, period): amount for kind, period, amount in row["limits"]}
    for kind in rg.KINDS:
        for period in rg.PERIODS:
            used = 0 if kind == "deposit" else row[f"{kind}_{period}"]
            limit = limits.get((kind, period))
            facts[f"{kind}_{period}_minor"] = int(used)
            facts[f"{kind}_limit_{period}_minor"] = NO_LIMIT if limit is None else int(limit)
    return Sheet(facts, row["jurisdiction"], row["version"], row["content_hash"])


async def _in_eur(uow: UnitOfWork, totals: list[Any]) -> int:
    """Sum amounts per currency in EUR cents, each converted at the rate in force."""
    eur = 0
    for currency, total in totals:
        amount = Money(int(total), currency)
        if currency != "EUR":
            rate = await fx.rate_in_force(uow, base=currency, quote="EUR", at=uow.now)
            amount = convert(amount, rate=Decimal(rate.rate), to_currency="EUR")
        eur += amount.minor
    return eur
