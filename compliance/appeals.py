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
resolution deadline on by the time the clock stood still.

The officers' side (slice 2, decision 0023): the queue by deadline; acknowledging; asking the
player for more information (the officer's words sealed in the vault like the player's) and
the player's answer; the decision — upheld, with the ADR body of the player's jurisdiction, or
overturned, with a remedy: an override the gate honours (compliance.overrides), the KYC level
corrected to verified, or a raised limit's cooling-off ended now. Each step takes the appeal's
row lock first, so two officers deciding at once make one decision; the officer's reason is
sealed in the vault too. Overturning a refusal of the AML or KYC categories is four-eyes (the
console asks a senior officer, app/console/approvals.py, and calls `decide` on approval).

Each step is journaled (`appeal.filed`, `.acknowledged`, `.info_requested`, `.answered`,
`.decided`) and told to the player through a `Notifier`; the local adapter writes the
notification outbox in the same transaction.
"""

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from compliance import kyc, overrides, rg
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

    @property
    def ack_late(self) -> bool:
        """Acknowledged, but after its deadline: a breach that stays on record."""
        return self.acknowledged_at is not None and self.acknowledged_at > self.ack_due_at

    @property
    def resolved_late(self) -> bool:
        return self.decided_at is not None and self.decided_at > self.resolution_due_at

    def breached(self, now: datetime) -> bool:
        return (
            self.ack_overdue(now)
            or self.ack_late
            or self.resolution_overdue(now)
            or self.resolved_late
        )


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


# -- the officers' side ----------------------------------------------------------------------

CLOSED_MESSAGE = "this appeal was decided or withdrawn: it cannot change"
FOUR_EYES_CATEGORIES = frozenset({"aml", "kyc"})
LIMIT_REASONS = {
    f"{kind}_limit_{period}": (kind, period) for kind in rg.KINDS for period in rg.PERIODS
}


async def _locked(uow: UnitOfWork, appeal_id: uuid.UUID) -> dict[str, Any]:
    """The appeal's row, locked until the unit ends: steps of one appeal happen one at a time
    (a second officer's decision waits, then finds it decided)."""
    row = await sql.one(
        uow,
        "SELECT id, player_id, decision_id, jurisdiction, state, ack_due_at, resolution_due_at,"
        " acknowledged_at, clock_paused_at FROM appeals WHERE id = %(a)s FOR UPDATE",
        {"a": appeal_id},
    )
    if row is None:
        raise NotFound("unknown_appeal", "no appeal with this id")
    return row


def _step_refused(row: dict[str, Any], wanted: str) -> Conflict:
    if row["state"] not in OPEN:
        return Conflict("appeal_closed", CLOSED_MESSAGE, state=row["state"])
    return Conflict(
        "illegal_appeal_step",
        f"an appeal that is {row['state'].replace('_', ' ')} cannot be {wanted}",
        state=row["state"],
    )


async def _move(
    uow: UnitOfWork, row: dict[str, Any], to_state: str, *, actor: str, **sets: object
) -> None:
    """The transition row first, then the appeal (PostgreSQL checks the edge and the row)."""
    await sql.run(
        uow,
        "INSERT INTO appeal_transitions (appeal_id, from_state, to_state, actor, at)"
        " VALUES (%(a)s, %(f)s, %(t)s, %(actor)s, %(now)s)",
        {"a": row["id"], "f": row["state"], "t": to_state, "actor": actor, "now": uow.now},
    )
    columns = "".join(f", {name} = %({name})s" for name in sets)
    await sql.run(
        uow,
        f"UPDATE appeals SET state = %(t)s, updated_at = %(now)s{columns}"  # noqa: S608 - names are ours
        " WHERE id = %(a)s",
        {"a": row["id"], "t": to_state, "now": uow.now, **sets},
    )


def _acknowledging(row: dict[str, Any], now: datetime) -> dict[str, object]:
    """Any step an officer takes on a filed appeal acknowledges it too."""
    return {"acknowledged_at": now} if row["acknowledged_at"] is None else {}


async def acknowledge(
    uow: UnitOfWork, *, appeal_id: uuid.UUID, notifier: Notifier, ctx: EventContext
) -> None:
    """filed -> acknowledged (`appeal.acknowledged`, saying whether it was late)."""
    row = await _locked(uow, appeal_id)
    if row["state"] != "filed":
        raise _step_refused(row, "acknowledged (it was already)")
    await _move(uow, row, "acknowledged", actor=ctx.actor, acknowledged_at=uow.now)
    await journal.record(
        uow,
        "appeal.acknowledged",
        ctx=ctx,
        player_id=row["player_id"],
        data={
            "appeal_id": str(appeal_id),
            "ack_due_at": journal.rfc3339(row["ack_due_at"]),
            "late": uow.now > row["ack_due_at"],
        },
    )
    await notifier.notify(
        uow, player_id=row["player_id"], appeal_id=appeal_id, kind="appeal.acknowledged"
    )


async def request_info(
    uow: UnitOfWork,
    *,
    appeal_id: uuid.UUID,
    message_token: str,
    notifier: Notifier,
    ctx: EventContext,
) -> None:
    """Ask the player for more (the question sealed in the vault beforehand): the clock stops
    until they answer (`appeal.info_requested`)."""
    row = await _locked(uow, appeal_id)
    if row["state"] not in {"filed", "acknowledged", "answered"}:
        raise _step_refused(row, "asked for more information (it waits for the player)")
    await add_message(
        uow, appeal_id=appeal_id, author="officer", body_token=message_token,
        document_tokens=[], ctx=ctx,
    )  # fmt: skip
    await _move(
        uow, row, "info_requested", actor=ctx.actor, clock_paused_at=uow.now,
        **_acknowledging(row, uow.now),
    )  # fmt: skip
    await journal.record(
        uow,
        "appeal.info_requested",
        ctx=ctx,
        player_id=row["player_id"],
        data={"appeal_id": str(appeal_id), "message": message_token},
    )
    await notifier.notify(
        uow, player_id=row["player_id"], appeal_id=appeal_id, kind="appeal.info_requested"
    )


async def answer(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    appeal_id: uuid.UUID,
    message_token: str,
    document_tokens: list[str],
    notifier: Notifier,
    ctx: EventContext,
) -> datetime:
    """The player's answer (sealed beforehand): the clock runs again, the resolution deadline
    moved on by the time it stood still (`appeal.answered`). Returns the new deadline."""
    row = await _locked(uow, appeal_id)
    if row["player_id"] != player_id:
        raise NotFound("unknown_appeal", "you have no appeal with this id")
    if row["state"] != "info_requested":
        raise _step_refused(row, "answered: nobody asked you for information")
    paused = max(uow.now - row["clock_paused_at"], timedelta(0))
    due: datetime = row["resolution_due_at"] + paused
    await add_message(
        uow, appeal_id=appeal_id, author="player", body_token=message_token,
        document_tokens=document_tokens, ctx=ctx,
    )  # fmt: skip
    await _move(uow, row, "answered", actor=ctx.actor, clock_paused_at=None, resolution_due_at=due)
    await journal.record(
        uow,
        "appeal.answered",
        ctx=ctx,
        player_id=player_id,
        data={
            "appeal_id": str(appeal_id),
            "message": message_token,
            "documents": document_tokens,
            "paused_s": int(paused.total_seconds()),
            "resolution_due_at": journal.rfc3339(due),
        },
    )
    await notifier.notify(uow, player_id=player_id, appeal_id=appeal_id, kind="appeal.answered")
    return due


# What an overturn grants, in the officers' words.
REMEDIES = {
    "once": "The refused action may proceed once (within 30 days)",
    "period": "The rules that refused are lifted for the player and this action for a period",
    "kyc_verified": "The KYC level is corrected to verified",
    "cooling_off_ends": "The raised limit's cooling-off ends now",
}


@dataclass(frozen=True)
class Remedy:
    kind: str  # a key of REMEDIES
    days: int = overrides.ONE_USE_DAYS


def checked_remedy(kind: str, days: str | int | None, refusal: Refusal) -> Remedy:
    """The remedy asked for, if it fits the refusal; else 422 `invalid_remedy`."""
    if kind not in REMEDIES:
        raise InvalidRequest("invalid_remedy", f"remedies are {', '.join(REMEDIES)}")
    if kind in {"once", "period"} and not refusal.rule_ids:
        raise InvalidRequest(
            "invalid_remedy", "no rule refused this (no rule allowed it): there is nothing to lift"
        )
    if kind == "kyc_verified" and refusal.category != "kyc":
        raise InvalidRequest("invalid_remedy", "the KYC level corrects only a KYC refusal")
    if kind == "cooling_off_ends" and refusal.reason_code not in LIMIT_REASONS:
        raise InvalidRequest("invalid_remedy", "a cooling-off ends only for a limit's refusal")
    if kind != "period":
        return Remedy(kind)
    text = str(days if days is not None else "").strip()
    if not text.isdigit() or not 1 <= int(text) <= overrides.MAX_DAYS:
        raise InvalidRequest(
            "invalid_remedy", f"a period is 1 to {overrides.MAX_DAYS} days", max=overrides.MAX_DAYS
        )
    return Remedy(kind, int(text))


def needs_four_eyes(outcome: str, refusal: Refusal) -> bool:
    """Overturning a refusal of the AML or KYC categories takes a second (senior) officer."""
    return outcome == "overturned" and refusal.category in FOUR_EYES_CATEGORIES


@dataclass(frozen=True)
class Decided:
    outcome: str
    override_id: uuid.UUID | None


async def decide(
    uow: UnitOfWork,
    *,
    appeal_id: uuid.UUID,
    outcome: str,
    reason_token: str,
    officer_id: uuid.UUID,
    remedy: Remedy | None,
    settings: Jurisdictions,
    notifier: Notifier,
    ctx: EventContext,
    approved_by: uuid.UUID | None = None,
) -> Decided:
    """Decide the appeal, once (a decided one is 409 `appeal_closed`; one waiting for the
    player's information is 409 `illegal_appeal_step`): upheld, with the ADR body of the
    player's jurisdiction for the player; or overturned, with its remedy carried out in the same
    transaction. `appeal.decided` names the outcome, the officer (and the senior officer who
    approved an overturn under four-eyes), whether it was in time and the remedy; the player is
    told."""
    if outcome not in {"upheld", "overturned"}:
        raise InvalidRequest("invalid_outcome", "an appeal is upheld or overturned")
    if outcome == "overturned" and remedy is None:
        raise InvalidRequest("invalid_remedy", "an overturn says what it grants")
    row = await _locked(uow, appeal_id)
    if row["state"] not in {"filed", "acknowledged", "answered"}:
        raise _step_refused(row, "decided while it waits for the player's information")
    refusal = await refusal_of(
        uow, player_id=row["player_id"], decision_id=row["decision_id"], settings=settings
    )
    adr = settings.of(row["jurisdiction"]).adr_body if outcome == "upheld" else None
    actor = f"officer:{officer_id}" + (f" approved by officer:{approved_by}" if approved_by else "")
    await _move(
        uow, row, "decided", actor=actor, decided_at=uow.now, decided_by=officer_id,
        outcome=outcome, outcome_reason=reason_token, adr_body=adr,
        **_acknowledging(row, uow.now),
    )  # fmt: skip
    override_id = None
    if outcome == "overturned" and remedy is not None:
        override_id = await _carry_out(uow, row, refusal, remedy, actor, ctx)
    await journal.record(
        uow,
        "appeal.decided",
        ctx=ctx,
        player_id=row["player_id"],
        data={
            "appeal_id": str(appeal_id),
            "decision_id": str(row["decision_id"]),
            "jurisdiction": row["jurisdiction"],
            "outcome": outcome,
            "reason": reason_token,
            "decided_by": str(officer_id),
            "approved_by": str(approved_by) if approved_by else None,
            "in_time": uow.now <= row["resolution_due_at"],
            "remedy": remedy.kind if remedy else None,
            "override_id": str(override_id) if override_id else None,
            "adr_body": adr,
        },
    )
    await notifier.notify(
        uow, player_id=row["player_id"], appeal_id=appeal_id, kind="appeal.decided"
    )
    return Decided(outcome, override_id)


async def _carry_out(  # noqa: PLR0917 - the decision's parts
    uow: UnitOfWork,
    row: dict[str, Any],
    refusal: Refusal,
    remedy: Remedy,
    actor: str,
    ctx: EventContext,
) -> uuid.UUID | None:
    player_id, why = row["player_id"], f"appeal {row['id']} overturned"
    if remedy.kind in {"once", "period"}:
        return await overrides.grant(
            uow,
            appeal_id=row["id"],
            player_id=player_id,
            decision_id=row["decision_id"],
            action=refusal.action,
            rule_ids=refusal.rule_ids,
            remedy=overrides.Grant(remedy.days, 1 if remedy.kind == "once" else None),
            actor=actor,
            ctx=ctx,
        )
    if remedy.kind == "kyc_verified":
        await kyc.set_level(
            uow, player_id=player_id, level="verified", actor=actor, reason=why, ctx=ctx
        )
        return None
    kind, period = LIMIT_REASONS[refusal.reason_code]
    await rg.end_cooling_off(
        uow, player_id=player_id, kind=kind, period=period, actor=actor, reason=why, ctx=ctx
    )
    return None


# -- the queue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    status: Status
    player_id: uuid.UUID
    jurisdiction: str
    action: str
    reason_code: str
    next_due: datetime  # acknowledgement while filed, else resolution (moving while paused)

    def next_what(self) -> str:
        if self.status.state == "filed":
            return "acknowledge"
        return "the player" if self.status.clock_paused_at else "resolve"


_QUEUE = (
    "SELECT a.id, a.decision_id, a.state, a.explanation_token, a.document_tokens, a.filed_at,"
    " a.ack_due_at, a.resolution_due_at, a.acknowledged_at, a.clock_paused_at, a.decided_at,"
    " a.outcome, a.outcome_reason, a.adr_body, a.player_id, a.jurisdiction, d.action,"
    " d.reason_code, CASE WHEN a.state = 'filed' THEN a.ack_due_at"
    " WHEN a.clock_paused_at IS NOT NULL"
    " THEN a.resolution_due_at + (%(now)s - a.clock_paused_at) ELSE a.resolution_due_at END"
    " AS next_due FROM appeals a JOIN policy_decisions d ON d.id = a.decision_id"
    " WHERE a.state IN ('filed', 'acknowledged', 'info_requested', 'answered')"
    " ORDER BY next_due, a.id LIMIT %(n)s"
)


def _bare(row: dict[str, Any]) -> Status:
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
        steps=(),
        messages=(),
    )


