"""Versioned policy rulesets: a directory of files, loaded whole and pinned by a content hash.

A ruleset is `policies/rulesets/<version>/` holding `manifest.json` (version, jurisdiction,
effective date, description and the declared facts), `model.conf` (the pycasbin model),
`policy.csv` (the rules) and `reasons.json` (what each reason code says, and its category);
since 2026-12-v1 also `appeals.json` (whether each deny rule's refusals may be appealed, and
when not, why in words for the player). The hash covers every file in the directory, names
included, so a decision that records (version, hash) can be replayed against exactly the rules
that made it, and `load` refuses a directory whose files changed after its hash was registered.

Loading reads the directory once into memory and both hashes and parses that one snapshot, so a
file rewritten between the two cannot slip through. Everything a decision relies on is checked
here, once, rather than at decision time: the model has the one shape the engine evaluates,
every rule names a known effect and reason, every condition is a boolean expression over
declared facts, and every action has an explicit allow rule.
"""

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

from casbin.model import Model
from casbin.persist.adapter import load_policy_line
from casbin.util import SimpleEval, escape_assertion

RULESETS = Path(__file__).resolve().parent / "rulesets"
MANIFEST, MODEL, POLICY, REASONS = "manifest.json", "model.conf", "policy.csv", "reasons.json"
APPEALS = "appeals.json"  # optional: a ruleset without it lets every refusal be appealed
NO_RULE = "no_rule"  # the reason when no rule matches; every ruleset must say it in words
CATEGORIES = frozenset(
    {"responsible_gambling", "kyc", "aml", "jurisdiction", "operations", "access", "ok"},
)
FACT_TYPES: dict[str, type] = {"bool": bool, "int": int, "str": str}
_EFFECTS: dict[str, Literal["allow", "deny"]] = {"allow": "allow", "deny": "deny"}

# The one model shape the engine knows how to explain (it re-evaluates `eval(p.cond)` per rule
# to list every match); these are the values as pycasbin stores them, dots already escaped.
_REQUEST = ["r_sub", "r_act"]
_POLICY = ["p_id", "p_act", "p_cond", "p_eft", "p_reason"]
_EFFECT = "some(where (p_eft == allow)) && !some(where (p_eft == deny))"
_MATCHER = "r_act == p_act && eval(p_cond)"

_SUBJECT = "r_sub"  # `r.sub` after pycasbin escapes the dots
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
_JURISDICTION = re.compile(r"(\*|[A-Z]{2}|console)\Z")  # console: the officers' console
_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE,
    ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Tuple, ast.Constant, ast.Attribute, ast.Name,
    ast.Load,
)  # fmt: skip


class RulesetError(ValueError):
    """The ruleset directory is malformed; the message names the version and the file."""


class RulesetTampered(RulesetError):
    """The files no longer hash to the value registered for this version."""


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    condition: str
    effect: Literal["allow", "deny"]
    reason_code: str


@dataclass(frozen=True)
class Fact:
    name: str
    type: Literal["bool", "int", "str"]
    doc: str


@dataclass(frozen=True)
class Appealability:
    """Whether a refusal may be appealed; when not, why (by locale, `en` always) and which
    rule says so."""

    appealable: bool
    why_not: dict[str, str] | None = None
    rule_id: str | None = None


APPEALABLE = Appealability(appealable=True)


@dataclass(frozen=True)
class Appeals:
    """`appeals.json`: per deny rule, and for a refusal no rule explains (`no_rule`)."""

    rules: dict[str, Appealability]
    no_rule: Appealability


@dataclass(frozen=True)
class Ruleset:
    version: str
    jurisdiction: str
    effective_from: datetime
    description: str
    model_text: str
    rules: tuple[Rule, ...]
    reasons: dict[str, dict[str, str]]
    content_hash: str
    facts: dict[str, Fact]
    appeals: Appeals | None = None  # None: a ruleset from before appeals (2026-11-*)

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rule.action for rule in self.rules))

    def appealability(self, rule_ids: list[str] | tuple[str, ...]) -> Appealability:
        """Whether a refusal by these deny rules (none: `no_rule`) may be appealed: only when
        every one of them may; otherwise the first that may not says why. A ruleset without
        `appeals.json` (those before 2026-12-v1) said nothing, and nothing takes the right of
        appeal away without saying why: every refusal of theirs may be appealed."""
        if self.appeals is None:
            return APPEALABLE
        if not rule_ids:
            return self.appeals.no_rule
        for rule_id in rule_ids:
            found = self.appeals.rules.get(rule_id, APPEALABLE)
            if not found.appealable:
                return found
        return APPEALABLE


