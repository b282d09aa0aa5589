"""Policy decisions: pycasbin decides, and the decision explains itself.

`Engine(ruleset).decide(action, facts)` asks pycasbin's `enforce_ex` for the effect (pycasbin is
the enforcer of record) and, to name every rule that produced it, evaluates each candidate
rule's condition, rewritten exactly as pycasbin rewrites it, on the same facts; if the two ever
disagree, `EngineDisagreement` is raised instead of a decision, because that is a bug.

Facts are a flat mapping of the names the ruleset's manifest declares to bool, int or str
values: derived flags, amounts in minor units and codes. Undeclared names and other types are
refused, so no personal data (names, birth dates, addresses) can reach a rule or a decision
record; error messages name the fact, never its value.

Speed: pycasbin evaluates every rule of an enforcer in turn, and for an `eval()` matcher it
re-parses the matcher with the rule's condition each time. So `Engine` builds one enforcer per
action, and per (action, jurisdiction) when rules pin `r.sub.jurisdiction == 'XX'` as a
top-level `&&` term (such a rule cannot match a request from elsewhere, so leaving it out of
the other jurisdictions' enforcers changes no decision); and each enforcer keeps the parsed
expressions it has built. Everything is built in `__init__`; `decide` only looks up and
evaluates. `NaiveEngine` is the same with a single enforcer over all rules: the baseline.
"""

import ast
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace

import casbin
from casbin.model import Model
from casbin.util import escape_assertion, replace_eval

from policies.ruleset import (
    FACT_TYPES,
    NO_RULE,
    Rule,
    Ruleset,
    casbin_expression,
    casbin_rewrite,
    referenced_facts,
)

JURISDICTION = "jurisdiction"  # the fact an enforcer may be partitioned by


class UnknownAction(ValueError):
    """The ruleset has no rule for this action."""


class InvalidFacts(ValueError):
    """A fact is undeclared, of the wrong type, or missing for the action's rules."""


class EngineDisagreement(RuntimeError):
    """pycasbin's effect and the per-rule explanation differ: a bug, never a decision."""


@dataclass(frozen=True)
class Decision:
    action: str
    allowed: bool
    effect: str
    rule_ids: tuple[str, ...]  # the rules that produced the effect: matching denies, else allows
    reason_code: str
    reason: str
    category: str
    version: str
    ruleset_hash: str


_NO_BUILTINS: dict[str, object] = {"__builtins__": {}}


class _Matcher:
    """One matcher expression pycasbin evaluates, compiled to Python bytecode once.

    It is safe to compile: the ruleset loader admits only the model's fixed matcher
    `r.act == p.act && eval(p.cond)` and conditions made of comparisons, and/or/not, + - * and
    literals over `r.sub.<declared fact>` (no calls, subscripts or other names); the ruleset is
    pinned by its hash; and the code runs without builtins. For these expressions Python and
    SimpleEval compute the same values, which the property tests check against stock pycasbin.
    """

    __slots__ = ("code",)

    def __init__(self, expression: str, name: str) -> None:
        self.code = compile(casbin_rewrite(expression), name, "eval")

    def eval(self, names: Mapping[str, object]) -> object:
        return eval(self.code, _NO_BUILTINS, names)  # noqa: S307 - see the class docstring: whitelisted, hash-pinned, no builtins


