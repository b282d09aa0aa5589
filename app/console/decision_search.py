"""Finding decisions for the console: a search that walks an index newest first, one page at a
time, and a decision's whole record, replayed or tried under another version.

policy_decisions grows with every stake, so a search never scans it and never skips rows with
OFFSET: it is bounded to a window of at most 31 days and read in (decided_at, id) order from
the cursor of the previous page, through the index its most selective filter names — the
player's (player_id, decided_at); an action's (action, decided_at, id), for actions as rare as a
payout or a reveal; the refusals' (decided_at, id) WHERE effect = 'deny', for refusals by
reason or by rule, or all of them, which are rare among allowed stakes; otherwise the time
index (decided_at) over the window (migration 0015). A version alone needs none of its own: it
decides everything while it is active, so its decisions are dense in its time.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from app.console import ruleset_view
from core import sql
from core.journal import rfc3339
from core.money import format_minor
from core.uow import UnitOfWork
from policies import decisions, registry
from policies.engine import Decision, InvalidFacts, UnknownAction

PAGE = 50
DEFAULT_WINDOW = timedelta(days=1)
LONGEST_WINDOW = timedelta(days=31)
OUTCOMES = {"": "any", "allow": "allowed", "deny": "refused"}


class BadSearch(ValueError):
    """The search form holds something that cannot be searched for; the message says what."""


@dataclass(frozen=True)
class Search:
    since: datetime
    until: datetime
    player_id: uuid.UUID | None = None
    rule_id: str | None = None
    reason_code: str | None = None
    version: str | None = None
    action: str | None = None
    effect: str | None = None
    before: tuple[datetime, uuid.UUID] | None = None  # the last row of the previous page


@dataclass(frozen=True)
class Form:
    """The search form as sent: every field a string, empty when not given."""

    player: str = ""
    rule: str = ""
    reason: str = ""
    version: str = ""
    action: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""
    before: str = ""

    def query(self, **changes: str) -> dict[str, str]:
        """The form's fields by their names in the URL, with `changes`, leaving out empty ones."""
        fields = {**self.__dict__, **changes}
        fields["from"], fields["to"] = fields.pop("since"), fields.pop("until")
        return {name: value for name, value in fields.items() if value}


def parse(form: Form, *, now: datetime, known: ruleset_view.Vocabulary) -> Search:
    """The search the form asks for, or BadSearch naming the field that is wrong."""
    until = _instant(form.until, "The end") if form.until else now
    since = _instant(form.since, "The start") if form.since else until - DEFAULT_WINDOW
    if since > until:
        raise BadSearch("The start of the window is after its end.")
    if until - since > LONGEST_WINDOW:
        raise BadSearch("A search covers at most 31 days: narrow the window.")
    return Search(
        since=since,
        until=until,
        player_id=_player(form.player),
        rule_id=_known(form.rule, known.rules, "No ruleset on file has a rule"),
        reason_code=_known(form.reason, known.reasons, "No ruleset on file has the reason"),
        version=_known(form.version, known.versions, "No ruleset version"),
        action=_known(form.action, known.actions, "No ruleset on file governs the action"),
        effect=_known(form.outcome, OUTCOMES, "No outcome") or None,
        before=_cursor(form.before) if form.before else None,
    )


