"""Console sessions, held server-side: the browser keeps a random token in a cookie, the
database its SHA-256, the stage reached, the CSRF token and the last second factor.

Stages: `signing_in` (no officer yet: a sign-in form, or an OpenID Connect round trip in flight
whose state, nonce and PKCE verifier wait in `pending`), `second_factor` (the password was
right), `enrolling` (right, and no TOTP yet: enrol one now), `active`. The token changes at
every step up (no session fixation). A session ends for good: signed out, idle 15 minutes,
8 hours old, or ended by its officer from another session.
"""

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg.types.json import Jsonb

from core import journal, sql
from core.journal import EventContext
from core.uow import UnitOfWork

IDLE = timedelta(minutes=15)
ABSOLUTE = timedelta(hours=8)
STEP_UP = timedelta(minutes=5)  # the console ruleset says 300 s too; this only words the page
Stage = Literal["signing_in", "second_factor", "enrolling", "active"]
_REF = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Session:
    token_hash: bytes
    officer_id: uuid.UUID | None
    stage: Stage
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    second_factor_at: datetime | None
    address: str
    user_agent: str
    pending: dict[str, Any]

    @property
    def ref(self) -> str:
        """A session's name in events and on pages: a prefix of the token's hash, which tells
        nothing of the token."""
        return self.token_hash.hex()[:16]

    def second_factor_age_s(self, now: datetime) -> int:
        if self.second_factor_at is None:
            return -1
        return max(0, int((now - self.second_factor_at).total_seconds()))

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_token.encode())


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_COLUMNS = (
    "token_hash, officer_id, stage, csrf_token, created_at, last_seen_at, second_factor_at,"
    " address, user_agent, pending"
)


_ADVANCE = (
    "UPDATE console_sessions SET token_hash = %(new)s, stage = %(stage)s,"  # noqa: S608 - fixed
    " officer_id = %(officer)s, csrf_token = %(csrf)s, last_seen_at = %(now)s,"
    " second_factor_at = CASE WHEN %(mfa)s THEN %(now)s ELSE second_factor_at END,"
    " pending = %(pending)s WHERE token_hash = %(old)s AND ended_at IS NULL"
    " RETURNING " + _COLUMNS
)


async def start(uow: UnitOfWork, *, address: str, user_agent: str) -> tuple[str, Session]:
    """A new session before sign-in; returns the cookie's token and the session."""
    token = secrets.token_urlsafe(32)
    row = await sql.one(
        uow,
        f"INSERT INTO console_sessions ({_COLUMNS}) VALUES (%(h)s, NULL, 'signing_in', %(c)s,"  # noqa: S608 - fixed columns
        " %(now)s, %(now)s, NULL, %(a)s, %(ua)s, '{}') RETURNING " + _COLUMNS,
        {
            "h": _hash(token),
            "c": secrets.token_urlsafe(24),
            "now": uow.now,
            "a": address,
            "ua": user_agent[:300],
        },
    )
    assert row is not None  # noqa: S101 - RETURNING
    return token, Session(**row)


@dataclass(frozen=True)
class Found:
    session: Session | None
    ended: str | None = None  # why a session the cookie names is over: idle, too old, ended


async def find(uow: UnitOfWork, token: str | None) -> Found:
    """The live session of this cookie, touched; an expired one is ended here (and journaled)."""
    if not token:
        return Found(None)
    row = await sql.one(
        uow,
        f"SELECT {_COLUMNS}, ended_reason FROM console_sessions WHERE token_hash = %(h)s",  # noqa: S608
        {"h": _hash(token)},
    )
    if row is None:
        return Found(None)
    ended_reason = row.pop("ended_reason")
    session = Session(**row)
    if ended_reason is not None:
        return Found(None, ended_reason)
    over = _over(session, uow.now)
    if over is not None:
        await end(uow, session, reason=over, ctx=_system(session))
        return Found(None, over)
    await sql.run(
        uow,
        "UPDATE console_sessions SET last_seen_at = %(now)s WHERE token_hash = %(h)s",
        {"now": uow.now, "h": session.token_hash},
    )
    return Found(session)


