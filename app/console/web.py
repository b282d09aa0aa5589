"""The console's plumbing: the session cookie, templates, and who is asking.

The cookie is HttpOnly and SameSite=Strict always, Secure unless the console is reached over
plain HTTP on a loopback address (`make run`); it holds only the random token. Pages are
rendered by Jinja2 with autoescaping; every form carries the session's CSRF token and every
POST checks it before anything else.
"""

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.auth import Uow, trace_id
from app.console import accounts, sessions
from app.console.accounts import Officer
from app.console.sessions import Session
from core.journal import EventContext
from core.uow import UnitOfWork

COOKIE = "pitwarden_console"
HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
    )
)
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class Redirect(Exception):
    """Leave the page for another console page (sign-in, step-up), keeping the cookie."""

    def __init__(self, to: str, token: str | None = None) -> None:
        super().__init__(to)
        self.to = to
        self.token = token


def secure_cookie(request: Request) -> bool:
    return not (request.url.scheme == "http" and request.url.hostname in LOOPBACK)


def set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
        path="/console",
        max_age=int(sessions.ABSOLUTE.total_seconds()),
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/console", httponly=True, samesite="strict", secure=secure_cookie(request)
    )


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def redirect(request: Request, to: str, token: str | None = None) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    if token is not None:
        set_cookie(response, request, token)
    return response


def page(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    token: str | None = None,
    **context: Any,  # noqa: ANN401
) -> HTMLResponse:
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {"request": request, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"  # pages show personal data and tokens
    if token is not None:
        set_cookie(response, request, token)
    return response


@dataclass(frozen=True)
class Current:
    """The signed-in officer and their session, for one request."""

    uow: UnitOfWork
    officer: Officer
    session: Session
    trace_id: str

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    @property
    def ctx(self) -> EventContext:
        """Who acts, for the events an action writes: the officer, in this session."""
        return EventContext(
            actor=self.officer.actor, trace_id=self.trace_id, session_id=self.session.ref
        )


async def _current(request: Request, uow: Uow) -> Current:
    found = await sessions.find(uow, request.cookies.get(COOKIE))
    session = found.session
    if session is None or session.stage != "active" or session.officer_id is None:
        if found.ended is not None:
            await uow.commit()  # the expiry is recorded
        to = "/console/sign-in" + (f"?ended={found.ended}" if found.ended else "")
        raise Redirect(to)
    officer = await accounts.by_id(uow, session.officer_id)
    if officer is None or officer.disabled:
        raise Redirect("/console/sign-in")
    return Current(uow, officer, session, trace_id(request))


Signed = Annotated[Current, Depends(_current)]


def checked_csrf(current: Current | Session, given: str | None) -> None:
    session = current.session if isinstance(current, Current) else current
    if not session.csrf_ok(given):
        raise CsrfRefused


class CsrfRefused(Exception):
    """A state-changing form without this session's CSRF token: nothing is done."""


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