class _Enforcer(casbin.Enforcer):  # type: ignore[misc]  # pycasbin ships no type information
    """pycasbin's enforcer, evaluating its matcher for each rule as compiled Python.

    Stock `enforce_ex` substitutes each rule's condition into the matcher and builds a new
    SimpleEval, with an `ast.parse`, for every rule on every call, then walks the tree in
    Python: ~100 µs a rule here, most of a decision. The text depends only on the rule, so this
    enforcer compiles each rule's text once, keyed by exactly the string `enforce_ex` builds
    (util.replace_eval of the model's matcher with util.escape_assertion of the condition), and
    hands that back from `_get_expression`. pycasbin still walks its policy, applies the
    matcher and the effect, and names the rule; an expression it builds that is not among the
    compiled ones falls back to its own SimpleEval."""

    def __init__(self, model: Model, rules: tuple[Rule, ...]) -> None:
        matcher: str = model["m"]["m"].value
        self._matchers = {
            replace_eval(matcher, [escape_assertion(rule.condition)]): _Matcher(
                replace_eval(matcher, [escape_assertion(rule.condition)]), f"<rule {rule.id}>"
            )
            for rule in rules
        }
        super().__init__(model)

    def _get_expression(self, expr: str, functions: object = None) -> object:
        found = self._matchers.get(expr)
        return found if found is not None else super()._get_expression(expr, functions)


def _condition(rule: Rule) -> Callable[[SimpleNamespace], object]:
    """The rule's condition, exactly as pycasbin rewrites it, as a Python function of r.sub.

    Compiled for the reasons `_Matcher` gives; a function of r.sub alone, because this pass
    runs beside pycasbin's for every candidate rule. Every decision checks its matches
    against pycasbin's effect and explanation."""
    source = f"lambda r_sub: ({casbin_expression(rule.condition)})"
    code = compile(source, f"<rule {rule.id}>", "eval")
    function: Callable[[SimpleNamespace], object] = eval(code, _NO_BUILTINS)  # noqa: S307 - see _Matcher: whitelisted, hash-pinned, no builtins
    return function


class _Partition:
    """One enforcer over some rules, with each rule's condition compiled for the explanation."""

    __slots__ = ("enforcer", "explain", "reason_codes")

    def __init__(self, model_text: str, rules: Iterable[Rule]) -> None:
        rules = tuple(rules)
        self.explain = tuple((rule, _condition(rule)) for rule in rules)
        self.reason_codes = {rule.id: rule.reason_code for rule in rules}
        self.enforcer: _Enforcer | None = None
        if rules:  # pycasbin refuses an eval() matcher over no rules; none can allow anyway
            model = Model()
            model.load_model_from_text(model_text)
            self.enforcer = _Enforcer(model, rules)
            self.enforcer.add_policies(
                [[r.id, r.action, r.condition, r.effect, r.reason_code] for r in rules]
            )


