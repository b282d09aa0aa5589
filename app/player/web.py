"""The player page's plumbing: the session cookie, templates, who is asking, and the page that
says what went wrong.

The cookie is HttpOnly and SameSite=Strict always, `Path=/player`, Secure unless the page is
reached over plain HTTP on a loopback address (`make run`); it holds only the random token.
Pages are rendered by Jinja2 with autoescaping; every form carries the session's CSRF token and
every POST checks it before anything else. A refusal is a page with its HTTP status and its
error code (the same codes as the API's, README's table), and nothing done.
"""

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.auth import trace_id
from app.errors import Forbidden, Unauthorized, status_of
from app.player import sessions
from app.player.sessions import Session
from core import journal
from core.errors import DomainError
from core.journal import EventContext
from core.uow import UnitOfWork

COOKIE = "pitwarden_player"
HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
)
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def secure_cookie(request: Request) -> bool:
    return not (request.url.scheme == "http" and request.url.hostname in LOOPBACK)


def set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
        path="/player",
        max_age=int(sessions.ABSOLUTE.total_seconds()),
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/player", httponly=True, samesite="strict", secure=secure_cookie(request)
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
    response.headers["Cache-Control"] = "no-store"  # the player's own data
    response.headers["Referrer-Policy"] = "no-referrer"  # /player/start carries a token
    if token is not None:
        set_cookie(response, request, token)
    return response


def problem(request: Request, error: DomainError, current: "Current | None" = None) -> Response:
    """A refusal as a page: its status, its code (machine-readable in `data-error-code`), its
    message; a session that is over also loses its cookie."""
    response = page(
        request,
        "problem.html",
        status_code=status_of(error),
        code=error.code,
        message=error.message,
        details=error.details,
        csrf=current.csrf if current else None,
    )
    if error.code == "session_required":
        clear_cookie(response, request)
    return response


@dataclass(frozen=True)
class Current:
    """The player and their session, for one request."""

    uow: UnitOfWork
    session: Session
    trace_id: str

    @property
    def player_id(self) -> uuid.UUID:
        return self.session.player_id

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    @property
    def ctx(self) -> EventContext:
        return sessions.context(self.session, self.trace_id)


async def current(request: Request, uow: UnitOfWork) -> Current:
    """The session of this request's cookie, or 401 `session_required` (an expired one is
    ended and the ending committed first)."""
    found = await sessions.find(uow, request.cookies.get(COOKIE))
    if found.session is None:
        if found.ended is not None:
            await uow.commit()
        raise Unauthorized(
            "session_required",
            "your session has ended"
            + (f" ({found.ended.replace('_', ' ')})" if found.ended else "")
            + ": open this page again from the casino's site",
            ended=found.ended,
        )
    return Current(uow, found.session, trace_id(request))


async def checked_csrf(request: Request, current: Current, given: str | None) -> None:
    """A form without this session's CSRF token does nothing (403 `csrf_refused`): checked
    before anything the form asks, the attempt is a security event, committed alone."""
    if current.session.csrf_ok(given):
        return
    await journal.record(
        current.uow,
        "security.csrf_refused",
        ctx=current.ctx,
        player_id=current.player_id,
        data={"path": request.url.path, "address": address(request)},
    )
    await current.uow.commit()
    raise Forbidden("csrf_refused", "this form did not come from your current session")
