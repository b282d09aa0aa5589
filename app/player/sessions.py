"""The player's page sessions, held server-side like the console's: the browser keeps a random
token in a cookie, the database its SHA-256, the CSRF token and when it was last seen.

A session is opened by exchanging one player token (decision 0014's short-lived JWT): its `jti`
is stored with the session and unique, so a token opens one session and never a second. A
session ends for good: signed out, idle 15 minutes, or an hour old.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import journal, sql
from core.journal import EventContext
from core.uow import UnitOfWork

IDLE = timedelta(minutes=15)
ABSOLUTE = timedelta(hours=1)
_COLUMNS = "token_hash, player_id, token_id, csrf_token, created_at, last_seen_at"


@dataclass(frozen=True)
class Session:
    token_hash: bytes
    player_id: uuid.UUID
    token_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime

    @property
    def ref(self) -> str:
        """The session's name in events: a prefix of the token's hash."""
        return self.token_hash.hex()[:16]

    @property
    def actor(self) -> str:
        return f"player:{self.player_id}"

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_token.encode())


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def token_used(uow: UnitOfWork, token_id: str) -> bool:
    return bool(
        await sql.scalar(
            uow, "SELECT 1 FROM player_sessions WHERE token_id = %(t)s", {"t": token_id}
        )
    )


async def start(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    token_id: str,
    address: str,
    user_agent: str,
    ctx: EventContext,
) -> tuple[str, Session]:
    """A session for the player of an exchanged token; returns the cookie's token. A token
    already exchanged is refused by the caller (`token_used`) and, in a race, by the unique
    `token_id`."""
    token = secrets.token_urlsafe(32)
    row = await sql.one(
        uow,
        "INSERT INTO player_sessions (token_hash, player_id, token_id, csrf_token, created_at,"
        " last_seen_at, address, user_agent) VALUES (%(h)s, %(p)s, %(t)s, %(c)s, %(now)s,"
        " %(now)s, %(a)s, %(ua)s) RETURNING token_hash, player_id, token_id, csrf_token,"
        " created_at, last_seen_at",
        {
            "h": _hash(token),
            "p": player_id,
            "t": token_id,
            "c": secrets.token_urlsafe(24),
            "now": uow.now,
            "a": address,
            "ua": user_agent[:300],
        },
    )
    assert row is not None  # noqa: S101 - RETURNING
    session = Session(**row)
    await journal.record(
        uow,
        "player.session_started",
        ctx=ctx,
        player_id=player_id,
        data={"token_id": token_id, "session": session.ref},
    )
    return token, session


@dataclass(frozen=True)
class Found:
    session: Session | None
    ended: str | None = None  # why the session the cookie names is over


async def find(uow: UnitOfWork, token: str | None) -> Found:
    """The live session of this cookie, touched; an expired one is ended here (and journaled)."""
    if not token:
        return Found(None)
    row = await sql.one(
        uow,
        f"SELECT {_COLUMNS}, ended_reason FROM player_sessions WHERE token_hash = %(h)s",  # noqa: S608 - fixed columns
        {"h": _hash(token)},
    )
    if row is None:
        return Found(None)
    ended_reason = row.pop("ended_reason")
    session = Session(**row)
    if ended_reason is not None:
        return Found(None, ended_reason)
    over = (
        "absolute_timeout"
        if uow.now - session.created_at >= ABSOLUTE
        else "idle_timeout"
        if uow.now - session.last_seen_at >= IDLE
        else None
    )
    if over is not None:
        await end(uow, session, reason=over, ctx=context(session, uuid.uuid4().hex))
        return Found(None, over)
    await sql.run(
        uow,
        "UPDATE player_sessions SET last_seen_at = %(now)s WHERE token_hash = %(h)s",
        {"now": uow.now, "h": session.token_hash},
    )
    return Found(session)


def context(session: Session, trace_id: str) -> EventContext:
    """Who acts in this session's events: the player (decision 0021), in this session."""
    return EventContext(actor=session.actor, trace_id=trace_id, session_id=session.ref)


async def end(uow: UnitOfWork, session: Session, *, reason: str, ctx: EventContext) -> None:
    await sql.run(
        uow,
        "UPDATE player_sessions SET ended_at = %(now)s, ended_reason = %(r)s"
        " WHERE token_hash = %(h)s AND ended_at IS NULL",
        {"now": uow.now, "r": reason, "h": session.token_hash},
    )
    await journal.record(
        uow,
        "player.session_ended",
        ctx=ctx,
        player_id=session.player_id,
        data={"session": session.ref, "reason": reason},
    )