def content_hash(directory: Path) -> str:
    """`sha256:<hex>` over every file under `directory` in sorted relative-path order, each as
    8-byte big-endian length + UTF-8 path, then 8-byte length + contents: the lengths keep
    (name, contents) boundaries unambiguous, and the path makes renames and moves count."""
    return _digest(_snapshot(directory))


def load(directory: Path, *, expected_hash: str | None = None) -> Ruleset:
    files = _snapshot(directory)
    actual = _digest(files)
    version = directory.name
    if expected_hash is not None and expected_hash != actual:
        raise RulesetTampered(
            f"ruleset {version} was registered with {expected_hash} but its files hash to "
            f"{actual}: refusing to load it"
        )
    missing = [name for name in (MANIFEST, MODEL, POLICY, REASONS) if name not in files]
    if missing:
        raise RulesetError(f"ruleset {version}: missing {', '.join(missing)}")
    text = {name: _text(version, name, files[name]) for name in (MANIFEST, MODEL, POLICY, REASONS)}
    manifest = _json_object(version, MANIFEST, text[MANIFEST])
    facts = _facts(version, manifest.get("facts"))
    reasons = _reasons(version, _json_object(version, REASONS, text[REASONS]))
    model = _model(version, text[MODEL])
    rules = _rules(version, model, text[POLICY], facts, reasons)
    appeals = (
        _appeals(
            version, _json_object(version, APPEALS, _text(version, APPEALS, files[APPEALS])), rules
        )
        if APPEALS in files
        else None
    )
    jurisdiction = _jurisdiction(version, manifest.get("jurisdiction"))
    if (jurisdiction == "console") != version.startswith(CONSOLE_PREFIX):
        raise RulesetError(
            f"ruleset {version}: a console ruleset is named {CONSOLE_PREFIX}... and says"
            " jurisdiction 'console'; no other ruleset does either"
        )
    return Ruleset(
        version=_manifest_version(version, manifest.get("version")),
        jurisdiction=jurisdiction,
        effective_from=_effective_from(version, manifest.get("effective_from")),
        description=_string(version, f"{MANIFEST}: description", manifest.get("description")),
        model_text=text[MODEL],
        rules=rules,
        reasons=reasons,
        content_hash=actual,
        facts=facts,
        appeals=appeals,
    )


def available(root: Path = RULESETS) -> list[str]:
    """Versions under `root`: the directories holding a manifest, in name order."""
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if (entry / MANIFEST).is_file())


CONSOLE_PREFIX = "console-"  # a console ruleset's version (its manifest says "console" too)


def newest(*, console: bool, root: Path = RULESETS) -> str:
    """The newest version of the money rulesets, or of the console's."""
    return [v for v in available(root) if v.startswith(CONSOLE_PREFIX) == console][-1]


def casbin_expression(condition: str) -> str:
    """A rule's condition as pycasbin evaluates it inside the matcher: dots escaped
    (`r.sub.x` -> `r_sub.x`, util.escape_assertion), then rewritten by `casbin_rewrite`. The
    engine evaluates exactly this to list matches."""
    escaped: str = escape_assertion(condition)
    return casbin_rewrite(escaped)


def casbin_rewrite(expression: str) -> str:
    """`&&`, `||` and `!` as Python's and/or/not, as CoreEnforcer._get_expression rewrites a
    matcher before it parses it."""
    expression = expression.replace("&&", "and").replace("||", "or")
    return re.sub(r"!(?!=)", "not ", expression)


def referenced_facts(condition: str) -> frozenset[str]:
    """The fact names a (validated) condition reads."""
    tree = ast.parse(casbin_expression(condition), mode="eval")
    return frozenset(
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == _SUBJECT
    )


