"""The rulesets as the console shows them: every version on disk (loaded, or why it cannot be),
where each is active and since when, the activations' history, and what changed between two
versions — a diff of the loaded rulesets (rules, facts, reasons), not of their files."""

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core import sql
from core.uow import UnitOfWork
from policies import ruleset
from policies.ruleset import Rule, Ruleset, RulesetError

HISTORY = 100  # activations shown, newest first: they are rare, but the page stays bounded


@dataclass(frozen=True)
class OnDisk:
    """A version under policies/rulesets/: its files' hash now, and the loaded ruleset or why
    it does not load (malformed, or changed while being read)."""

    version: str
    content_hash: str | None
    loaded: Ruleset | None
    error: str | None

    @property
    def kind(self) -> str:
        return "console" if self.version.startswith(ruleset.CONSOLE_PREFIX) else "money"


def on_disk() -> list[OnDisk]:
    return [_on_disk(version) for version in ruleset.available()]


def version_on_disk(version: str) -> OnDisk | None:
    """None unless `version` is one of the directories `available` lists (so a version from a
    URL never becomes a path of its own)."""
    return _on_disk(version) if version in ruleset.available() else None


def _on_disk(version: str) -> OnDisk:
    try:
        digest = ruleset.content_hash(ruleset.RULESETS / version)
        return OnDisk(version, digest, loaded(version, digest), None)
    except RulesetError as error:
        return OnDisk(version, None, None, str(error))


@functools.lru_cache(maxsize=64)
def loaded(version: str, digest: str) -> Ruleset:
    """The ruleset whose files hash to `digest` (RulesetTampered otherwise). Its content is
    immutable, so a process loads it once; a failure is not cached."""
    return ruleset.load(ruleset.RULESETS / version, expected_hash=digest)


@dataclass(frozen=True)
class Vocabulary:
    """What the rulesets on disk can say, for the decision search's choices and its checks."""

    versions: tuple[str, ...]
    actions: tuple[str, ...]
    reasons: tuple[str, ...]
    # reason codes some allow rule gives: every other reason is only ever a refusal's
    allowing_reasons: frozenset[str]
    # rule id -> the actions it governs and the effects it has, in any version
    rules: dict[str, tuple[frozenset[str], frozenset[str]]]


def vocabulary() -> Vocabulary:
    rulesets = [found.loaded for found in on_disk() if found.loaded is not None]
    rules: dict[str, tuple[set[str], set[str]]] = {}
    for rule in (rule for loaded in rulesets for rule in loaded.rules):
        actions, effects = rules.setdefault(rule.id, (set(), set()))
        actions.add(rule.action)
        effects.add(rule.effect)
    return Vocabulary(
        versions=tuple(loaded.version for loaded in rulesets),
        actions=tuple(sorted({action for loaded in rulesets for action in loaded.actions})),
        reasons=tuple(sorted({code for loaded in rulesets for code in loaded.reasons})),
        allowing_reasons=frozenset(
            rule.reason_code
            for loaded in rulesets
            for rule in loaded.rules
            if rule.effect == "allow"
        ),
        rules={rule: (frozenset(a), frozenset(e)) for rule, (a, e) in rules.items()},
    )


@dataclass(frozen=True)
class Activation:
    jurisdiction: str
    version: str
    content_hash: str
    activated_at: datetime
    activated_by: str
    reason: str
    # whether the version's files hash today as they did when activated (None: not on disk)
    files_match: bool | None


_ACTIVATION = (
    "SELECT jurisdiction, version, content_hash, activated_at, activated_by, reason"
    " FROM policy_activations"
)


async def active_where(uow: UnitOfWork) -> list[Activation]:
    """The newest activation of each jurisdiction (and of the console's scope): what decides
    there now. The table holds one row per activation, a handful a year."""
    rows = await sql.all_rows(
        uow,
        "SELECT DISTINCT ON (jurisdiction) jurisdiction, version, content_hash, activated_at,"
        " activated_by, reason FROM policy_activations ORDER BY jurisdiction, id DESC",
        {},
    )
    return _activations(rows)


async def history(uow: UnitOfWork) -> list[Activation]:
    rows = await sql.all_rows(uow, _ACTIVATION + " ORDER BY id DESC LIMIT %(n)s", {"n": HISTORY})
    return _activations(rows)


def _activations(rows: list[dict[str, Any]]) -> list[Activation]:
    hashes = {found.version: found.content_hash for found in on_disk()}
    return [
        Activation(
            jurisdiction=row["jurisdiction"],
            version=row["version"],
            content_hash=row["content_hash"],
            activated_at=row["activated_at"],
            activated_by=row["activated_by"],
            reason=row["reason"],
            files_match=hashes[row["version"]] == row["content_hash"]
            if row["version"] in hashes
            else None,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Changed:
    key: str
    fields: tuple[tuple[str, str, str], ...]  # (field, before, after)


@dataclass(frozen=True)
class Section:
    """One part of a ruleset (its rules, facts or reasons), compared by name."""

    title: str
    columns: tuple[str, ...]
    added: tuple[tuple[str, tuple[str, ...]], ...] = ()
    removed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    changed: tuple[Changed, ...] = ()

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class Diff:
    old: Ruleset
    new: Ruleset
    header: tuple[tuple[str, str, str], ...]  # manifest fields that changed
    sections: tuple[Section, ...]
    reordered: bool = field(default=False)  # rules kept by both, in another order

    @property
    def same(self) -> bool:
        return not self.header and not self.reordered and all(s.same for s in self.sections)


def diff(old: Ruleset, new: Ruleset) -> Diff:
    header = tuple(
        (name, before, after)
        for name, before, after in (
            ("jurisdiction", old.jurisdiction, new.jurisdiction),
            ("effective from", old.effective_from.isoformat(), new.effective_from.isoformat()),
            ("description", old.description, new.description),
            ("model", old.model_text.strip(), new.model_text.strip()),
        )
        if before != after
    )
    kept = [rule.id for rule in old.rules if rule.id in {r.id for r in new.rules}]
    return Diff(
        old,
        new,
        header,
        (
            _section(
                "Rules",
                ("action", "condition", "effect", "reason"),
                {rule.id: _rule(rule) for rule in old.rules},
                {rule.id: _rule(rule) for rule in new.rules},
            ),
            _section(
                "Facts",
                ("type", "meaning"),
                {name: (fact.type, fact.doc) for name, fact in old.facts.items()},
                {name: (fact.type, fact.doc) for name, fact in new.facts.items()},
            ),
            _section(
                "Reasons",
                ("category", "in words"),
                {code: _reason(words) for code, words in old.reasons.items()},
                {code: _reason(words) for code, words in new.reasons.items()},
            ),
        ),
        reordered=kept != [rule.id for rule in new.rules if rule.id in set(kept)],
    )


def _rule(rule: Rule) -> tuple[str, ...]:
    return (rule.action, rule.condition, rule.effect, rule.reason_code)


def _reason(words: dict[str, str]) -> tuple[str, ...]:
    return (words.get("category", ""), words.get("en", ""))


def _section(
    title: str,
    columns: tuple[str, ...],
    old: dict[str, tuple[str, ...]],
    new: dict[str, tuple[str, ...]],
) -> Section:
    return Section(
        title,
        columns,
        added=tuple((key, new[key]) for key in new if key not in old),
        removed=tuple((key, old[key]) for key in old if key not in new),
        changed=tuple(
            Changed(
                key,
                tuple(
                    (column, before, after)
                    for column, before, after in zip(columns, old[key], new[key], strict=True)
                    if before != after
                ),
            )
            for key in old
            if key in new and old[key] != new[key]
        ),
    )
