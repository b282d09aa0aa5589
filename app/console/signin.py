"""Signing in and out: password, then always a second factor (TOTP, enrolled at the first
sign-in, or a recovery code); step-up before sensitive actions; sign-out.

Every step that moves a session forward gives it a new token. A failed password or code gets
the same answer whether the account exists or not, and counts towards the throttle.
"""

import base64
from typing import Annotated

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import Uow, trace_id
from app.console import accounts, sessions, web
from app.console.accounts import Officer
from app.console.sessions import Session
from core import journal
from core.journal import EventContext
from core.sealing import Sealer
from core.uow import UnitOfWork

router = APIRouter(prefix="/console", include_in_schema=False)
WRONG = "The name or the password is not right."
WRONG_CODE = (
    "That code is not right. Use the current code of your authenticator app, or a recovery code."
)


def _sealer(request: Request) -> Sealer:
    sealer: Sealer = request.app.state.client_secrets
    return sealer


def _ctx(request: Request, session: Session, officer: Officer | None = None) -> EventContext:
    actor = officer.actor if officer else "console"
    return EventContext(actor=actor, trace_id=trace_id(request), session_id=session.ref)


async def _session(request: Request, uow: UnitOfWork) -> tuple[str | None, Session]:
    """This browser's live session, or a new one before sign-in (token None: cookie as is)."""
    found = await sessions.find(uow, request.cookies.get(web.COOKIE))
    if found.session is not None:
        return None, found.session
    token, session = await sessions.start(
        uow, address=web.address(request), user_agent=request.headers.get("user-agent", "")
    )
    return token, session


@router.get("/sign-in")
async def sign_in_form(request: Request, uow: Uow, ended: str | None = None) -> Response:
    token, session = await _session(request, uow)
    if session.stage == "active":
        return web.redirect(request, "/console")
    await uow.commit()
    notice = {
        "idle_timeout": "Your session ended after 15 minutes without activity. Sign in again.",
        "absolute_timeout": "Your session ended after 8 hours. Sign in again.",
        "signed_out": "You are signed out.",
        "ended_by_officer": "This session was ended from another session.",
    }.get(ended or "")
    return web.page(
        request,
        "sign_in.html",
        token=token,
        csrf=session.csrf_token,
        notice=notice,
        sso=request.app.state.console_sso is not None,
    )


