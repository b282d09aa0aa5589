"""The administrator's pages: officers' accounts and roles (administration.py). Seeing them is
`console.officers.manage`; changing one is `console.officers.change`, which asks for the second
factor within 5 minutes. A new password is shown once, on a page nobody caches."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, accounts, administration, web
from app.console.models import ROLES
from app.console.protections import Csrf, carry_out, problem
from core.errors import DomainError, InvalidRequest

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = "/console/officers"
Field = Annotated[str, Form(max_length=200)]


async def _may_change(current: web.Current, request: Request, subject: str) -> Response | None:
    return await access.allowed(
        current, request, "console.officers.change", subject=subject, back=PAGE
    )


def _once(request: Request, current: web.Current, username: str, password: str) -> Response:
    response = web.page(
        request,
        "officer_password.html",
        officer=current.officer,
        csrf=current.csrf,
        username=username,
        password=password,
    )
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/officers")
async def officers(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.officers.manage")
    if refused:
        return refused
    found = await administration.listed(current.uow)
    await current.uow.commit()
    return web.page(
        request,
        "officers.html",
        officer=current.officer,
        csrf=current.csrf,
        officers=found,
        roles=ROLES,
        sso=bool(request.app.state.settings.console_oidc_issuer),
    )


@router.post("/officers")
async def create(
    current: web.Signed,
    request: Request,
    *,
    username: Field,
    display_name: Field,
    role: Field,
    sso_subject: Field = "",
    csrf: Csrf = None,
) -> Response:
    web.checked_csrf(current, csrf)
    refused = await _may_change(current, request, f"officer:{username}")
    if refused:
        return refused
    issuer = request.app.state.settings.console_oidc_issuer
    if sso_subject and not issuer:
        return problem(request, current, InvalidRequest("sso_off", "single sign-on is off"))
    password = None if sso_subject else accounts.new_password()
    try:
        made = await accounts.create(
            current.uow, username=username, display_name=display_name.strip() or username,
            role=role, password=password, oidc=(issuer, sso_subject) if sso_subject else None,
            ctx=current.ctx,
        )  # fmt: skip
    except DomainError as error:
        await current.uow.rollback()
        return problem(request, current, error)
    await current.uow.commit()
    if password is None:
        return web.redirect(request, PAGE)
    return _once(request, current, made.username, password)


async def _change(
    current: web.Current,
    request: Request,
    officer_id: uuid.UUID,
    work: Callable[[], Awaitable[object]],
) -> Response:
    refused = await _may_change(current, request, f"officer:{officer_id}")
    if refused:
        return refused
    return await carry_out(current, request, work(), then=PAGE)


@router.post("/officers/{officer_id}/role")
async def change_role(
    officer_id: uuid.UUID, current: web.Signed, request: Request, role: Field, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    return await _change(
        current, request, officer_id,
        lambda: administration.change_role(
            current.uow, officer_id=officer_id, role=role, by=current.officer, ctx=current.ctx
        ),
    )  # fmt: skip


@router.post("/officers/{officer_id}/{state}")
async def enable_or_disable(
    officer_id: uuid.UUID, state: str, current: web.Signed, request: Request, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    if state == "reset":
        return await _reset(officer_id, current, request)
    if state not in {"disable", "enable"}:
        return problem(request, current, InvalidRequest("unknown_change", f"no change {state!r}"))
    return await _change(
        current, request, officer_id,
        lambda: administration.set_disabled(
            current.uow, officer_id=officer_id, disabled=state == "disable", by=current.officer,
            ctx=current.ctx,
        ),
    )  # fmt: skip


async def _reset(officer_id: uuid.UUID, current: web.Current, request: Request) -> Response:
    refused = await _may_change(current, request, f"officer:{officer_id}")
    if refused:
        return refused
    try:
        password = await administration.reset_sign_in(
            current.uow, officer_id=officer_id, by=current.officer, ctx=current.ctx
        )
        target = await accounts.require(current.uow, officer_id)
    except DomainError as error:
        await current.uow.rollback()
        return problem(request, current, error)
    await current.uow.commit()
    if password is None:
        return web.redirect(request, PAGE)
    return _once(request, current, target.username, password)
