"""Appeals: a player contests one of their refusals (issue 15, decision 0022).

Whether a refusal may be appealed is the ruleset's word (`appeals.json` of the version that
decided, `policies.ruleset.Ruleset.appealability`); for how long, and how soon it must be
acknowledged and resolved, the jurisdiction settings' (`appeal_window_days`,
`appeal_ack_days`, `appeal_resolution_days`). A player appeals only their own refusal, one the
ruleset lets them appeal, within its window, and not while an appeal of it is open; PostgreSQL
refuses the first two and the last whatever the code does (migration 0019).

The explanation is free text that may hold personal data: it is sealed in the vault (a
document of kind `appeal_explanation`) before the appeal is written, and only its token is kept
here; so are the optional documents. Filing takes two units of work — the vault's commits
first, under this module's lock of the decision (`check_filing`), then the appeal's — the same
order as a registration: what can be left behind by a failure between the two is sealed text
under a token nothing refers to, never an appeal without its explanation.

Deadlines are calendar days from the filing, at the instant of the filing. While an officer
waits for the player's information (`info_requested`) the clock stops; answering moves the
resolution deadline on by the time the clock stood still (the officers' side, slice 2).

Each step is journaled (`appeal.filed` here) and told to the player through a `Notifier`; the
local adapter writes the notification outbox in the same transaction.
"""

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from compliance.helplines import Contact, contacts_for
from compliance.jurisdictions import Jurisdictions
from core import journal, sql
from core.errors import Conflict, InvalidRequest, NotFound
from core.journal import EventContext
from core.uow import UnitOfWork
from policies import registry
from policies.ruleset import Appealability

MAX_EXPLANATION_CHARS = 4000
MAX_DOCUMENT_BYTES = 48 * 1024  # with the explanation, within the 64 KiB body limit
DOCUMENT_TYPES = {  # what a scan or a photo of a paper may be, told by its first bytes
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}
EXPLANATION_KIND = "appeal_explanation"
MESSAGE_KIND = "appeal_message"
DOCUMENT_KIND = "appeal_document"
TEXT = "text/plain; charset=utf-8"
OPEN = ("filed", "acknowledged", "info_requested", "answered")  # as _REFUSAL and 0019 say
_ALLOWED_CONTROLS = frozenset("\n\r\t")


# -- what the player may appeal ------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A refusal as the player sees it, with whether and until when it may be appealed."""

    decision_id: uuid.UUID
    action: str
    reason_code: str
    reason: str
    category: str
    policy_version: str
    rule_ids: tuple[str, ...]
    decided_at: datetime
    help: tuple[Contact, ...]
    appealability: Appealability
    appeal_until: datetime  # the end of the appeal window (it may have passed)
    open_appeal_id: uuid.UUID | None  # an appeal of it that is still open
    jurisdiction: str  # the player's, whose settings give the window and the deadlines

    def may_appeal(self, now: datetime) -> bool:
        return self.appealability.appealable and now < self.appeal_until and not self.open_appeal_id

    @property
    def why_not(self) -> str | None:
        words = self.appealability.why_not
        return None if words is None else words["en"]


_REFUSAL = (
    "SELECT d.id, d.action, d.effect, d.version, d.content_hash, d.rule_ids, d.reason_code,"
    " d.decided_at, (SELECT a.id FROM appeals a WHERE a.decision_id = d.id"
    " AND a.state IN ('filed', 'acknowledged', 'info_requested', 'answered')) AS open_appeal_id"
    " FROM policy_decisions d"
)


async def jurisdiction_of(uow: UnitOfWork, player_id: uuid.UUID) -> str:
    country = await sql.scalar(
        uow, "SELECT jurisdiction FROM players WHERE id = %(p)s", {"p": player_id}
    )
    if country is None:
        raise NotFound("unknown_player", "no such player", player_id=str(player_id))
    return str(country)


def _refusal(row: dict[str, Any], country: str, settings: Jurisdictions) -> Refusal:
    version, content_hash = str(row["version"]), str(row["content_hash"])
    loaded = registry.engine_for(version, content_hash).ruleset
    reason = loaded.reasons[str(row["reason_code"])]
    rule_ids = tuple(row["rule_ids"])
    decided_at: datetime = row["decided_at"]
    open_appeal: uuid.UUID | None = row["open_appeal_id"]
    return Refusal(
        decision_id=row["id"],
        action=str(row["action"]),
        reason_code=str(row["reason_code"]),
        reason=reason["en"],
        category=reason["category"],
        policy_version=version,
        rule_ids=rule_ids,
        decided_at=decided_at,
        help=contacts_for(country) if reason["category"] == "responsible_gambling" else (),
        appealability=loaded.appealability(rule_ids),
        appeal_until=decided_at + timedelta(days=settings.of(country).appeal_window_days),
        open_appeal_id=open_appeal,
        jurisdiction=country,
    )