def _instant(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadSearch(f"{what} is a date and time, e.g. 2026-12-02T09:30 (UTC).") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _player(text: str) -> uuid.UUID | None:
    if not text.strip():
        return None
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise BadSearch(
            "A player id is a UUID, e.g. 00000000-0000-4000-8000-000000000001."
        ) from None


def _known(text: str, among: object, refusal: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if value not in among:  # type: ignore[operator]  # a tuple, dict or set of names
        raise BadSearch(f"{refusal} {value[:80]!r}.")
    return value


def cursor(row: dict[str, Any]) -> str:
    return f"{rfc3339(row['decided_at'])}_{row['id']}"


def _cursor(text: str) -> tuple[datetime, uuid.UUID]:
    at, _, decision_id = text.rpartition("_")
    try:
        return datetime.fromisoformat(at).astimezone(UTC), uuid.UUID(decision_id)
    except ValueError:
        raise BadSearch("That page link is damaged: start the search again.") from None


_LISTED = (
    "SELECT id, action, player_id, version, rule_ids, effect, reason_code, reason, decided_at"
    " FROM policy_decisions"
)


# A filter given is one of these conditions on its own column (the parameter is the field).
_EQUALS: tuple[tuple[str, LiteralString], ...] = (
    ("player_id", "player_id = %(player_id)s"),
    ("action", "action = %(action)s"),
    ("reason_code", "reason_code = %(reason_code)s"),
    ("version", "version = %(version)s"),
)
_EFFECTS: dict[frozenset[str], LiteralString] = {
    frozenset(): "false",  # e.g. an allow rule's decisions among the refusals
    # literal, not a parameter: the refusals' partial index says exactly this
    frozenset({"deny"}): "effect = 'deny'",
    frozenset({"allow"}): "effect = 'allow'",
}


def statement(
    search: Search, known: ruleset_view.Vocabulary
) -> tuple[LiteralString, dict[str, Any]]:
    """The query and its parameters: one page and one row more (is there a next page?)."""
    where: list[LiteralString] = ["decided_at >= %(since)s", "decided_at <= %(until)s"]
    params: dict[str, Any] = {"since": search.since, "until": search.until, "n": PAGE + 1}
    for field, condition in _EQUALS:
        if getattr(search, field) is not None:
            where.append(condition)
            params[field] = getattr(search, field)
    effects = frozenset({search.effect} if search.effect else {"allow", "deny"})
    if search.reason_code is not None and search.reason_code not in known.allowing_reasons:
        effects &= {"deny"}  # only refusals give that reason
    if search.rule_id is not None:
        effects &= _rule(search.rule_id, known, where, params)
    if effects in _EFFECTS:
        where.append(_EFFECTS[effects])
    if search.before is not None:
        where += ["decided_at <= %(at)s", "(decided_at, id) < (%(at)s, %(id)s)"]
        params |= {"at": search.before[0], "id": search.before[1]}
    query = (
        _LISTED + " WHERE " + " AND ".join(where) + " ORDER BY decided_at DESC, id DESC LIMIT %(n)s"
    )
    return query, params


def _rule(
    rule_id: str,
    known: ruleset_view.Vocabulary,
    where: list[LiteralString],
    params: dict[str, Any],
) -> frozenset[str]:
    """The conditions of a rule search; returns the effects its decisions can have. A rule
    matches only requests for its own action, and a decision lists the rules of the effect it
    has: the action's index and the effect narrow the walk."""
    actions, effects = known.rules[rule_id]
    where.append("%(rule)s = ANY(rule_ids)")
    params["rule"] = rule_id
    if len(actions) == 1:  # the usual case: `=` lets the index give the order too
        where.append("action = %(rule_action)s")
        params["rule_action"] = next(iter(actions))
    else:
        where.append("action = ANY(%(rule_actions)s)")
        params["rule_actions"] = sorted(actions)
    return effects


@dataclass(frozen=True)
class Found:
    rows: list[dict[str, Any]]
    next_cursor: str | None


async def search(uow: UnitOfWork, search: Search, known: ruleset_view.Vocabulary) -> Found:
    query, params = statement(search, known)
    rows = await sql.all_rows(uow, query, params)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return Found(rows, cursor(rows[-1]) if more else None)


@dataclass(frozen=True)
class Record:
    id: uuid.UUID
    action: str
    player_id: uuid.UUID | None
    facts: dict[str, Any]
    version: str
    content_hash: str
    rule_ids: tuple[str, ...]
    effect: str
    reason_code: str
    reason: str | None
    decided_at: datetime
    amount: str | None


async def record(uow: UnitOfWork, decision_id: uuid.UUID) -> Record | None:
    row = await sql.one(
        uow,
        "SELECT id, action, player_id, facts, version, content_hash, rule_ids, effect,"
        " reason_code, reason, decided_at, amount_minor, amount_currency"
        " FROM policy_decisions WHERE id = %(id)s",
        {"id": decision_id},
    )
    if row is None:
        return None
    minor, currency = row.pop("amount_minor"), row.pop("amount_currency")
    row["rule_ids"] = tuple(row["rule_ids"])
    return Record(**row, amount=_amount(minor, currency))


def _amount(minor: int | None, currency: str | None) -> str | None:
    if minor is None or currency is None:
        return None
    return f"{format_minor(minor, currency)} {currency}"


@dataclass(frozen=True)
class Tried:
    """A stored decision beside the same facts decided again: by its own version (replay) or by
    another (what-if). `now` is None when that version cannot decide on what was recorded."""

    version: str
    now: Decision | None
    why_not: str | None = None

    def same_as(self, stored: Record, *, rules: bool = False) -> bool:
        """The same outcome and reason (and the same rules, for a replay: the same files on the
        same facts must name the same rules)."""
        if self.now is None:
            return False
        now = (self.now.effect, self.now.reason_code, self.now.rule_ids if rules else ())
        return now == (stored.effect, stored.reason_code, stored.rule_ids if rules else ())


async def replay(uow: UnitOfWork, stored: Record) -> Tried:
    """Its own version, its files checked against the recorded hash (policies.decisions)."""
    again = await decisions.replay(uow, stored.id)
    return Tried(stored.version, again.now)


def what_if(stored: Record, on_disk: ruleset_view.OnDisk) -> Tried:
    """Another version, as its files are now, on the facts it declares (as `pitwarden policy
    what-if` does for every decision since a time)."""
    assert on_disk.content_hash is not None  # noqa: S101 - the caller took a loaded version
    engine = registry.engine_for(on_disk.version, on_disk.content_hash)
    facts = {name: value for name, value in stored.facts.items() if name in engine.ruleset.facts}
    try:
        return Tried(on_disk.version, engine.decide(stored.action, facts))
    except (InvalidFacts, UnknownAction) as error:
        return Tried(on_disk.version, None, str(error))
