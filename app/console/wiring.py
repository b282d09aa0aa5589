"""Mounting the console on the app: its routers, static assets and the two exceptions its
pages raise (go elsewhere; a form without this session's CSRF token)."""

import uuid

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from app.console import (
    appeals_pages,
    audit_pages,
    decisions_pages,
    officers_pages,
    pages,
    passkeys,
    payments_pages,
    personal,
    protections,
    rulesets_pages,
    signin,
    sso,
    standing,
    web,
)
from core import journal
from core.journal import EventContext


async def _redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, web.Redirect)  # noqa: S101 - registered for Redirect only
    return web.redirect(request, exc.to, exc.token)


async def _csrf_refused(request: Request, _: Exception) -> Response:
    """Nothing the form asked is done; the attempt is a security event."""
    async with request.app.state.uow_factory() as uow:
        await journal.record(
            uow,
            "security.csrf_refused",
            ctx=EventContext(actor="console", trace_id=uuid.uuid4().hex),
            data={"path": request.url.path, "address": web.address(request)},
        )
        await uow.commit()
    return web.page(request, "csrf.html", status_code=403)


def install(app: FastAPI) -> None:
    app.state.console_sso = sso.client(app.state.settings, app.state.uow_factory.clock)
    app.add_exception_handler(web.Redirect, _redirect)
    app.add_exception_handler(web.CsrfRefused, _csrf_refused)
    app.include_router(signin.router)
    app.include_router(sso.router)
    app.include_router(pages.router)
    app.include_router(personal.router)
    app.include_router(protections.router)
    app.include_router(standing.router)
    app.include_router(officers_pages.router)
    app.include_router(payments_pages.router)
    app.include_router(passkeys.router)
    app.include_router(decisions_pages.router)
    app.include_router(rulesets_pages.router)
    app.include_router(audit_pages.router)
    app.include_router(appeals_pages.router)
    app.mount("/console/static", StaticFiles(directory=web.HERE / "static"), name="console-static")
