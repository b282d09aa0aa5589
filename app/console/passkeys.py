"""Passkeys (WebAuthn, py_webauthn): the phishing-resistant way into the console.

An officer signed in adds a passkey from "Security" (the browser creates a credential bound to
this console's origin; we keep its id, public key and counter). Signing in with a passkey needs
no name and no password: the authenticator finds its credential for this site and proves the
person there with user verification (PIN, fingerprint), so it counts as both factors; an officer
signed in steps up with it too. The challenge of each ceremony waits in the session, used once.
Pages without JavaScript keep password + TOTP; this is the option that needs it.
"""

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import webauthn
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.auth import Uow
from app.console import access, accounts, sessions, web
from app.console.signin import _ctx, _journal_sign_in, _session
from core import journal, sql
from core.uow import UnitOfWork

router = APIRouter(prefix="/console", include_in_schema=False)
RP_NAME = "Pitwarden console"
Csrf = Annotated[str | None, Form(max_length=200)]
Credential = Annotated[str, Form(max_length=20000)]


@dataclass(frozen=True)
class Passkey:
    credential_id: bytes
    name: str
    created_at: Any
    last_used_at: Any


def _site(request: Request) -> tuple[str, str]:
    """(RP ID, origin): this console's public URL when configured, else the request's own."""
    base = request.app.state.settings.console_url or str(request.base_url)
    parts = urlsplit(base)
    return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _refused(message: str, status_code: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


async def of_officer(uow: UnitOfWork, officer_id: uuid.UUID) -> list[Passkey]:
    rows = await sql.all_rows(
        uow,
        "SELECT credential_id, name, created_at, last_used_at FROM officer_passkeys"
        " WHERE officer_id = %(o)s AND revoked_at IS NULL ORDER BY created_at",
        {"o": officer_id},
    )
    return [
        Passkey(bytes(r["credential_id"]), r["name"], r["created_at"], r["last_used_at"])
        for r in rows
    ]


@router.get("/security")
async def security(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.sessions.own", subject="passkeys")
    if refused:
        return refused
    keys = await of_officer(current.uow, current.officer.id)
    await current.uow.commit()
    return web.page(
        request, "security.html", officer=current.officer, csrf=current.csrf, passkeys=keys
    )


@router.post("/passkeys/options")
async def registration_options(
    current: web.Signed, request: Request, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    rp_id, _ = _site(request)
    existing = await of_officer(current.uow, current.officer.id)
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_id=current.officer.id.bytes,
        user_name=current.officer.username,
        user_display_name=current.officer.display_name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=k.credential_id) for k in existing],
    )
    await sessions.remember(
        current.uow, current.session, {"webauthn_registration": _b64(options.challenge)}
    )
    await current.uow.commit()
    return Response(webauthn.options_to_json(options), media_type="application/json")


