"""Rulesets: the shipped one loads, the content hash pins every byte and name, and malformed
rulesets are refused with a message that says what is wrong."""

import dataclasses
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies import ruleset
from policies.engine import Engine
from policies.ruleset import RulesetError, RulesetTampered

SHIPPED = ruleset.RULESETS / "2026-11-v1"
ACTIONS = {
    "bet.place",
    "bet.settle",
    "bet.rollback",
    "adjustment.credit",
    "adjustment.debit",
    "deposit",
    "withdrawal",
}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A private copy of the shipped ruleset, under its own version name."""
    target = tmp_path / "2026-11-v1"
    shutil.copytree(SHIPPED, target)
    return target


def test_the_shipped_ruleset_loads() -> None:
    loaded = ruleset.load(SHIPPED)
    assert loaded.version == "2026-11-v1"
    assert loaded.jurisdiction == "*"
    assert loaded.effective_from == datetime(2026, 11, 25, tzinfo=UTC)
    assert set(loaded.actions) == ACTIONS
    assert loaded.content_hash == ruleset.content_hash(SHIPPED)
    assert "2026-11-v1" in ruleset.available()
    for action in ACTIONS:
        allows = [r for r in loaded.rules if r.action == action and r.effect == "allow"]
        assert [r.condition for r in allows] == ["True"]
    assert {r.reason_code for r in loaded.rules} <= loaded.reasons.keys()


def test_available_lists_only_directories_with_a_manifest(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED, tmp_path / "b-v1")
    shutil.copytree(SHIPPED, tmp_path / "a-v1")
    (tmp_path / "scratch").mkdir()
    assert ruleset.available(tmp_path) == ["a-v1", "b-v1"]
    assert ruleset.available(tmp_path / "absent") == []


def test_content_hash_is_stable_and_independent_of_location(copy: Path) -> None:
    first = ruleset.content_hash(SHIPPED)
    assert first.startswith("sha256:")
    assert len(first) == len("sha256:") + 64
    assert ruleset.content_hash(SHIPPED) == first
    assert ruleset.content_hash(copy) == first


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda d: (d / "policy.csv").write_bytes(
                (d / "policy.csv").read_bytes().replace(b"< 18", b"< 19")
            ),
            id="one byte of a rule",
        ),
        pytest.param(
            lambda d: (d / "reasons.json").write_bytes((d / "reasons.json").read_bytes() + b" "),
            id="trailing byte",
        ),
        pytest.param(lambda d: (d / "NOTES.md").write_text("x"), id="file added"),
        pytest.param(lambda d: (d / "empty").write_bytes(b""), id="empty file added"),
        pytest.param(lambda d: (d / "policy.csv").rename(d / "policy.CSV"), id="file renamed"),
        pytest.param(lambda d: _move_into_subdirectory(d, "model.conf"), id="file moved"),
        pytest.param(lambda d: (d / "model.conf").unlink(), id="file removed"),
    ],
)
def test_content_hash_changes_with_any_byte_or_name(
    copy: Path, change: Callable[[Path], object]
) -> None:
    before = ruleset.content_hash(copy)
    change(copy)
    assert ruleset.content_hash(copy) != before


def _move_into_subdirectory(directory: Path, name: str) -> None:
    (directory / "sub").mkdir()
    (directory / name).rename(directory / "sub" / name)


def test_content_hash_keeps_name_and_content_boundaries(tmp_path: Path) -> None:
    # Without the length prefixes ("ab", "c") and ("a", "bc") would hash alike.
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "ab").write_bytes(b"c")
    (two / "a").write_bytes(b"bc")
    assert ruleset.content_hash(one) != ruleset.content_hash(two)


def test_load_with_the_registered_hash(copy: Path) -> None:
    expected = ruleset.content_hash(copy)
    assert ruleset.load(copy, expected_hash=expected).content_hash == expected


def test_load_refuses_a_tampered_ruleset_naming_both_hashes(copy: Path) -> None:
    registered = ruleset.content_hash(copy)
    policy = copy / "policy.csv"
    policy.write_text(policy.read_text().replace("r.sub.age_years < 18", "r.sub.age_years < 16"))
    actual = ruleset.content_hash(copy)
    with pytest.raises(RulesetTampered) as caught:
        ruleset.load(copy, expected_hash=registered)
    message = str(caught.value)
    assert "2026-11-v1" in message
    assert registered in message
    assert actual in message
    assert isinstance(caught.value, RulesetError)


def test_load_refuses_something_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(RulesetError, match="not a ruleset directory"):
        ruleset.load(tmp_path / "absent")


def _edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        text = (directory / name).read_text()
        assert old in text, f"{old!r} not in {name}"
        (directory / name).write_text(text.replace(old, new, 1))

    return change


def _manifest(**changes: object) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        manifest = json.loads((directory / "manifest.json").read_text())
        for key, value in changes.items():
            if value is None:
                del manifest[key]
            else:
                manifest[key] = value
        (directory / "manifest.json").write_text(json.dumps(manifest))

    return change


def _append(line: str) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        with (directory / "policy.csv").open("a") as policy:
            policy.write(line + "\n")

    return change


def _reasons(change: Callable[[dict[str, dict[str, str]]], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        reasons = json.loads((directory / "reasons.json").read_text())
        change(reasons)
        (directory / "reasons.json").write_text(json.dumps(reasons))

    return edit


BET = "p, extra, bet.place, {cond}, deny, underage"
MALFORMED = {
    "unknown reason code": (
        _append("p, extra, bet.place, True, deny, no_such_reason"),
        "line 6[0-9]: rule extra: unknown reason code 'no_such_reason'",
    ),
    "rule without a reason": (
        _append("p, extra, bet.place, True, deny, "),
        "rule extra: the rule has no reason code",
    ),
    "unknown effect": (
        _append("p, extra, bet.place, True, permit, ok"),
        "rule extra: unknown effect 'permit'",
    ),
    "duplicate rule id": (
        _append("p, allow-deposit, deposit, True, allow, ok"),
        r"duplicate rule id 'allow-deposit' \(first on line \d+\)",
    ),
    "too few fields": (_append("p, extra, bet.place, True, deny"), "found 4 fields"),
    "not a p line": (_append("g, alice, admin"), "not a `p, ...` rule"),
    "unbalanced brackets": (_append(BET.format(cond="(r.sub.age_years < 18))")), "unbalanced"),
    "undeclared fact": (
        _append(BET.format(cond="r.sub.date_of_birth == '2001-01-01'")),
        "fact 'date_of_birth' is not declared",
    ),
    "call in a condition": (
        _append(BET.format(cond="len(r.sub.age_years) > 1")),
        "Call is not allowed",
    ),
    "unknown name": (_append(BET.format(cond="age_years < 18")), "unknown name 'age_years'"),
    "bare subject": (_append(BET.format(cond="r.sub == 1")), "r.sub must be followed"),
    "non-boolean condition": (
        _append(BET.format(cond="r.sub.age_years + 1")),
        "must be a boolean expression",
    ),
    "ill-typed condition": (
        _append(BET.format(cond="r.sub.age_years < 'eighteen'")),
        "does not evaluate on well-typed facts",
    ),
    "float literal": (_append(BET.format(cond="r.sub.age_years < 18.5")), "literal 18.5"),
    "syntax error": (_append(BET.format(cond="r.sub.age_years <")), "not an expression"),
    "action without an allow rule": (
        _append("p, deny-payout, payout, True, deny, zone_off"),
        "no allow rule for payout",
    ),
    "unknown category": (
        _reasons(lambda r: r["ok"].update(category="marketing")),
        "reasons.json: ok: category must be one of",
    ),
    "reason without text": (_reasons(lambda r: r["ok"].pop("en")), "ok: en must be"),
    "no no_rule reason": (_reasons(lambda r: r.pop("no_rule")), "must define 'no_rule'"),
    "manifest version differs from the directory": (
        _manifest(version="2026-12-v1"),
        "says version '2026-12-v1'",
    ),
    "bad jurisdiction": (_manifest(jurisdiction="Malta"), "ISO 3166-1 alpha-2"),
    "effective date without a zone": (
        _manifest(effective_from="2026-11-25T00:00:00"),
        "must carry a time zone",
    ),
    "effective date not a date": (_manifest(effective_from="soon"), "not an ISO 8601"),
    "no description": (_manifest(description=None), "description must be a non-empty string"),
    "fact of an unknown type": (
        _manifest(facts={"age_years": {"type": "float", "doc": "age"}}),
        "age_years: type must be one of",
    ),
    "manifest not JSON": (_edit("manifest.json", "{", "["), "manifest.json is not valid JSON"),
    "missing file": (lambda d: (d / "reasons.json").unlink(), "missing reasons.json"),
    "allow-overrides model": (
        _edit("model.conf", " && !some(where (p.eft == deny))", ""),
        "model.conf must be the deny-overrides ABAC model",
    ),
    "different matcher": (
        _edit("model.conf", "r.act == p.act && eval(p.cond)", "eval(p.cond)"),
        "model.conf must be the deny-overrides ABAC model",
    ),
}


@pytest.mark.parametrize(("change", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_rulesets_are_refused(
    copy: Path, change: Callable[[Path], None], message: str
) -> None:
    change(copy)
    with pytest.raises(RulesetError, match=message) as caught:
        ruleset.load(copy)
    assert "2026-11-v1" in str(caught.value)
    assert not isinstance(caught.value, RulesetTampered)


def test_comments_and_commas_inside_brackets_read_as_pycasbin_reads_them(copy: Path) -> None:
    _append("# a comment line, with commas")(copy)
    _append(BET.format(cond="r.sub.age_years in (16, 17)"))(copy)
    extra = ruleset.load(copy).rules[-1]
    assert (extra.id, extra.condition, extra.reason_code) == (
        "extra",
        "r.sub.age_years in (16, 17)",
        "underage",
    )


def test_referenced_facts_and_casbin_expression() -> None:
    condition = "r.sub.due_diligence_reached == True && !r.sub.kyc_verified || r.sub.x != 1"
    assert ruleset.casbin_expression(condition) == (
        "r_sub.due_diligence_reached == True and not r_sub.kyc_verified or r_sub.x != 1"
    )
    assert ruleset.referenced_facts(condition) == {"due_diligence_reached", "kyc_verified", "x"}


# -- appeals.json (2026-12-v1 on): which refusals a player may appeal, and why not -------------

APPEALS_SHIPPED = ruleset.RULESETS / "2026-12-v1"
NOT_APPEALABLE = {  # the reasons a player cannot appeal, and the key of the words saying why
    "zone_off": "paused",
    "underage": "underage",
    "jurisdiction_blocked": "jurisdiction",
    "self_excluded": "your_choice",
    "timed_out": "your_choice",
    "destination_denied": "sanctions",
}


def test_every_refusal_of_the_appeals_ruleset_says_whether_it_may_be_appealed() -> None:
    loaded = ruleset.load(APPEALS_SHIPPED)
    v3 = ruleset.load(ruleset.RULESETS / "2026-11-v3")
    for mine, theirs in zip(loaded.rules, v3.rules, strict=True):  # v3's, and overrides
        lifted = mine.effect == "deny" and loaded.appealability([mine.id]).appealable
        clause = f" && !(' {mine.id} ' in r.sub.overridden_rules)"
        assert mine == (
            dataclasses.replace(theirs, condition=theirs.condition + clause) if lifted else theirs
        ), mine.id
    assert loaded.reasons == v3.reasons
    assert loaded.appeals is not None
    for rule in loaded.rules:
        if rule.effect == "allow":
            continue
        found = loaded.appealability([rule.id])
        assert found.appealable == (rule.reason_code not in NOT_APPEALABLE), rule.id
        if not found.appealable:
            assert found.rule_id == rule.id
            assert found.why_not is not None
            assert found.why_not["en"].strip()
    for appealable in ("deny-withdrawal-kyc", "deny-withdrawal-aml-hold",
                       "deny-deposit-due-diligence", "deny-bet-place-loss-limit-24h"):  # fmt: skip
        assert loaded.appealability([appealable]).appealable
    assert loaded.appealability([]).appealable  # no rule explains it: a person should look


def test_an_override_lifts_exactly_the_rules_it_names_and_none_that_may_not_be_appealed() -> None:
    engine = Engine(ruleset.load(APPEALS_SHIPPED))
    withdrawal = {
        "zone_off": False, "kyc_verified": False, "aml_hold": True, "destination_denied": False,
        "due_diligence_total_eur_minor": 0, "due_diligence_threshold_eur_minor": 200_000,
        "overridden_rules": "",
    }  # fmt: skip

    def refused_by(**changes: object) -> tuple[str, ...]:
        return engine.decide("withdrawal", withdrawal | changes).rule_ids

    assert refused_by() == ("deny-withdrawal-kyc", "deny-withdrawal-aml-hold")
    assert refused_by(overridden_rules=" deny-withdrawal-kyc ") == ("deny-withdrawal-aml-hold",)
    assert refused_by(overridden_rules=" deny-withdrawal-kyc-x ") == (
        "deny-withdrawal-kyc", "deny-withdrawal-aml-hold",
    )  # fmt: skip
    both = " deny-withdrawal-aml-hold deny-withdrawal-kyc "
    assert engine.decide("withdrawal", withdrawal | {"overridden_rules": both}).allowed
    assert refused_by(overridden_rules=both, destination_denied=True) == (
        "deny-withdrawal-destination-denied",
    )  # a sanctions-like hit may not be appealed, so no override lifts it
    needs = engine.needs("bet.place")
    assert "overridden_rules" in needs  # the appealable limits read it
    self_excluded = [r for r in engine.ruleset.rules if r.id == "deny-bet-place-self-excluded"]
    assert "overridden_rules" not in self_excluded[0].condition


def test_one_rule_that_may_not_be_appealed_closes_the_appeal_of_the_whole_refusal() -> None:
    loaded = ruleset.load(APPEALS_SHIPPED)
    found = loaded.appealability(["deny-bet-place-wager-limit-24h", "deny-bet-place-timed-out"])
    assert (found.appealable, found.rule_id) == (False, "deny-bet-place-timed-out")
    assert "You chose this break yourself" in (found.why_not or {})["en"]


def test_rulesets_from_before_appeals_let_every_refusal_be_appealed() -> None:
    for version in ("2026-11-v1", "2026-11-v2", "2026-11-v3"):
        loaded = ruleset.load(ruleset.RULESETS / version)
        assert loaded.appeals is None
        for rule in loaded.rules:
            assert loaded.appealability([rule.id]).appealable


@pytest.fixture
def appeals_copy(tmp_path: Path) -> Path:
    target = tmp_path / "2026-12-v1"
    shutil.copytree(APPEALS_SHIPPED, target)
    return target


def _appeals(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        appeals = json.loads((directory / "appeals.json").read_text())
        change(appeals)
        (directory / "appeals.json").write_text(json.dumps(appeals))

    return edit


def _rules_of(appeals: dict[str, object]) -> dict[str, dict[str, object]]:
    rules = appeals["rules"]
    assert isinstance(rules, dict)
    return rules


MALFORMED_APPEALS = {
    "a deny rule left out": (
        _appeals(lambda a: _rules_of(a).pop("deny-withdrawal-kyc")),
        r"missing \['deny-withdrawal-kyc'\]",
    ),
    "an allow rule listed": (
        _appeals(lambda a: _rules_of(a).update({"allow-deposit": {"appealable": True}})),
        r"not deny rules of policy.csv \['allow-deposit'\]",
    ),
    "not appealable without saying why": (
        _appeals(lambda a: _rules_of(a)["deny-withdrawal-kyc"].update(appealable=False)),
        "rules: deny-withdrawal-kyc: a rule that may not be appealed says why",
    ),
    "why not names no words": (
        _appeals(lambda a: _rules_of(a)["deny-bet-place-underage"].update(why_not="because")),
        "why_not must be one of",
    ),
    "appealable but saying why not": (
        _appeals(lambda a: _rules_of(a)["deny-withdrawal-kyc"].update(why_not="paused")),
        "an appealable rule has no why_not",
    ),
    "appealable not a bool": (
        _appeals(lambda a: _rules_of(a)["deny-withdrawal-kyc"].update(appealable="yes")),
        "appealable must be true or false",
    ),
    "words without English": (
        _appeals(lambda a: a.update(why_not={"paused": {"de": "Pause"}})),
        "why_not: paused: en must be",
    ),
    "no_rule missing": (_appeals(lambda a: a.pop("no_rule")), "no_rule: an object"),
    "unknown key": (_appeals(lambda a: a.update(window_days=30)), "unknown keys"),
    "not JSON": (_edit("appeals.json", "{", "["), "appeals.json is not valid JSON"),
}


@pytest.mark.parametrize(
    ("change", "message"), MALFORMED_APPEALS.values(), ids=MALFORMED_APPEALS.keys()
)
def test_a_malformed_appeals_file_is_refused(
    appeals_copy: Path, change: Callable[[Path], None], message: str
) -> None:
    change(appeals_copy)
    with pytest.raises(RulesetError, match=message) as caught:
        ruleset.load(appeals_copy)
    assert "2026-12-v1: appeals.json" in str(caught.value)
