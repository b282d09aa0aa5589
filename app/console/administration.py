"""Officers' accounts, as an administrator keeps them: who exists, with which role and which
factors; a new account, a changed role, an account disabled or enabled, and a sign-in reset for
an officer who lost their authenticator. Nobody does any of it to their own account (an
administrator cannot lift or lock themselves out); every change is journaled and ends the
sessions it makes stale, so it takes effect at the officer's next request."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.console.accounts import HASHER, Officer, new_password, require
from app.console.models import ROLES
from core import journal, sql
from core.errors import Conflict, InvalidRequest
from core.journal import EventContext
from core.uow import UnitOfWork


@dataclass(frozen=True)
class Listed:
    id: uuid.UUID
    username: str
    display_name: str
    role: str
    sign_in: str  # "local" or "sso"
    totp_enrolled: bool
    passkeys: int
    disabled: bool
    created_at: datetime
    last_active_at: datetime | None


async def listed(uow: UnitOfWork) -> list[Listed]:
    """Every officer, enabled first, then by name (a console has tens of officers, not more)."""
    rows = await sql.all_rows(
        uow,
        "SELECT o.id, o.username, o.display_name, o.role,"
        " CASE WHEN o.oidc_subject IS NULL THEN 'local' ELSE 'sso' END AS sign_in,"
        " o.totp_enrolled_at IS NOT NULL AS totp_enrolled,"
        " (SELECT count(*) FROM officer_passkeys k WHERE k.officer_id = o.id"
        "  AND k.revoked_at IS NULL) AS passkeys,"
        " o.disabled_at IS NOT NULL AS disabled, o.created_at,"
        " (SELECT max(s.last_seen_at) FROM console_sessions s WHERE s.officer_id = o.id)"
        "  AS last_active_at"
        " FROM officers o ORDER BY o.disabled_at IS NOT NULL, o.username",
        {},
    )
    return [Listed(**row) for row in rows]


def _not_own(by: Officer, officer_id: uuid.UUID) -> None:
    if by.id == officer_id:
        raise Conflict("own_account", "nobody changes their own account: another administrator")


async def _end_sessions(uow: UnitOfWork, officer_id: uuid.UUID, reason: str) -> int:
    ended = await sql.all_rows(
        uow,
        "UPDATE console_sessions SET ended_at = %(now)s, ended_reason = %(r)s"
        " WHERE officer_id = %(o)s AND ended_at IS NULL RETURNING 1 AS one",
        {"now": uow.now, "r": reason, "o": officer_id},
    )
    return len(ended)


async def change_role(
    uow: UnitOfWork, *, officer_id: uuid.UUID, role: str, by: Officer, ctx: EventContext
) -> None:
    _not_own(by, officer_id)
    if role not in ROLES:
        raise InvalidRequest("invalid_role", f"role must be one of {', '.join(ROLES)}")
    officer = await require(uow, officer_id)
    if officer.role == role:
        raise InvalidRequest("role_unchanged", f"{officer.username} is {role} already")
    await sql.run(
        uow, "UPDATE officers SET role = %(r)s WHERE id = %(o)s", {"r": role, "o": officer_id}
    )
    ended = await _end_sessions(uow, officer_id, "role_changed")
    await journal.record(
        uow,
        "console.officer_role_changed",
        ctx=ctx,
        data={
            "officer_id": str(officer_id),
            "from": officer.role,
            "to": role,
            "sessions_ended": ended,
        },
    )


async def set_disabled(
    uow: UnitOfWork, *, officer_id: uuid.UUID, disabled: bool, by: Officer, ctx: EventContext
) -> None:
    _not_own(by, officer_id)
    officer = await require(uow, officer_id)
    if officer.disabled == disabled:
        state = "disabled" if disabled else "enabled"
        raise InvalidRequest("account_unchanged", f"{officer.username} is {state} already")
    await sql.run(
        uow,
        "UPDATE officers SET disabled_at = %(at)s WHERE id = %(o)s",
        {"at": uow.now if disabled else None, "o": officer_id},
    )
    ended = await _end_sessions(uow, officer_id, "account_disabled") if disabled else 0
    data = {"officer_id": str(officer_id), "sessions_ended": ended}
    if disabled:
        await journal.record(uow, "console.officer_disabled", ctx=ctx, data=data)
    else:
        await journal.record(uow, "console.officer_enabled", ctx=ctx, data=data)


async def reset_sign_in(
    uow: UnitOfWork, *, officer_id: uuid.UUID, by: Officer, ctx: EventContext
) -> str | None:
    """For an officer who lost a factor: their TOTP, recovery codes and passkeys are gone and
    their sessions ended; a local account gets a new password (returned, to be shown once), and
    enrols a second factor again at its next sign-in. An SSO account signs in through its
    organisation, which keeps its factors: nothing to reset but passkeys and sessions."""
    _not_own(by, officer_id)
    officer = await require(uow, officer_id)
    password = new_password() if officer.has_password else None
    await sql.run(
        uow,
        "UPDATE officers SET password_hash = coalesce(%(h)s, password_hash), totp_sealed = NULL,"
        " totp_enrolled_at = NULL WHERE id = %(o)s",
        {"h": HASHER.hash(password) if password else None, "o": officer_id},
    )
    await sql.run(
        uow, "DELETE FROM officer_recovery_codes WHERE officer_id = %(o)s", {"o": officer_id}
    )
    revoked = await sql.all_rows(
        uow,
        "UPDATE officer_passkeys SET revoked_at = %(now)s"
        " WHERE officer_id = %(o)s AND revoked_at IS NULL RETURNING 1 AS one",
        {"now": uow.now, "o": officer_id},
    )
    ended = await _end_sessions(uow, officer_id, "sign_in_reset")
    await journal.record(
        uow,
        "console.officer_sign_in_reset",
        ctx=ctx,
        data={
            "officer_id": str(officer_id),
            "new_password": password is not None,
            "passkeys_revoked": len(revoked),
            "sessions_ended": ended,
        },
    )
    return password