async def refusals(
    uow: UnitOfWork, *, player_id: uuid.UUID, settings: Jurisdictions, limit: int = 50
) -> list[Refusal]:
    """The player's newest refusals (at most `limit`), newest first, each with whether it may
    be appealed and until when, or why not."""
    country = await jurisdiction_of(uow, player_id)
    rows = await sql.all_rows(
        uow,
        _REFUSAL + " WHERE d.player_id = %(p)s AND d.effect = 'deny'"
        " ORDER BY d.decided_at DESC, d.id LIMIT %(n)s",
        {"p": player_id, "n": limit},
    )
    return [_refusal(row, country, settings) for row in rows]


async def refusal_of(
    uow: UnitOfWork, *, player_id: uuid.UUID, decision_id: uuid.UUID, settings: Jurisdictions
) -> Refusal:
    """One of the player's refusals: another player's decision is 404 `unknown_decision`, as
    one that does not exist; a decision that allowed is 409 `not_a_refusal`."""
    country = await jurisdiction_of(uow, player_id)
    row = await sql.one(
        uow,
        _REFUSAL + " WHERE d.id = %(d)s AND d.player_id = %(p)s",
        {"d": decision_id, "p": player_id},
    )
    if row is None:
        raise NotFound("unknown_decision", "you have no decision with this id")
    if row["effect"] != "deny":
        raise Conflict("not_a_refusal", "this decision allowed what was asked: nothing to appeal")
    return _refusal(row, country, settings)


# -- filing ----------------------------------------------------------------------------------


def checked_explanation(text: str | None) -> str:
    """The explanation as the player wrote it (line ends made \\n), or a 422: required, at most
    4,000 characters, and text — no NUL or other control characters, nothing that was not
    UTF-8 (a form decodes it to U+FFFD)."""
    value = (text or "").replace("\r\n", "\n").strip()
    if not value:
        raise InvalidRequest("explanation_required", "say in your own words why you appeal")
    if len(value) > MAX_EXPLANATION_CHARS:
        raise InvalidRequest(
            "explanation_too_long",
            f"the explanation must be at most {MAX_EXPLANATION_CHARS} characters",
            max_chars=MAX_EXPLANATION_CHARS,
            chars=len(value),
        )
    if any(
        (unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS) or c == "\ufffd"
        for c in value
    ):
        raise InvalidRequest(
            "explanation_not_text", "the explanation must be plain text, not binary data"
        )
    return value


def checked_document(content_type: str | None, content: bytes) -> str:
    """A document's type as its bytes show it, or a 422 `invalid_document`: a PDF, PNG or JPEG
    of at most 48 KiB."""
    if not content:
        raise InvalidRequest("invalid_document", "the document is empty")
    if len(content) > MAX_DOCUMENT_BYTES:
        raise InvalidRequest(
            "invalid_document",
            f"a document may be at most {MAX_DOCUMENT_BYTES // 1024} KiB",
            max_bytes=MAX_DOCUMENT_BYTES,
        )
    found = next((t for t, magic in DOCUMENT_TYPES.items() if content.startswith(magic)), None)
    if found is None:
        raise InvalidRequest(
            "invalid_document",
            "a document must be a PDF, a PNG or a JPEG",
            content_type=(content_type or "")[:100],
        )
    return found


@dataclass(frozen=True)
class Filing:
    """A refusal the player may appeal now: checked, and locked until the unit commits."""

    player_id: uuid.UUID
    decision_id: uuid.UUID
    jurisdiction: str
    appeal_until: datetime