def _snapshot(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise RulesetError(f"{directory}: not a ruleset directory")
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file()
    }


def _digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        for part in (name.encode(), files[name]):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return f"sha256:{digest.hexdigest()}"


def _text(version: str, name: str, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise RulesetError(f"ruleset {version}: {name} is not UTF-8 ({exc})") from exc


def _json_object(version: str, name: str, text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesetError(f"ruleset {version}: {name} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise RulesetError(f"ruleset {version}: {name} must be a JSON object")
    return value


def _string(version: str, where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RulesetError(f"ruleset {version}: {where} must be a non-empty string")
    return value


def _manifest_version(version: str, value: object) -> str:
    # The directory name is the version a caller asks for; a manifest saying otherwise was
    # copied without being edited.
    if value != version:
        raise RulesetError(
            f"ruleset {version}: {MANIFEST} says version {value!r}, the directory is {version!r}"
        )
    return version


def _jurisdiction(version: str, value: object) -> str:
    if not isinstance(value, str) or not _JURISDICTION.match(value):
        raise RulesetError(
            f"ruleset {version}: {MANIFEST}: jurisdiction must be an ISO 3166-1 alpha-2 code, "
            f"'*' or 'console', not {value!r}"
        )
    return value


def _effective_from(version: str, value: object) -> datetime:
    where = f"ruleset {version}: {MANIFEST}: effective_from"
    if not isinstance(value, str):
        raise RulesetError(f"{where} must be an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RulesetError(f"{where} is not an ISO 8601 timestamp: {value!r}") from exc
    if moment.tzinfo is None:
        raise RulesetError(f"{where} must carry a time zone: {value!r}")
    return moment


def _facts(version: str, value: object) -> dict[str, Fact]:
    where = f"ruleset {version}: {MANIFEST}: facts"
    if not isinstance(value, dict) or not value:
        raise RulesetError(f"{where} must map each fact name to its type and meaning")
    facts: dict[str, Fact] = {}
    for name, spec in value.items():
        if not _NAME.match(name):
            raise RulesetError(f"{where}: {name!r} is not a lower_snake_case name")
        kind = spec.get("type") if isinstance(spec, dict) else None
        doc = spec.get("doc") if isinstance(spec, dict) else None
        if kind not in FACT_TYPES:
            raise RulesetError(f"{where}: {name}: type must be one of {sorted(FACT_TYPES)}")
        facts[name] = Fact(name, kind, _string(version, f"{MANIFEST}: facts: {name}: doc", doc))
    return facts


def _reasons(version: str, value: dict[str, object]) -> dict[str, dict[str, str]]:
    reasons: dict[str, dict[str, str]] = {}
    for code, entry in value.items():
        where = f"ruleset {version}: {REASONS}: {code}"
        if not _NAME.match(code):
            raise RulesetError(f"{where}: a reason code is lower_snake_case")
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise RulesetError(f"{where}: must map 'en', 'category' and locales to strings")
        _string(version, f"{REASONS}: {code}: en", entry.get("en"))
        if entry.get("category") not in CATEGORIES:
            raise RulesetError(f"{where}: category must be one of {sorted(CATEGORIES)}")
        reasons[code] = dict(entry)
    if NO_RULE not in reasons:
        raise RulesetError(
            f"ruleset {version}: {REASONS} must define {NO_RULE!r}, the reason given when no "
            "rule matches"
        )
    return reasons


def _appeals(version: str, value: dict[str, object], rules: tuple[Rule, ...]) -> Appeals:
    """Every deny rule listed, no other; each appealable, or not with a reason in words."""
    where = f"ruleset {version}: {APPEALS}"
    unknown = sorted(set(value) - {"_about", "why_not", "no_rule", "rules"})
    if unknown:
        raise RulesetError(f"{where}: unknown keys {unknown}")
    why_not = _why_not(where, value.get("why_not"))
    listed = value.get("rules")
    if not isinstance(listed, dict):
        raise RulesetError(f"{where}: rules must map each deny rule id to its appealability")
    deny = [rule.id for rule in rules if rule.effect == "deny"]
    missing = [rule_id for rule_id in deny if rule_id not in listed]
    extra = sorted(set(listed) - set(deny))
    if missing or extra:
        raise RulesetError(
            f"{where}: rules must list every deny rule and no other; missing {missing}, "
            f"not deny rules of {POLICY} {extra}"
        )
    return Appeals(
        rules={
            rule_id: _appealability(f"{where}: rules: {rule_id}", listed[rule_id], why_not, rule_id)
            for rule_id in deny
        },
        no_rule=_appealability(f"{where}: no_rule", value.get("no_rule"), why_not, None),
    )


def _why_not(where: str, texts: object) -> dict[str, dict[str, str]]:
    if not isinstance(texts, dict):
        raise RulesetError(f"{where}: why_not must map each key to its words by locale")
    why_not: dict[str, dict[str, str]] = {}
    for key, words in texts.items():
        if not _NAME.match(key):
            raise RulesetError(f"{where}: why_not: {key!r} is not a lower_snake_case key")
        if not isinstance(words, dict) or not all(isinstance(v, str) for v in words.values()):
            raise RulesetError(f"{where}: why_not: {key}: must map locales to strings")
        if not str(words.get("en", "")).strip():
            raise RulesetError(f"{where}: why_not: {key}: en must be a non-empty string")
        why_not[key] = dict(words)
    return why_not


def _appealability(
    where: str, raw: object, why_not: dict[str, dict[str, str]], rule_id: str | None
) -> Appealability:
    if not isinstance(raw, dict) or not set(raw) <= {"appealable", "why_not"}:
        raise RulesetError(f"{where}: an object with appealable (and why_not)")
    appealable, because = raw.get("appealable"), raw.get("why_not")
    if not isinstance(appealable, bool):
        raise RulesetError(f"{where}: appealable must be true or false")
    if appealable:
        if because is not None:
            raise RulesetError(f"{where}: an appealable rule has no why_not")
        return APPEALABLE
    if not isinstance(because, str) or because not in why_not:
        raise RulesetError(
            f"{where}: a rule that may not be appealed says why: why_not must be "
            f"one of {sorted(why_not)}, not {because!r}"
        )
    return Appealability(appealable=False, why_not=why_not[because], rule_id=rule_id)


def _model(version: str, text: str) -> Model:
    model = Model()
    try:
        model.load_model_from_text(text)
    except RuntimeError as exc:
        raise RulesetError(f"ruleset {version}: {MODEL}: {exc}") from exc

    def value(section: str, attribute: str) -> object:
        assertion = (model[section] or {}).get(section)
        return None if assertion is None else getattr(assertion, attribute)

    shape = (
        (value("r", "tokens"), _REQUEST),
        (value("p", "tokens"), _POLICY),
        (value("e", "value"), _EFFECT),
        (" ".join(str(value("m", "value")).split()), _MATCHER),
        (model["g"], None),
    )
    if any(found != wanted for found, wanted in shape):
        raise RulesetError(
            f"ruleset {version}: {MODEL} must be the deny-overrides ABAC model: request "
            "(sub, act), policy (id, act, cond, eft, reason), effect allow-and-no-deny, "
            "matcher `r.act == p.act && eval(p.cond)`, no roles"
        )
    return model


def _rules(
    version: str,
    model: Model,
    text: str,
    facts: dict[str, Fact],
    reasons: dict[str, dict[str, str]],
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for number, fields in _policy_lines(version, model, text):
        where = f"ruleset {version}: {POLICY} line {number}"
        rule = _rule(where, fields, facts, reasons)
        if rule.id in seen:
            raise RulesetError(
                f"{where}: duplicate rule id {rule.id!r} (first on line {seen[rule.id]})"
            )
        seen[rule.id] = number
        rules.append(rule)
    if not rules:
        raise RulesetError(f"ruleset {version}: {POLICY} holds no rules")
    unallowed = sorted(
        {rule.action for rule in rules} - {rule.action for rule in rules if rule.effect == "allow"}
    )
    if unallowed:
        raise RulesetError(
            f"ruleset {version}: no allow rule for {', '.join(unallowed)}: every action needs "
            "an explicit allow rule"
        )
    return tuple(rules)


def _policy_lines(version: str, model: Model, text: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each rule. pycasbin's own line reader splits the fields and
    skips blank and `#` lines, so a condition holding commas inside brackets reads here exactly
    as pycasbin's file adapter would read it."""
    loaded: list[list[str]] = model["p"]["p"].policy
    lines: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"ruleset {version}: {POLICY} line {number}"
        before = len(loaded)
        try:
            load_policy_line(stripped, model)
        except IndexError as exc:
            raise RulesetError(f"{where}: unbalanced brackets") from exc
        if len(loaded) != before + 1:
            raise RulesetError(f"{where}: not a `p, ...` rule")
        if len(loaded[-1]) != len(_POLICY):
            raise RulesetError(
                f"{where}: expected rule_id, action, condition, effect, reason_code; "
                f"found {len(loaded[-1])} fields"
            )
        lines.append((number, loaded[-1]))
    return lines


def _rule(
    where: str, fields: list[str], facts: dict[str, Fact], reasons: dict[str, dict[str, str]]
) -> Rule:
    rule_id, action, condition, effect, reason_code = fields
    if not _RULE_ID.match(rule_id):
        raise RulesetError(f"{where}: rule id {rule_id!r} is not lower-case-with-dashes")
    where = f"{where}: rule {rule_id}"
    if not _ACTION.match(action):
        raise RulesetError(f"{where}: {action!r} is not an action name")
    checked = _EFFECTS.get(effect)
    if checked is None:
        raise RulesetError(f"{where}: unknown effect {effect!r} (allow or deny)")
    if not reason_code:
        raise RulesetError(f"{where}: the rule has no reason code")
    if reason_code not in reasons:
        raise RulesetError(f"{where}: unknown reason code {reason_code!r} (not in {REASONS})")
    problem = _condition_problem(condition, facts)
    if problem:
        raise RulesetError(f"{where}: condition {condition!r}: {problem}")
    return Rule(rule_id, action, condition, checked, reason_code)


def _condition_problem(condition: str, facts: dict[str, Fact]) -> str | None:
    """Why `condition` is unfit, or None. Only comparisons, boolean logic and + - * over
    declared facts and literals are accepted, the whole must be boolean (pycasbin refuses a
    matcher yielding anything else), and it must evaluate on well-typed facts: a typo such as
    `r.sub.age_years < '18'` is caught here, not at a player's bet."""
    expression = casbin_expression(condition)
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        return f"not an expression ({exc.msg})"
    subjects: set[int] = set()
    for node in ast.walk(tree):  # parents before children: r.sub is seen as an attribute first
        problem = _node_problem(node, facts, subjects)
        if problem:
            return problem
    if not _is_boolean(tree.body, facts):
        return "must be a boolean expression (a comparison, and/or/not, or a bool fact)"
    zeros = {name: FACT_TYPES[fact.type]() for name, fact in facts.items()}
    try:
        SimpleEval(expression).eval({_SUBJECT: SimpleNamespace(**zeros)})
    except (TypeError, ValueError, ArithmeticError) as exc:
        return f"does not evaluate on well-typed facts ({exc})"
    return None


def _node_problem(node: ast.AST, facts: dict[str, Fact], subjects: set[int]) -> str | None:
    problem = None
    if not isinstance(node, _NODES):
        problem = f"{type(node).__name__} is not allowed in a condition"
    elif isinstance(node, ast.Attribute):
        if not (isinstance(node.value, ast.Name) and node.value.id == _SUBJECT):
            problem = "only r.sub.<fact> may be read"
        elif node.attr not in facts:
            problem = f"fact {node.attr!r} is not declared in {MANIFEST}"
        subjects.add(id(node.value))
    elif isinstance(node, ast.Name) and id(node) not in subjects:
        problem = (
            "r.sub must be followed by a fact name"
            if node.id == _SUBJECT
            else f"unknown name {node.id!r}"
        )
    elif isinstance(node, ast.Constant) and type(node.value) not in FACT_TYPES.values():
        problem = f"literal {node.value!r} is not a bool, int or string"
    return problem


def _is_boolean(node: ast.expr, facts: dict[str, Fact]) -> bool:
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.BoolOp):
        return all(_is_boolean(value, facts) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not)
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.Attribute):
        return facts[node.attr].type == "bool"
    return False
