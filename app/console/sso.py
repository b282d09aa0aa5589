"""Single sign-on: OpenID Connect, authorization code + PKCE (app/console/oidc.py, decision 0019).

`POST /console/sso` begins: the state, nonce and PKCE verifier wait in the session (server-side)
and the browser goes to the provider. `GET /console/oidc/callback` finishes: the waiting record
is consumed first (so a replayed callback finds nothing), the code is exchanged and the ID token
checked, and the identity (issuer, subject) must be an officer's.

The provider's sign-in counts as both factors (its own MFA policy applies); an officer signed in
this way who must step up goes through the provider again, and the callback then refreshes the
session's second factor.

The session cookie is SameSite=Strict, so a browser keeps it back from the callback, which the
provider's page, on another site, sent it to. A callback without the cookie answers a page of
ours that goes on at once (a meta refresh, no script) to `GET /console/oidc/return` with the
same query: a navigation from this site, which carries the cookie, and the sign-in finishes
there. Nothing is read or consumed before that; the state, bound to the session, still decides.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import Uow
from app.console import accounts, sessions, web
from app.console.oidc import OidcClient, OidcConfig, OidcError, Started
from app.console.signin import _ctx, _journal_sign_in, _session, _sign_in_again
from core import journal
from core.settings import Settings
from core.uow import Clock, UnitOfWork

router = APIRouter(prefix="/console", include_in_schema=False)
CALLBACK = "/console/oidc/callback"
RETURN = "/console/oidc/return"
NO_ACCOUNT = "There is no console account for this identity. Ask an administrator for one."


def client(settings: Settings, clock: Clock) -> OidcClient | None:
    """The provider's client when single sign-on is configured (all three settings), else
    None: the sign-in page then offers local accounts only."""
    wanted = (
        settings.console_oidc_issuer,
        settings.console_oidc_client_id,
        settings.console_oidc_client_secret,
    )
    if not all(wanted):
        return None
    base = settings.console_url or f"http://{settings.host}:{settings.port}"
    config = OidcConfig(
        issuer=settings.console_oidc_issuer,
        client_id=settings.console_oidc_client_id,
        client_secret=settings.console_oidc_client_secret,
        redirect_uri=base.rstrip("/") + CALLBACK,
    )
    return OidcClient(config, clock=clock)


def _sso(request: Request) -> OidcClient:
    sso: OidcClient | None = request.app.state.console_sso
    if sso is None:
        raise web.Redirect("/console/sign-in")
    return sso


@router.post("/sso")
async def begin(
    request: Request,
    uow: Uow,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
    next: Annotated[str, Form(max_length=500)] = "/console",  # noqa: A002 - a step-up's return
) -> Response:
    sso = _sso(request)
    token, session = await _session(request, uow)
    if token is not None or not session.csrf_ok(csrf):
        raise web.CsrfRefused
    try:
        started = await sso.begin()
    except OidcError as error:
        await uow.commit()
        return _sign_in_again(request, session, error.message, status_code=503)
    await sessions.remember(uow, session, {"oidc": _stored(started), "next": next})
    await uow.commit()
    return web.redirect(request, started.url)


def _stored(started: Started) -> dict[str, str]:
    return {
        "state": started.state,
        "nonce": started.nonce,
        "verifier": started.code_verifier,
        "at": started.created_at.isoformat(),
    }


def _started(stored: dict[str, Any]) -> Started:
    return Started(
        "",
        stored["state"],
        stored["nonce"],
        stored["verifier"],
        datetime.fromisoformat(stored["at"]),
    )


@router.get("/oidc/callback")
async def callback(request: Request, uow: Uow) -> Response:
    if web.COOKIE not in request.cookies:  # back from the provider's site: see the docstring
        _sso(request)
        to = RETURN + (f"?{request.url.query}" if request.url.query else "")
        return web.page(request, "oidc_return.html", to=to)
    return await _finish(request, uow)


@router.get("/oidc/return")
async def returned(request: Request, uow: Uow) -> Response:
    """The callback again, asked by a page of this site: now with the session's cookie."""
    return await _finish(request, uow)


async def _finish(request: Request, uow: UnitOfWork) -> Response:
    sso = _sso(request)
    found = await sessions.find(uow, request.cookies.get(web.COOKIE))
    session = found.session
    if session is None or "oidc" not in session.pending:
        raise web.Redirect("/console/sign-in")
    pending = session.pending
    await sessions.remember(uow, session, {})  # used once, whatever happens next
    await uow.commit()
    try:
        identity = await sso.finish(
            params=dict(request.query_params), started=_started(pending["oidc"])
        )
    except OidcError as error:
        return await _refused(request, uow, session, error.code, error.message)
    officer = await accounts.by_oidc(uow, identity.issuer, identity.subject)
    if officer is None or officer.disabled:
        return await _refused(request, uow, session, "oidc_no_account", NO_ACCOUNT)
    if session.stage == "active" and session.officer_id == officer.id:  # a step-up
        await sessions.stepped_up(uow, session)
        await journal.record(
            uow,
            "console.stepped_up",
            ctx=_ctx(request, session, officer),
            data={"officer_id": str(officer.id), "session": session.ref, "factor": "oidc"},
        )
        await uow.commit()
        return web.redirect(request, _back(pending.get("next")))
    token, active = await sessions.advance(
        uow, session, stage="active", officer_id=officer.id, second_factor=True
    )
    await _journal_sign_in(uow, request, active, officer, "oidc")
    await uow.commit()
    return web.redirect(request, "/console", token)


def _back(to: object) -> str:
    text = to if isinstance(to, str) else "/console"
    return text if text.startswith("/console") and "//" not in text else "/console"


async def _refused(
    request: Request, uow: UnitOfWork, session: sessions.Session, code: str, message: str
) -> Response:
    await journal.record(
        uow,
        "console.sign_in_failed",
        ctx=_ctx(request, session),
        data={"officer_id": None, "factor": "oidc", "code": code, "address": session.address},
    )
    await uow.commit()
    return _sign_in_again(request, session, message, status_code=401)