async def check_filing(
    uow: UnitOfWork, *, player_id: uuid.UUID, decision_id: uuid.UUID, settings: Jurisdictions
) -> Filing:
    """Whether the player may appeal this decision now, holding the decision's appeal lock
    until `uow` ends (a second filing of it waits, then finds this one's appeal): the player's
    own (else 404 `unknown_decision`, as for a decision that does not exist), a refusal (409
    `not_a_refusal`), appealable (409 `not_appealable`, with the ruleset's words), within the
    window (409 `appeal_window_closed`), and no appeal of it open (409 `appeal_already_open`)."""
    await sql.run(
        uow,
        "SELECT pg_advisory_xact_lock(hashtextextended('appeal:' || %(d)s::text, 0))",
        {"d": decision_id},
    )
    refusal = await refusal_of(uow, player_id=player_id, decision_id=decision_id, settings=settings)
    if not refusal.appealability.appealable:
        raise Conflict(
            "not_appealable",
            refusal.why_not or "this refusal cannot be appealed",
            rule_id=refusal.appealability.rule_id,
            policy_version=refusal.policy_version,
        )
    if uow.now >= refusal.appeal_until:
        raise Conflict(
            "appeal_window_closed",
            "the time to appeal this refusal has passed",
            closed_at=journal.rfc3339(refusal.appeal_until),
        )
    if refusal.open_appeal_id is not None:
        raise Conflict(
            "appeal_already_open",
            "this refusal is already under appeal",
            appeal_id=str(refusal.open_appeal_id),
        )
    return Filing(player_id, decision_id, refusal.jurisdiction, refusal.appeal_until)


class Notifier(Protocol):
    """How the player is told of a step of their appeal (an e-mail, a message in the casino's
    app...). Called inside the step's unit of work: an adapter that sends must do so after the
    commit, from what it wrote (the outbox pattern)."""

    async def notify(
        self, uow: UnitOfWork, *, player_id: uuid.UUID, appeal_id: uuid.UUID, kind: str
    ) -> None: ...


class Outbox:
    """The local adapter: a row of `notification_outbox` per step, in the step's transaction;
    a sender (none yet) delivers them and marks each delivered, once. The row names the kind
    and the appeal, never words that could hold personal data."""

    async def notify(
        self, uow: UnitOfWork, *, player_id: uuid.UUID, appeal_id: uuid.UUID, kind: str
    ) -> None:
        await sql.run(
            uow,
            "INSERT INTO notification_outbox (player_id, appeal_id, kind, created_at)"
            " VALUES (%(p)s, %(a)s, %(k)s, %(now)s)",
            {"p": player_id, "a": appeal_id, "k": kind, "now": uow.now},
        )


@dataclass(frozen=True)
class Filed:
    appeal_id: uuid.UUID
    ack_due_at: datetime
    resolution_due_at: datetime


async def file(
    uow: UnitOfWork,
    *,
    filing: Filing,
    explanation_token: str,
    document_tokens: list[str],
    settings: Jurisdictions,
    notifier: Notifier,
    ctx: EventContext,
) -> Filed:
    """The appeal, in `filed`, with its opening transition, its deadlines, the event
    `appeal.filed` (ids and deadlines, never the explanation) and the player told."""
    appeal_id = uuid.uuid4()
    rules = settings.of(filing.jurisdiction)
    ack_due = uow.now + timedelta(days=rules.appeal_ack_days)
    resolution_due = uow.now + timedelta(days=rules.appeal_resolution_days)
    await sql.run(
        uow,
        "INSERT INTO appeals (id, player_id, decision_id, jurisdiction, state, explanation_token,"
        " document_tokens, filed_at, ack_due_at, resolution_due_at, updated_at)"
        " VALUES (%(a)s, %(p)s, %(d)s, %(j)s, 'filed', %(t)s, %(docs)s, %(now)s, %(ack)s,"
        " %(due)s, %(now)s)",
        {
            "a": appeal_id,
            "p": filing.player_id,
            "d": filing.decision_id,
            "j": filing.jurisdiction,
            "t": explanation_token,
            "docs": document_tokens,
            "now": uow.now,
            "ack": ack_due,
            "due": resolution_due,
        },
    )
    await sql.run(
        uow,
        "INSERT INTO appeal_transitions (appeal_id, from_state, to_state, actor, at)"
        " VALUES (%(a)s, NULL, 'filed', %(actor)s, %(now)s)",
        {"a": appeal_id, "actor": ctx.actor, "now": uow.now},
    )
    await journal.record(
        uow,
        "appeal.filed",
        ctx=ctx,
        player_id=filing.player_id,
        data={
            "appeal_id": str(appeal_id),
            "decision_id": str(filing.decision_id),
            "jurisdiction": filing.jurisdiction,
            "explanation": explanation_token,
            "documents": document_tokens,
            "ack_due_at": journal.rfc3339(ack_due),
            "resolution_due_at": journal.rfc3339(resolution_due),
        },
    )
    await notifier.notify(uow, player_id=filing.player_id, appeal_id=appeal_id, kind="appeal.filed")
    return Filed(appeal_id, ack_due, resolution_due)


# -- where an appeal stands ------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    to_state: str
    at: datetime