@router.post("/sign-in")
async def sign_in(
    request: Request,
    uow: Uow,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    token, session = await _session(request, uow)
    if token is not None or not session.csrf_ok(csrf):
        raise web.CsrfRefused
    address = web.address(request)
    waiting = await accounts.throttled(uow, username=username, address=address)
    if waiting is not None:
        await uow.commit()
        return _sign_in_again(
            request,
            session,
            f"Too many failed attempts: try again after {waiting.until:%H:%M} UTC.",
            status_code=429,
        )
    officer = await accounts.check_password(
        uow, username=username, password=password, address=address, ctx=_ctx(request, session)
    )
    if officer is None:
        await uow.commit()
        return _sign_in_again(request, session, WRONG, status_code=401)
    stage: sessions.Stage = "second_factor" if officer.totp_enrolled else "enrolling"
    pending = {"totp": accounts.new_totp_secret()} if stage == "enrolling" else {}
    sealed = _seal_pending(request, officer, pending)
    new_token, _ = await sessions.advance(
        uow, session, stage=stage, officer_id=officer.id, pending=sealed
    )
    await uow.commit()
    return web.redirect(request, f"/console/{stage.replace('_', '-')}", new_token)


def _sign_in_again(request: Request, session: Session, error: str, *, status_code: int) -> Response:
    return web.page(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf=session.csrf_token,
        error=error,
        sso=request.app.state.console_sso is not None,
    )


def _seal_pending(request: Request, officer: Officer, pending: dict[str, str]) -> dict[str, str]:
    """A TOTP secret being enrolled waits in the session sealed, like an enrolled one."""
    if "totp" not in pending:
        return pending
    sealed = _sealer(request).seal(pending["totp"].encode(), context=f"enrolling:{officer.id}")
    return {"totp": base64.b64encode(sealed).decode()}


def _pending_totp(request: Request, session: Session) -> str:
    sealed = base64.b64decode(session.pending["totp"])
    return _sealer(request).unseal(sealed, context=f"enrolling:{session.officer_id}").decode()


async def _midway(request: Request, uow: UnitOfWork, stage: str) -> tuple[Session, Officer]:
    """The session between password and second factor (or enrolment), and its officer."""
    found = await sessions.find(uow, request.cookies.get(web.COOKIE))
    session = found.session
    if session is None or session.stage != stage or session.officer_id is None:
        raise web.Redirect("/console/sign-in")
    officer = await accounts.require(uow, session.officer_id)
    return session, officer


@router.get("/second-factor")
async def second_factor_form(request: Request, uow: Uow) -> Response:
    session, _ = await _midway(request, uow, "second_factor")
    await uow.commit()
    return web.page(request, "second_factor.html", csrf=session.csrf_token, action="second-factor")


@router.post("/second-factor")
async def second_factor(
    request: Request,
    uow: Uow,
    code: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    session, officer = await _midway(request, uow, "second_factor")
    web.checked_csrf(session, csrf)
    address = web.address(request)
    waiting = await accounts.throttled(uow, username=officer.username, address=address)
    factor = None
    if waiting is None:
        factor = await accounts.check_second_factor(
            uow, officer=officer, code=code, sealer=_sealer(request)
        )
    if factor is None:
        if waiting is None:
            await accounts.record_failure(
                uow,
                username=officer.username,
                address=address,
                reason="second_factor",
                officer_id=officer.id,
                ctx=_ctx(request, session, officer),
            )
        await uow.commit()
        message = (
            WRONG_CODE
            if waiting is None
            else (f"Too many failed attempts: try again after {waiting.until:%H:%M} UTC.")
        )
        return web.page(
            request,
            "second_factor.html",
            status_code=401 if waiting is None else 429,
            csrf=session.csrf_token,
            action="second-factor",
            error=message,
        )
    return await _signed_in(request, uow, session, officer, factor)


async def _signed_in(
    request: Request, uow: UnitOfWork, session: Session, officer: Officer, factor: str
) -> Response:
    token, active = await sessions.advance(
        uow, session, stage="active", officer_id=officer.id, second_factor=True
    )
    await _journal_sign_in(uow, request, active, officer, factor)
    await uow.commit()
    return web.redirect(request, "/console", token)


async def _journal_sign_in(
    uow: UnitOfWork, request: Request, session: Session, officer: Officer, factor: str
) -> None:
    await journal.record(
        uow,
        "console.signed_in",
        ctx=_ctx(request, session, officer),
        data={
            "officer_id": str(officer.id),
            "role": officer.role,
            "session": session.ref,
            "factor": factor,
            "address": session.address,
        },
    )


@router.get("/enrolling")
async def enrol_form(request: Request, uow: Uow) -> Response:
    session, officer = await _midway(request, uow, "enrolling")
    await uow.commit()
    secret = _pending_totp(request, session)
    uri = accounts.provisioning_uri(secret, officer)
    return web.page(
        request,
        "enrol.html",
        csrf=session.csrf_token,
        secret=secret,
        qr_svg=segno.make(uri, error="m").svg_inline(scale=5, dark="#111", title="TOTP QR code"),
    )


@router.post("/enrolling")
async def enrol(
    request: Request,
    uow: Uow,
    code: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    session, officer = await _midway(request, uow, "enrolling")
    web.checked_csrf(session, csrf)
    secret = _pending_totp(request, session)
    if not accounts.totp_matches(secret, code, uow.now):
        return web.page(
            request,
            "enrol.html",
            status_code=401,
            csrf=session.csrf_token,
            secret=secret,
            qr_svg=segno.make(accounts.provisioning_uri(secret, officer), error="m").svg_inline(
                scale=5, dark="#111", title="TOTP QR code"
            ),
            error=WRONG_CODE,
        )
    codes = await accounts.enrol_totp(
        uow,
        officer=officer,
        secret=secret,
        sealer=_sealer(request),
        ctx=_ctx(request, session, officer),
    )
    token, active = await sessions.advance(
        uow, session, stage="active", officer_id=officer.id, second_factor=True
    )
    await _journal_sign_in(uow, request, active, officer, "totp")
    await uow.commit()
    return web.page(
        request, "recovery_codes.html", token=token, codes=codes, csrf=active.csrf_token
    )


@router.get("/step-up")
async def step_up_form(current: web.Signed, request: Request, next: str = "/console") -> Response:  # noqa: A002
    await current.uow.commit()
    return web.page(
        request,
        "second_factor.html",
        csrf=current.csrf,
        action="step-up",
        next=_local(next),
        step_up=True,
        officer=current.officer,
        sso=request.app.state.console_sso is not None,
    )


@router.post("/step-up")
async def step_up(
    current: web.Signed,
    request: Request,
    code: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
    next: Annotated[str, Form(max_length=500)] = "/console",  # noqa: A002
) -> Response:
    web.checked_csrf(current, csrf)
    uow, officer, session = current.uow, current.officer, current.session
    factor = await accounts.check_second_factor(
        uow, officer=officer, code=code, sealer=_sealer(request)
    )
    if factor is None:
        await accounts.record_failure(
            uow,
            username=officer.username,
            address=web.address(request),
            reason="step_up",
            officer_id=officer.id,
            ctx=_ctx(request, session, officer),
        )
        await uow.commit()
        return web.page(
            request,
            "second_factor.html",
            status_code=401,
            csrf=session.csrf_token,
            action="step-up",
            next=_local(next),
            step_up=True,
            officer=officer,
            error=WRONG_CODE,
        )
    await sessions.stepped_up(uow, session)
    await journal.record(
        uow,
        "console.stepped_up",
        ctx=_ctx(request, session, officer),
        data={"officer_id": str(officer.id), "session": session.ref, "factor": factor},
    )
    await uow.commit()
    return web.redirect(request, _local(next))


def _local(to: str) -> str:
    """Only back into the console: never an open redirect."""
    return to if to.startswith("/console") and "//" not in to and "\\" not in to else "/console"


@router.post("/sign-out")
async def sign_out(
    current: web.Signed, request: Request, csrf: Annotated[str | None, Form(max_length=200)] = None
) -> Response:
    web.checked_csrf(current, csrf)
    await sessions.end(
        current.uow,
        current.session,
        reason="signed_out",
        ctx=_ctx(request, current.session, current.officer),
    )
    await current.uow.commit()
    response = web.redirect(request, "/console/sign-in?ended=signed_out")
    web.clear_cookie(response, request)
    return response
