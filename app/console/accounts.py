"""Officers' accounts: who they are, how they prove it, and the throttle on guessing.

A local account signs in with a password (Argon2id, argon2-cffi's RFC 9106 low-memory profile)
and then, always, a second factor: a TOTP code (RFC 6238, pyotp; the secret sealed by the
application's sealer, never in clear in the database) or a one-time recovery code. An account
at an identity provider is named by (issuer, subject) and its password and MFA are the
provider's. Failed sign-ins are counted per name and per address over a window; past a
threshold the name (or address) waits, doubling each further failure, whether or not the
account exists, so the answer never tells which names are real.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.console.models import ROLES
from core import journal, sql
from core.errors import Conflict, InvalidRequest, NotFound
from core.journal import EventContext
from core.sealing import Sealer
from core.uow import UnitOfWork

HASHER = PasswordHasher()  # Argon2id, RFC 9106's second recommended profile
# Verified against when the name is unknown, so that both answers cost the same time.
_ABSENT = HASHER.hash(secrets.token_urlsafe(16))

WINDOW = timedelta(minutes=15)
NAME_THRESHOLD = 5  # failures per name in the window before it waits
ADDRESS_THRESHOLD = 20  # per address: one address trying many names
LONGEST_WAIT = timedelta(hours=1)
RECOVERY_CODES = 10
TOTP_ISSUER = "Pitwarden console"
MIN_PASSWORD = 12


@dataclass(frozen=True)
class Officer:
    id: uuid.UUID
    username: str
    display_name: str
    role: str
    has_password: bool
    totp_enrolled: bool
    disabled: bool

    @property
    def actor(self) -> str:
        return f"officer:{self.id}"


_COLUMNS = (
    "id, username, display_name, role, password_hash IS NOT NULL AS has_password,"
    " totp_enrolled_at IS NOT NULL AS totp_enrolled, disabled_at IS NOT NULL AS disabled"
)


def _officer(row: dict[str, Any]) -> Officer:
    return Officer(**row)


async def by_id(uow: UnitOfWork, officer_id: uuid.UUID) -> Officer | None:
    query = f"SELECT {_COLUMNS} FROM officers WHERE id = %(id)s"  # noqa: S608 - fixed columns
    row = await sql.one(uow, query, {"id": officer_id})
    return _officer(row) if row else None


async def by_oidc(uow: UnitOfWork, issuer: str, subject: str) -> Officer | None:
    row = await sql.one(
        uow,
        f"SELECT {_COLUMNS} FROM officers WHERE oidc_issuer = %(i)s AND oidc_subject = %(s)s",  # noqa: S608
        {"i": issuer, "s": subject},
    )
    return _officer(row) if row else None


async def create(
    uow: UnitOfWork,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str | None,
    oidc: tuple[str, str] | None = None,
    ctx: EventContext,
) -> Officer:
    """A new officer: a local account (a password now, TOTP enrolled at the first sign-in) or
    an identity provider's (issuer, subject)."""
    username = username.strip().lower()
    if role not in ROLES:
        raise InvalidRequest("invalid_role", f"role must be one of {', '.join(ROLES)}")
    if (password is None) == (oidc is None):
        raise InvalidRequest("invalid_account", "an officer has a password or an OIDC identity")
    if password is not None and len(password) < MIN_PASSWORD:
        raise InvalidRequest(
            "password_too_short", f"a password has at least {MIN_PASSWORD} characters"
        )
    exists = await sql.scalar(uow, "SELECT 1 FROM officers WHERE username = %(u)s", {"u": username})
    if exists:
        raise Conflict("officer_exists", f"an officer {username!r} exists")
    officer_id = uuid.uuid4()
    await sql.run(
        uow,
        "INSERT INTO officers (id, username, display_name, role, password_hash, oidc_issuer,"
        " oidc_subject, created_at, created_by) VALUES (%(id)s, %(u)s, %(n)s, %(r)s, %(h)s,"
        " %(i)s, %(s)s, %(now)s, %(by)s)",
        {
            "id": officer_id,
            "u": username,
            "n": display_name,
            "r": role,
            "h": HASHER.hash(password) if password is not None else None,
            "i": oidc[0] if oidc else None,
            "s": oidc[1] if oidc else None,
            "now": uow.now,
            "by": ctx.actor,
        },
    )
    await journal.record(
        uow,
        "console.officer_created",
        ctx=ctx,
        data={"officer_id": str(officer_id), "role": role, "sign_in": "oidc" if oidc else "local"},
    )
    created = await by_id(uow, officer_id)
    assert created is not None  # noqa: S101 - inserted above
    return created


# -- passwords and the throttle ------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """Sign-in refused before the password is even checked: too many recent failures."""

    until: datetime


async def throttled(uow: UnitOfWork, *, username: str, address: str) -> Waiting | None:
    """Whether this name, or this address, must wait before trying again."""
    rows = await sql.all_rows(
        uow,
        "SELECT 'name' AS what, count(*) AS n, max(at) AS last FROM console_sign_in_failures"
        " WHERE username = %(u)s AND at > %(since)s"
        " UNION ALL SELECT 'address', count(*), max(at) FROM console_sign_in_failures"
        " WHERE address = %(a)s AND at > %(since)s",
        {"u": username.strip().lower(), "a": address, "since": uow.now - WINDOW},
    )
    waits = []
    for row in rows:
        threshold = NAME_THRESHOLD if row["what"] == "name" else ADDRESS_THRESHOLD
        if row["n"] >= threshold:
            doubling = min(row["n"] - threshold, 6)  # 1, 2, 4, ... 64 minutes, capped at 1 h
            waits.append(row["last"] + min(timedelta(minutes=2**doubling), LONGEST_WAIT))
    until = max(waits, default=None)
    return Waiting(until) if until is not None and until > uow.now else None