@dataclass(frozen=True)
class Message:
    author: str  # player | officer
    body_token: str
    document_tokens: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class Status:
    appeal_id: uuid.UUID
    decision_id: uuid.UUID
    state: str
    explanation_token: str
    document_tokens: tuple[str, ...]
    filed_at: datetime
    ack_due_at: datetime
    resolution_due_at: datetime
    acknowledged_at: datetime | None
    clock_paused_at: datetime | None
    decided_at: datetime | None
    outcome: str | None
    outcome_reason: str | None
    adr_body: str | None
    steps: tuple[Step, ...]
    messages: tuple[Message, ...]

    @property
    def open(self) -> bool:
        return self.state in OPEN

    def resolution_due(self, now: datetime) -> datetime:
        """The resolution deadline as of `now`: while the clock stands still it moves on with
        the time that passes."""
        if self.clock_paused_at is None:
            return self.resolution_due_at
        return self.resolution_due_at + max(now - self.clock_paused_at, timedelta(0))

    def ack_overdue(self, now: datetime) -> bool:
        return self.state == "filed" and now > self.ack_due_at

    def resolution_overdue(self, now: datetime) -> bool:
        return self.open and self.clock_paused_at is None and now > self.resolution_due_at


_STATUS = (
    "SELECT id, decision_id, state, explanation_token, document_tokens, filed_at, ack_due_at,"
    " resolution_due_at, acknowledged_at, clock_paused_at, decided_at, outcome, outcome_reason,"
    " adr_body FROM appeals"
)


async def _status(uow: UnitOfWork, row: dict[str, Any]) -> Status:
    steps = await sql.all_rows(
        uow,
        "SELECT to_state, at FROM appeal_transitions WHERE appeal_id = %(a)s ORDER BY id",
        {"a": row["id"]},
    )
    messages = await sql.all_rows(
        uow,
        "SELECT author, body_token, document_tokens, at FROM appeal_messages"
        " WHERE appeal_id = %(a)s ORDER BY id",
        {"a": row["id"]},
    )
    return Status(
        appeal_id=row["id"],
        decision_id=row["decision_id"],
        state=str(row["state"]),
        explanation_token=str(row["explanation_token"]),
        document_tokens=tuple(row["document_tokens"]),
        filed_at=row["filed_at"],
        ack_due_at=row["ack_due_at"],
        resolution_due_at=row["resolution_due_at"],
        acknowledged_at=row["acknowledged_at"],
        clock_paused_at=row["clock_paused_at"],
        decided_at=row["decided_at"],
        outcome=row["outcome"],
        outcome_reason=row["outcome_reason"],
        adr_body=row["adr_body"],
        steps=tuple(Step(s["to_state"], s["at"]) for s in steps),
        messages=tuple(
            Message(m["author"], m["body_token"], tuple(m["document_tokens"]), m["at"])
            for m in messages
        ),
    )


async def of_player(uow: UnitOfWork, *, player_id: uuid.UUID) -> list[Status]:
    """The player's appeals, newest first."""
    rows = await sql.all_rows(
        uow,
        _STATUS + " WHERE player_id = %(p)s ORDER BY filed_at DESC, id",
        {"p": player_id},
    )
    return [await _status(uow, row) for row in rows]


async def status(uow: UnitOfWork, *, player_id: uuid.UUID, appeal_id: uuid.UUID) -> Status:
    """One of the player's appeals (another player's is 404 `unknown_appeal`, as is none)."""
    row = await sql.one(
        uow, _STATUS + " WHERE id = %(a)s AND player_id = %(p)s", {"a": appeal_id, "p": player_id}
    )
    if row is None:
        raise NotFound("unknown_appeal", "you have no appeal with this id")
    return await _status(uow, row)


async def add_message(
    uow: UnitOfWork,
    *,
    appeal_id: uuid.UUID,
    author: str,
    body_token: str,
    document_tokens: list[str],
    ctx: EventContext,
) -> None:
    """A message about an appeal, its body sealed in the vault beforehand (the officers' side
    writes them in slice 2, with its state change and the player told)."""
    await sql.run(
        uow,
        "INSERT INTO appeal_messages (appeal_id, author, actor, body_token, document_tokens, at)"
        " VALUES (%(a)s, %(author)s, %(actor)s, %(t)s, %(docs)s, %(now)s)",
        {
            "a": appeal_id,
            "author": author,
            "actor": ctx.actor,
            "t": body_token,
            "docs": document_tokens,
            "now": uow.now,
        },
    )