async def queue(uow: UnitOfWork, *, limit: int = 200) -> list[Queued]:
    """The open appeals, soonest deadline first (a filed one's acknowledgement, else its
    resolution; one waiting for the player has its deadline moving on, so it sinks)."""
    rows = await sql.all_rows(uow, _QUEUE, {"now": uow.now, "n": limit})
    return [
        Queued(
            _bare(row),
            row["player_id"],
            row["jurisdiction"],
            row["action"],
            row["reason_code"],
            row["next_due"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Case:
    """An appeal as an officer reads it: its status, the player, the refusal."""

    status: Status
    player_id: uuid.UUID
    jurisdiction: str
    refusal: Refusal


async def case(uow: UnitOfWork, *, appeal_id: uuid.UUID, settings: Jurisdictions) -> Case:
    row = await sql.one(
        uow, _STATUS.replace(" FROM appeals", ", player_id, jurisdiction FROM appeals")
        + " WHERE id = %(a)s", {"a": appeal_id},
    )  # fmt: skip
    if row is None:
        raise NotFound("unknown_appeal", "no appeal with this id")
    refusal = await refusal_of(
        uow, player_id=row["player_id"], decision_id=row["decision_id"], settings=settings
    )
    return Case(await _status(uow, row), row["player_id"], str(row["jurisdiction"]), refusal)


@dataclass(frozen=True)
class Notice:
    kind: str
    appeal_id: uuid.UUID | None
    at: datetime


async def notices(uow: UnitOfWork, *, player_id: uuid.UUID, limit: int = 20) -> list[Notice]:
    """What the player was told (the outbox), newest first."""
    rows = await sql.all_rows(
        uow,
        "SELECT kind, appeal_id, created_at FROM notification_outbox WHERE player_id = %(p)s"
        " ORDER BY id DESC LIMIT %(n)s",
        {"p": player_id, "n": limit},
    )
    return [Notice(str(r["kind"]), r["appeal_id"], r["created_at"]) for r in rows]