async def check_password(
    uow: UnitOfWork, *, username: str, password: str, address: str, ctx: EventContext
) -> Officer | None:
    """The officer whose password this is, or None (the same answer, after the same work, for
    an unknown name, a wrong password, an account without one or a disabled one); a failure is
    recorded for the throttle and journaled."""
    username = username.strip().lower()
    row = await sql.one(
        uow,
        f"SELECT {_COLUMNS}, password_hash FROM officers WHERE username = %(u)s",  # noqa: S608
        {"u": username},
    )
    stored = row.pop("password_hash") if row and row["password_hash"] else _ABSENT
    try:
        ok = HASHER.verify(stored, password) and row is not None and not row["disabled"]
    except (VerificationError, InvalidHashError):
        ok = False
    if ok and row is not None:
        return _officer(row)
    await record_failure(
        uow,
        username=username,
        address=address,
        reason="password",
        officer_id=row["id"] if row else None,
        ctx=ctx,
    )
    return None


async def record_failure(
    uow: UnitOfWork,
    *,
    username: str,
    address: str,
    reason: str,
    officer_id: uuid.UUID | None,
    ctx: EventContext,
) -> None:
    await sql.run(
        uow,
        "INSERT INTO console_sign_in_failures (username, address, at, reason)"
        " VALUES (%(u)s, %(a)s, %(now)s, %(r)s)",
        {"u": username, "a": address, "now": uow.now, "r": reason},
    )
    waiting = await throttled(uow, username=username, address=address)
    await journal.record(
        uow,
        "console.sign_in_failed",
        ctx=ctx,
        data={
            "officer_id": str(officer_id) if officer_id else None,
            "factor": reason,
            "address": address,
            "locked_until": journal.rfc3339(waiting.until) if waiting else None,
        },
    )


# -- the second factor ---------------------------------------------------------------------


def new_password() -> str:
    """A generated password for a new or reset local account, shown once."""
    return secrets.token_urlsafe(15)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, officer: Officer) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=officer.username, issuer_name=TOTP_ISSUER)


def totp_matches(secret: str, code: str, at: datetime) -> bool:
    """A six-digit code of this period or the one before or after (clock drift)."""
    code = code.strip().replace(" ", "")
    return code.isdigit() and pyotp.TOTP(secret).verify(code, for_time=at, valid_window=1)


def _totp_context(officer_id: uuid.UUID) -> str:
    return f"officer_totp:{officer_id}"


async def enrol_totp(
    uow: UnitOfWork, *, officer: Officer, secret: str, sealer: Sealer, ctx: EventContext
) -> list[str]:
    """Store the confirmed TOTP secret (sealed) and issue fresh recovery codes, shown once."""
    sealed = sealer.seal(secret.encode(), context=_totp_context(officer.id))
    await sql.run(
        uow,
        "UPDATE officers SET totp_sealed = %(s)s, totp_enrolled_at = %(now)s WHERE id = %(id)s",
        {"s": sealed, "now": uow.now, "id": officer.id},
    )
    codes = await _new_recovery_codes(uow, officer.id)
    await journal.record(
        uow, "console.totp_enrolled", ctx=ctx, data={"officer_id": str(officer.id)}
    )
    return codes


async def _new_recovery_codes(uow: UnitOfWork, officer_id: uuid.UUID) -> list[str]:
    await sql.run(
        uow, "DELETE FROM officer_recovery_codes WHERE officer_id = %(id)s", {"id": officer_id}
    )
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODES)]
    for code in codes:
        await sql.run(
            uow,
            "INSERT INTO officer_recovery_codes (officer_id, code_hash, created_at)"
            " VALUES (%(id)s, %(h)s, %(now)s)",
            {"id": officer_id, "h": _code_hash(code), "now": uow.now},
        )
    return codes


def _code_hash(code: str) -> bytes:
    return hashlib.sha256(code.strip().lower().encode()).digest()


async def check_second_factor(
    uow: UnitOfWork, *, officer: Officer, code: str, sealer: Sealer
) -> str | None:
    """Which factor `code` is ('totp' or 'recovery_code', the latter now used up), or None."""
    sealed = await sql.scalar(
        uow, "SELECT totp_sealed FROM officers WHERE id = %(id)s", {"id": officer.id}
    )
    if sealed is None:
        return None
    secret = sealer.unseal(bytes(sealed), context=_totp_context(officer.id)).decode()
    if totp_matches(secret, code, uow.now):
        return "totp"
    used = await sql.scalar(
        uow,
        "UPDATE officer_recovery_codes SET used_at = %(now)s"
        " WHERE officer_id = %(id)s AND code_hash = %(h)s AND used_at IS NULL RETURNING 1",
        {"now": uow.now, "id": officer.id, "h": _code_hash(code)},
    )
    return "recovery_code" if used else None


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def require(uow: UnitOfWork, officer_id: uuid.UUID) -> Officer:
    officer = await by_id(uow, officer_id)
    if officer is None:
        raise NotFound("unknown_officer", f"no officer {officer_id}")
    return officer