@router.post("/passkeys")
async def register(
    current: web.Signed,
    request: Request,
    credential: Credential,
    name: Annotated[str, Form(max_length=80)] = "Passkey",
    csrf: Csrf = None,
) -> Response:
    web.checked_csrf(current, csrf)
    challenge = current.session.pending.get("webauthn_registration")
    await sessions.remember(current.uow, current.session, {})  # one ceremony, one challenge
    if not challenge:
        await current.uow.commit()
        return _refused("No passkey registration is in progress: start again.")
    rp_id, origin = _site(request)
    try:
        verified = webauthn.verify_registration_response(
            credential=json.loads(credential),
            expected_challenge=base64.b64decode(challenge),
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        await current.uow.commit()
        return _refused(f"The passkey was not accepted: {error}")
    await sql.run(
        current.uow,
        "INSERT INTO officer_passkeys (credential_id, officer_id, public_key, sign_count, name,"
        " created_at) VALUES (%(id)s, %(o)s, %(k)s, %(n)s, %(name)s, %(now)s)",
        {
            "id": verified.credential_id,
            "o": current.officer.id,
            "k": verified.credential_public_key,
            "n": verified.sign_count,
            "name": name.strip() or "Passkey",
            "now": current.uow.now,
        },
    )
    await journal.record(
        current.uow,
        "console.passkey_added",
        ctx=_ctx(request, current.session, current.officer),
        data={"officer_id": str(current.officer.id), "name": name.strip() or "Passkey"},
    )
    await current.uow.commit()
    return JSONResponse({"next": "/console/security"})


@router.post("/passkeys/sign-in/options")
async def authentication_options(request: Request, uow: Uow, csrf: Csrf = None) -> Response:
    token, session = await _session(request, uow)
    if token is not None or not session.csrf_ok(csrf):
        raise web.CsrfRefused
    rp_id, _ = _site(request)
    options = webauthn.generate_authentication_options(
        rp_id=rp_id, user_verification=UserVerificationRequirement.REQUIRED
    )
    await sessions.remember(uow, session, {"webauthn_authentication": _b64(options.challenge)})
    await uow.commit()
    return Response(webauthn.options_to_json(options), media_type="application/json")


@router.post("/passkeys/sign-in")
async def authenticate(
    request: Request,
    uow: Uow,
    credential: Credential,
    csrf: Csrf = None,
    next: Annotated[str, Form(max_length=500)] = "/console",  # noqa: A002 - a step-up's return
) -> Response:
    token, session = await _session(request, uow)
    if token is not None or not session.csrf_ok(csrf):
        raise web.CsrfRefused
    challenge = session.pending.get("webauthn_authentication")
    await sessions.remember(uow, session, {})
    officer = await _verified(request, uow, credential, challenge)
    if officer is None or (session.officer_id is not None and session.officer_id != officer.id):
        await journal.record(
            uow,
            "console.sign_in_failed",
            ctx=_ctx(request, session),
            data={"officer_id": None, "factor": "passkey", "address": session.address},
        )
        await uow.commit()
        return _refused("This passkey did not sign you in.", status_code=401)
    if session.stage == "active":  # a step-up
        await sessions.stepped_up(uow, session)
        await journal.record(
            uow,
            "console.stepped_up",
            ctx=_ctx(request, session, officer),
            data={"officer_id": str(officer.id), "session": session.ref, "factor": "passkey"},
        )
        await uow.commit()
        target = next if next.startswith("/console") and "//" not in next else "/console"
        return JSONResponse({"next": target})
    new_token, active = await sessions.advance(
        uow, session, stage="active", officer_id=officer.id, second_factor=True
    )
    await _journal_sign_in(uow, request, active, officer, "passkey")
    await uow.commit()
    response = JSONResponse({"next": "/console"})
    web.set_cookie(response, request, new_token)
    return response


async def _verified(
    request: Request, uow: UnitOfWork, credential: str, challenge: object
) -> accounts.Officer | None:
    """The officer whose passkey signed this challenge, its counter moved on; else None."""
    if not isinstance(challenge, str):
        return None
    try:
        parsed = json.loads(credential)
        credential_id = webauthn.base64url_to_bytes(parsed["rawId"])
    except (ValueError, KeyError, TypeError):
        return None
    row = await sql.one(
        uow,
        "SELECT officer_id, public_key, sign_count FROM officer_passkeys"
        " WHERE credential_id = %(id)s AND revoked_at IS NULL",
        {"id": credential_id},
    )
    if row is None:
        return None
    rp_id, origin = _site(request)
    try:
        verified = webauthn.verify_authentication_response(
            credential=parsed,
            expected_challenge=base64.b64decode(challenge),
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=bytes(row["public_key"]),
            credential_current_sign_count=row["sign_count"],
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        return None
    await sql.run(
        uow,
        "UPDATE officer_passkeys SET sign_count = %(n)s, last_used_at = %(now)s"
        " WHERE credential_id = %(id)s",
        {"n": verified.new_sign_count, "now": uow.now, "id": credential_id},
    )
    officer = await accounts.by_id(uow, row["officer_id"])
    return None if officer is None or officer.disabled else officer