def _over(session: Session, now: datetime) -> str | None:
    if now - session.created_at >= ABSOLUTE:
        return "absolute_timeout"
    if now - session.last_seen_at >= IDLE:
        return "idle_timeout"
    return None


def _system(session: Session) -> EventContext:
    return EventContext(
        actor=f"officer:{session.officer_id}" if session.officer_id else "console",
        trace_id=uuid.uuid4().hex,
        session_id=session.ref,
    )


async def advance(
    uow: UnitOfWork,
    session: Session,
    *,
    stage: Stage,
    officer_id: uuid.UUID | None,
    second_factor: bool = False,
    pending: dict[str, Any] | None = None,
) -> tuple[str, Session]:
    """Move to `stage` under a new token (the old one stops working) and a new CSRF token."""
    token = secrets.token_urlsafe(32)
    row = await sql.one(
        uow,
        _ADVANCE,
        {
            "new": _hash(token),
            "old": session.token_hash,
            "stage": stage,
            "officer": officer_id,
            "csrf": secrets.token_urlsafe(24),
            "now": uow.now,
            "mfa": second_factor,
            "pending": Jsonb(pending or {}),
        },
    )
    assert row is not None  # noqa: S101 - the caller holds a live session
    return token, Session(**row)


async def remember(uow: UnitOfWork, session: Session, pending: dict[str, Any]) -> None:
    """Keep what a sign-in in flight needs (an OpenID round trip's state) until it returns."""
    await sql.run(
        uow,
        "UPDATE console_sessions SET pending = %(p)s WHERE token_hash = %(h)s",
        {"p": Jsonb(pending), "h": session.token_hash},
    )


async def stepped_up(uow: UnitOfWork, session: Session) -> None:
    """The second factor given again now (step-up)."""
    await sql.run(
        uow,
        "UPDATE console_sessions SET second_factor_at = %(now)s WHERE token_hash = %(h)s",
        {"now": uow.now, "h": session.token_hash},
    )


async def end(uow: UnitOfWork, session: Session, *, reason: str, ctx: EventContext) -> None:
    await sql.run(
        uow,
        "UPDATE console_sessions SET ended_at = %(now)s, ended_reason = %(r)s"
        " WHERE token_hash = %(h)s AND ended_at IS NULL",
        {"now": uow.now, "r": reason, "h": session.token_hash},
    )
    if session.officer_id is not None:
        await journal.record(
            uow,
            "console.session_ended",
            ctx=ctx,
            data={"officer_id": str(session.officer_id), "session": session.ref, "reason": reason},
        )


@dataclass(frozen=True)
class Listed:
    ref: str
    created_at: datetime
    last_seen_at: datetime
    address: str
    user_agent: str
    current: bool


async def of_officer(uow: UnitOfWork, officer_id: uuid.UUID, current: Session) -> list[Listed]:
    """The officer's live sessions, newest first (expired ones are not live, ended or not)."""
    rows = await sql.all_rows(
        uow,
        f"SELECT {_COLUMNS} FROM console_sessions WHERE officer_id = %(o)s"  # noqa: S608
        " AND ended_at IS NULL AND stage = 'active' ORDER BY created_at DESC",
        {"o": officer_id},
    )
    sessions = [Session(**row) for row in rows]
    return [
        Listed(s.ref, s.created_at, s.last_seen_at, s.address, s.user_agent, s.ref == current.ref)
        for s in sessions
        if _over(s, uow.now) is None
    ]


async def end_other(uow: UnitOfWork, *, officer_id: uuid.UUID, ref: str, ctx: EventContext) -> bool:
    """End one of the officer's own sessions by its reference; False if none such is live."""
    if not _REF.fullmatch(ref):
        return False
    row = await sql.one(
        uow,
        f"SELECT {_COLUMNS} FROM console_sessions WHERE officer_id = %(o)s"  # noqa: S608
        " AND ended_at IS NULL AND substr(encode(token_hash, 'hex'), 1, 16) = %(ref)s",
        {"o": officer_id, "ref": ref},
    )
    if row is None:
        return False
    await end(uow, Session(**row), reason="ended_by_officer", ctx=ctx)
    return True