class _Base(ABC):
    """Fact checking and the decision itself; subclasses choose which enforcer decides."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._types = {name: FACT_TYPES[fact.type] for name, fact in ruleset.facts.items()}
        required: dict[str, set[str]] = {action: set() for action in ruleset.actions}
        for rule in ruleset.rules:
            required[rule.action] |= referenced_facts(rule.condition)
        self._required = {action: frozenset(names) for action, names in required.items()}

    @abstractmethod
    def _partition(self, action: str, facts: Mapping[str, object]) -> _Partition: ...

    def needs(self, action: str) -> frozenset[str]:
        """The facts the rules of `action` read (empty for an action without rules)."""
        return self._required.get(action, frozenset())

    def decide(self, action: str, facts: Mapping[str, object], *, locale: str = "en") -> Decision:
        needed = self._required.get(action)
        if needed is None:
            raise UnknownAction(f"ruleset {self.ruleset.version} has no rule for {action!r}")
        for name, value in facts.items():
            kind = self._types.get(name)
            if kind is None:
                raise InvalidFacts(f"fact {name!r} is not declared by {self.ruleset.version}")
            if type(value) is not kind:  # exact: a bool is not an amount, 0/1 is not a flag
                raise InvalidFacts(
                    f"fact {name!r} must be {kind.__name__}, not {type(value).__name__}"
                )
        missing = needed.difference(facts)
        if missing:
            raise InvalidFacts(f"{action} needs the facts {', '.join(sorted(missing))}")
        subject = SimpleNamespace(**facts)
        return self._decide(self._partition(action, facts), action, subject, locale)

    def _decide(
        self, partition: _Partition, action: str, subject: SimpleNamespace, locale: str
    ) -> Decision:
        allows: list[str] = []
        denies: list[str] = []
        for rule, condition in partition.explain:
            if rule.action == action and condition(subject):
                (allows if rule.effect == "allow" else denies).append(rule.id)
        allowed, explained = False, None
        if partition.enforcer is not None:
            result, row = partition.enforcer.enforce_ex(subject, action)
            allowed, explained = result is True, (str(row[0]) if row else None)
        decisive = denies or (allows if allowed else [])
        # pycasbin's explanation is the first matching deny (it stops there), else the last
        # matching allow, else nothing; its reason is the decision's.
        agrees = allowed == (bool(allows) and not denies) and (
            explained in decisive if decisive else explained is None
        )
        if not agrees:
            raise EngineDisagreement(
                f"{self.ruleset.version} {action}: pycasbin says allowed={allowed} by "
                f"{explained!r}, the rules matched allow={allows} deny={denies}"
            )
        reason_code = NO_RULE if explained is None else partition.reason_codes[explained]
        reason = self.ruleset.reasons[reason_code]
        return Decision(
            action=action,
            allowed=allowed,
            effect="allow" if allowed else "deny",
            rule_ids=tuple(decisive),
            reason_code=reason_code,
            reason=reason.get(locale) or reason["en"],
            category=reason["category"],
            version=self.ruleset.version,
            ruleset_hash=self.ruleset.content_hash,
        )


class Engine(_Base):
    """One enforcer per action, and per (action, jurisdiction) where rules pin one."""

    def __init__(self, ruleset: Ruleset) -> None:
        super().__init__(ruleset)
        self._partitions: dict[tuple[str, str | None], _Partition] = {}
        for action in ruleset.actions:
            rules = [rule for rule in ruleset.rules if rule.action == action]
            pins = {rule.id: jurisdiction_pin(rule.condition) for rule in rules}
            self._partitions[action, None] = _Partition(
                ruleset.model_text, (rule for rule in rules if pins[rule.id] is None)
            )
            for place in {pin for pin in pins.values() if pin is not None}:
                self._partitions[action, place] = _Partition(
                    ruleset.model_text, (rule for rule in rules if pins[rule.id] in (None, place))
                )

    def _partition(self, action: str, facts: Mapping[str, object]) -> _Partition:
        place = facts.get(JURISDICTION)
        if isinstance(place, str):
            found = self._partitions.get((action, place))
            if found is not None:
                return found
        return self._partitions[action, None]


class NaiveEngine(_Base):
    """A single enforcer over every rule: what `Engine` is measured against."""

    def __init__(self, ruleset: Ruleset) -> None:
        super().__init__(ruleset)
        self._all = _Partition(ruleset.model_text, ruleset.rules)

    def _partition(self, action: str, facts: Mapping[str, object]) -> _Partition:
        del action, facts  # one enforcer serves every request
        return self._all


def jurisdiction_pin(condition: str) -> str | None:
    """'XX' when the condition can only hold for `r.sub.jurisdiction == 'XX'` (the comparison
    alone, or one term of a top-level `&&`), else None."""
    body = ast.parse(casbin_expression(condition), mode="eval").body
    terms = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    for term in terms:
        if not (
            isinstance(term, ast.Compare) and len(term.ops) == 1 and isinstance(term.ops[0], ast.Eq)
        ):
            continue
        sides = (term.left, term.comparators[0])
        for fact, literal in (sides, sides[::-1]):
            if (
                isinstance(fact, ast.Attribute)
                and isinstance(fact.value, ast.Name)
                and fact.value.id == "r_sub"
                and fact.attr == JURISDICTION
                and isinstance(literal, ast.Constant)
                and isinstance(literal.value, str)
            ):
                return literal.value
    return None
