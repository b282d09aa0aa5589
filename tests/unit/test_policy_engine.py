"""The engine over the shipped ruleset: table tests at every boundary, then property tests
that the partitioned engine, the single-enforcer engine and stock pycasbin agree."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import casbin
import pytest
from casbin.model import Model
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import ruleset
from policies.engine import (
    Decision,
    Engine,
    EngineDisagreement,
    InvalidFacts,
    NaiveEngine,
    UnknownAction,
    jurisdiction_pin,
)
from policies.ruleset import Ruleset
from tests import factories

SHIPPED = ruleset.load(ruleset.RULESETS / "2026-11-v1")
ENGINE = Engine(SHIPPED)
NAIVE = NaiveEngine(SHIPPED)
ACTIONS = SHIPPED.actions
PERIODS = factories.POLICY_PERIODS
KEEPS_GOING = ("bet.settle", "bet.rollback", "withdrawal")  # never stopped by player status


clean = factories.policy_facts


def decide(action: str, **changes: object) -> Decision:
    decision = ENGINE.decide(action, clean(**changes))
    naive = NAIVE.decide(action, clean(**changes))
    assert decision == naive
    return decision


def denied(decision: Decision, reason_code: str, *rule_ids: str) -> bool:
    return (
        not decision.allowed
        and decision.effect == "deny"
        and decision.reason_code == reason_code
        and decision.rule_ids == rule_ids
    )


def test_a_clean_player_may_do_everything() -> None:
    for action in ACTIONS:
        decision = decide(action)
        assert decision.allowed, decision
        assert decision.effect == "allow"
        assert decision.reason_code == "ok"
        assert decision.rule_ids == (f"allow-{action.replace('.', '-')}",)


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize(
    ("kind", "action", "amount", "rule"),
    [
        ("wager", "bet.place", "stake_minor", "deny-bet-place-wager-limit"),
        ("loss", "bet.place", "stake_minor", "deny-bet-place-loss-limit"),
        ("deposit", "deposit", "deposit_minor", "deny-deposit-limit"),
    ],
)
def test_limits_allow_reaching_the_limit_and_deny_one_unit_over(
    kind: str, action: str, amount: str, rule: str, period: str
) -> None:
    used, limit = f"{kind}_{period}_minor", f"{kind}_limit_{period}_minor"
    at_limit = decide(action, **{used: 900, limit: 1000, amount: 100})
    assert at_limit.allowed, at_limit
    over = decide(action, **{used: 900, limit: 1000, amount: 101})
    assert denied(over, f"{kind}_limit_{period}", f"{rule}-{period}"), over
    assert over.category == "responsible_gambling"
    # -1 is no limit at all, however much was used; 0 is a limit that allows nothing.
    assert decide(action, **{used: 10**12, limit: -1, amount: 10**9}).allowed
    assert not decide(action, **{used: 0, limit: 0, amount: 1}).allowed
    assert decide(action, **{used: 0, limit: 0, amount: 0}).allowed


def test_limits_of_other_periods_and_kinds_are_independent() -> None:
    assert decide("deposit", wager_limit_24h_minor=0, loss_limit_7d_minor=0).allowed
    assert decide("bet.place", deposit_limit_30d_minor=0).allowed


@pytest.mark.parametrize(
    ("flag", "reason"), [("self_excluded", "self_excluded"), ("timed_out", "timed_out")]
)
def test_self_exclusion_and_time_out_stop_stakes_and_deposits_only(flag: str, reason: str) -> None:
    for action in ("bet.place", "deposit"):
        rule = f"deny-{action.replace('.', '-')}-{flag.replace('_', '-')}"
        assert denied(decide(action, **{flag: True}), reason, rule)
    for action in (*KEEPS_GOING, "adjustment.credit", "adjustment.debit"):
        assert decide(action, **{flag: True}).allowed


def test_under_18_stops_stakes_and_deposits_and_18_exactly_may_play() -> None:
    for action in ("bet.place", "deposit"):
        minor = decide(action, age_years=17)
        assert denied(minor, "underage", f"deny-{action.replace('.', '-')}-underage")
        assert minor.category == "kyc"
        assert decide(action, age_years=18).allowed
    for action in (*KEEPS_GOING, "adjustment.credit", "adjustment.debit"):
        assert decide(action, age_years=17).allowed


def test_blocked_jurisdiction_stops_stakes_and_deposits() -> None:
    for action in ("bet.place", "deposit"):
        decision = decide(action, jurisdiction_blocked=True)
        assert denied(
            decision, "jurisdiction_blocked", f"deny-{action.replace('.', '-')}-jurisdiction"
        )
        assert decision.category == "jurisdiction"
    assert decide("withdrawal", jurisdiction_blocked=True).allowed


def test_due_diligence_reached_needs_verification() -> None:
    for action in ("bet.place", "deposit"):
        decision = decide(action, due_diligence_reached=True, kyc_verified=False)
        rule = f"deny-{action.replace('.', '-')}-due-diligence"
        assert denied(decision, "due_diligence_required", rule)
        assert decide(action, due_diligence_reached=True, kyc_verified=True).allowed
        assert decide(action, due_diligence_reached=False, kyc_verified=False).allowed
    withdrawal = decide("withdrawal", due_diligence_reached=True, kyc_verified=False)
    assert denied(
        withdrawal, "due_diligence_required", "deny-withdrawal-due-diligence", "deny-withdrawal-kyc"
    )
    assert decide("withdrawal", due_diligence_reached=True, kyc_verified=True).allowed


def test_withdrawal_needs_kyc_and_no_aml_hold() -> None:
    assert denied(decide("withdrawal", kyc_verified=False), "kyc_required", "deny-withdrawal-kyc")
    hold = decide("withdrawal", aml_hold=True)
    assert denied(hold, "aml_hold", "deny-withdrawal-aml-hold")
    assert hold.category == "aml"
    # A hold stops money leaving, not play.
    assert decide("bet.place", aml_hold=True).allowed


@pytest.mark.parametrize("action", ACTIONS)
def test_zone_off_stops_every_action_even_settles(action: str) -> None:
    decision = decide(action, zone_off=True)
    assert denied(decision, "zone_off", f"deny-{action.replace('.', '-')}-zone-off")
    assert decision.category == "operations"


def test_deny_overrides_allow_and_names_every_matching_deny() -> None:
    # allow-bet-place (condition True) matches too; the denies decide, the first gives the reason.
    decision = decide(
        "bet.place", self_excluded=True, age_years=17, wager_limit_7d_minor=50, stake_minor=60
    )
    assert denied(
        decision,
        "underage",
        "deny-bet-place-underage",
        "deny-bet-place-self-excluded",
        "deny-bet-place-wager-limit-7d",
    )
    assert "allow-bet-place" not in decision.rule_ids


def test_decisions_carry_version_hash_and_human_reason() -> None:
    decision = decide("bet.place", self_excluded=True)
    assert decision.action == "bet.place"
    assert decision.version == "2026-11-v1"
    assert (
        decision.ruleset_hash
        == SHIPPED.content_hash
        == ruleset.content_hash(ruleset.RULESETS / "2026-11-v1")
    )
    assert decision.reason == SHIPPED.reasons["self_excluded"]["en"]
    assert "self-excluded" in decision.reason
    assert decision.category == "responsible_gambling"
    # A locale the ruleset does not speak falls back to English.
    assert ENGINE.decide("bet.place", clean(self_excluded=True), locale="mt") == decision


def test_unknown_action() -> None:
    with pytest.raises(UnknownAction, match=r"bet\.cancel"):
        ENGINE.decide("bet.cancel", clean())
    with pytest.raises(UnknownAction):
        NAIVE.decide("bet.cancel", clean())


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        (clean(full_name="Ada Lovelace"), "fact 'full_name' is not declared"),
        (clean(age_years=30.0), "fact 'age_years' must be int, not float"),
        (clean(age_years=True), "fact 'age_years' must be int, not bool"),
        (clean(self_excluded=1), "fact 'self_excluded' must be bool, not int"),
        (clean(self_excluded="false"), "fact 'self_excluded' must be bool, not str"),
        (clean(zone_off=None), "fact 'zone_off' must be bool, not NoneType"),
        (
            {"zone_off": False},
            r"bet\.place needs the facts age_years, due_diligence_reached, ",
        ),
    ],
)
def test_facts_must_be_declared_simple_and_complete(facts: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidFacts, match=message) as caught:
        ENGINE.decide("bet.place", facts)
    assert "Ada" not in str(caught.value)  # values never reach an error message


def test_an_action_needs_only_the_facts_its_rules_read() -> None:
    assert ENGINE.decide("bet.settle", {"zone_off": False}).allowed
    assert not NAIVE.decide("bet.rollback", {"zone_off": True}).allowed


def test_pycasbin_is_the_enforcer_of_record(monkeypatch: pytest.MonkeyPatch) -> None:
    partition = ENGINE._partitions["bet.settle", None]
    monkeypatch.setattr(partition.enforcer, "enforce_ex", lambda *_: (False, []))
    with pytest.raises(EngineDisagreement, match="pycasbin says allowed=False"):
        ENGINE.decide("bet.settle", {"zone_off": False})


# --- rulesets built for one test ---------------------------------------------------------


def build(tmp_path: Path, rules: list[str], facts: dict[str, str]) -> Ruleset:
    directory = tmp_path / "test-v1"
    directory.mkdir()
    shutil.copy(ruleset.RULESETS / "2026-11-v1" / "model.conf", directory)
    shutil.copy(ruleset.RULESETS / "2026-11-v1" / "reasons.json", directory)
    manifest = {
        "version": "test-v1",
        "jurisdiction": "*",
        "effective_from": "2026-11-25T00:00:00+00:00",
        "description": "test",
        "facts": {name: {"type": kind, "doc": name} for name, kind in facts.items()},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "policy.csv").write_text("\n".join(rules) + "\n")
    return ruleset.load(directory)


def test_no_matching_rule_denies_with_no_rule(tmp_path: Path) -> None:
    adults = build(
        tmp_path,
        ["p, allow-adults, bet.place, r.sub.age_years >= 18, allow, ok"],
        {"age_years": "int"},
    )
    for engine in (Engine(adults), NaiveEngine(adults)):
        decision = engine.decide("bet.place", {"age_years": 17})
        assert denied(decision, "no_rule")
        assert decision.reason == adults.reasons["no_rule"]["en"]
        assert engine.decide("bet.place", {"age_years": 18}).rule_ids == ("allow-adults",)


PINNED = [
    "p, mt-allow, bet.place, r.sub.jurisdiction == 'MT', allow, ok",
    (
        "p, mt-cap, bet.place, r.sub.jurisdiction == 'MT' && r.sub.stake_minor > 500, deny, "
        "wager_limit_24h"
    ),
    "p, de-allow, bet.place, 'DE' == r.sub.jurisdiction && r.sub.stake_minor <= 100, allow, ok",
    "p, any-zone, bet.place, r.sub.zone_off, deny, zone_off",
    "p, ee-or-lv, bet.place, r.sub.jurisdiction == 'EE' || r.sub.jurisdiction == 'LV', allow, ok",
    "p, settle, bet.settle, True, allow, ok",
]
PINNED_FACTS = {"jurisdiction": "str", "stake_minor": "int", "zone_off": "bool"}


def test_jurisdiction_pins() -> None:
    assert jurisdiction_pin("r.sub.jurisdiction == 'MT'") == "MT"
    assert jurisdiction_pin("r.sub.x > 1 && 'DE' == r.sub.jurisdiction") == "DE"
    assert jurisdiction_pin("r.sub.jurisdiction == 'EE' || r.sub.jurisdiction == 'LV'") is None
    assert jurisdiction_pin("r.sub.jurisdiction != 'MT'") is None
    assert jurisdiction_pin("True") is None


def test_partitions_by_jurisdiction_decide_as_one_enforcer(tmp_path: Path) -> None:
    pinned = build(tmp_path, PINNED, PINNED_FACTS)
    engine = Engine(pinned)
    assert set(engine._partitions) == {
        ("bet.place", None),
        ("bet.place", "MT"),
        ("bet.place", "DE"),
        ("bet.settle", None),
    }
    mt = [rule.id for rule, _ in engine._partitions["bet.place", "MT"].explain]
    assert mt == ["mt-allow", "mt-cap", "any-zone", "ee-or-lv"]
    naive = NaiveEngine(pinned)
    for place in ("MT", "DE", "EE", "FR"):
        for stake in (50, 101, 501):
            for zone_off in (False, True):
                facts = {"jurisdiction": place, "stake_minor": stake, "zone_off": zone_off}
                assert engine.decide("bet.place", facts) == naive.decide("bet.place", facts)
    assert denied(
        engine.decide("bet.place", {"jurisdiction": "MT", "stake_minor": 501, "zone_off": False}),
        "wager_limit_24h",
        "mt-cap",
    )
    assert denied(
        engine.decide("bet.place", {"jurisdiction": "FR", "stake_minor": 1, "zone_off": False}),
        "no_rule",
    )


# --- properties ----------------------------------------------------------------------------


def stock_enforcer(loaded: Ruleset) -> casbin.Enforcer:
    """pycasbin as shipped, over every rule: no partitions, no expression cache."""
    model = Model()
    model.load_model_from_text(loaded.model_text)
    enforcer = casbin.Enforcer(model)
    enforcer.add_policies(
        [[r.id, r.action, r.condition, r.effect, r.reason_code] for r in loaded.rules]
    )
    return enforcer


STOCK = stock_enforcer(SHIPPED)
amounts = st.integers(min_value=0, max_value=1_000)
limits = st.one_of(st.just(-1), st.integers(min_value=0, max_value=1_000))


@st.composite
def random_facts(draw: st.DrawFn) -> dict[str, object]:
    facts: dict[str, object] = {}
    for name, fact in SHIPPED.facts.items():
        if fact.type == "bool":
            facts[name] = draw(st.booleans())
        elif name == "age_years":
            facts[name] = draw(st.integers(min_value=0, max_value=100))
        elif "_limit_" in name:
            facts[name] = draw(limits)
        else:
            facts[name] = draw(amounts)
    return facts


@settings(max_examples=150, deadline=None)
@given(action=st.sampled_from(ACTIONS), facts=random_facts())
def test_engines_and_stock_pycasbin_agree(action: str, facts: dict[str, object]) -> None:
    decision = ENGINE.decide(action, facts)
    naive = NAIVE.decide(action, facts)
    assert (decision.allowed, decision.rule_ids, decision.reason_code) == (
        naive.allowed,
        naive.rule_ids,
        naive.reason_code,
    )
    assert STOCK.enforce(SimpleNamespace(**facts), action) is decision.allowed
    allowed, row = STOCK.enforce_ex(SimpleNamespace(**facts), action)
    assert row[0] in decision.rule_ids
    assert row[4] == decision.reason_code
    assert decision.rule_ids
    assert decision.effect == ("allow" if allowed else "deny")
