"""Protections an officer adds at once and lifts only with a second officer: kill-switches
(a zone switched off now; back on through a request) and AML holds (set now; cleared through a
request); and the page where requests are decided."""

import uuid
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, approvals, problems, web
from compliance import appeals, jurisdictions, kyc
from core.errors import Conflict, DomainError, NotFound
from policies import killswitch

router = APIRouter(prefix="/console", include_in_schema=False)
Reason = Annotated[str, Form(max_length=500)]
Csrf = Annotated[str | None, Form(max_length=200)]


def problem(request: Request, current: web.Current, error: DomainError) -> Response:
    status = 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 422
    return problems.page(current, request, status, "Not done", error.message)


async def carry_out(
    current: web.Current, request: Request, work: Awaitable[object], *, then: str
) -> Response:
    """Do a console action's work in the request's transaction: committed and on to `then`,
    or rolled back and a page that says why it was refused."""
    try:
        await work
    except DomainError as error:
        await current.uow.rollback()
        return problem(request, current, error)
    await current.uow.commit()
    return web.redirect(request, then)


@router.get("/kill-switches")
async def kill_switches(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.killswitches.view")
    if refused:
        return refused
    states = await killswitch.states(current.uow)
    await current.uow.commit()
    return web.page(
        request,
        "kill_switches.html",
        officer=current.officer,
        csrf=current.csrf,
        zones=[(zone, states.get(zone)) for zone in killswitch.ZONES],
    )


@router.post("/kill-switches/{zone}/off")
async def switch_off(
    zone: str, current: web.Signed, request: Request, reason: Reason, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    refused = await access.allowed(
        current, request, "console.killswitch.change", subject=f"zone:{zone}",
        back="/console/kill-switches",
    )  # fmt: skip
    if refused:
        return refused
    switched = killswitch.switch(
        current.uow, zone=zone, off=True, reason=reason, actor=current.officer.actor,
        ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, switched, then="/console/kill-switches")


@router.post("/kill-switches/{zone}/on")
async def ask_to_switch_on(
    zone: str, current: web.Signed, request: Request, reason: Reason, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    if zone not in killswitch.ZONES:
        return problem(request, current, DomainError("unknown_zone", f"no zone {zone!r}"))
    return await ask(
        current, request, kind="killswitch_on", subject=zone, reason=reason,
        back="/console/kill-switches",
    )  # fmt: skip


@router.post("/players/{player_id}/aml-hold")
async def hold(
    player_id: uuid.UUID, current: web.Signed, request: Request, reason: Reason, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    page = f"/console/players/{player_id}"
    refused = await access.allowed(
        current, request, "console.aml_hold.change", player_id=player_id, back=page
    )
    if refused:
        return refused
    held = kyc.set_aml_hold(
        current.uow, player_id=player_id, on_hold=True, actor=current.officer.actor,
        reason=reason, ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, held, then=page)


@router.post("/players/{player_id}/aml-hold/clear")
async def ask_to_clear_hold(
    player_id: uuid.UUID, current: web.Signed, request: Request, reason: Reason, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    return await ask(
        current, request, kind="aml_hold_clear", subject=str(player_id), reason=reason,
        back=f"/console/players/{player_id}", player_id=player_id,
    )  # fmt: skip


async def ask(
    current: web.Current,
    request: Request,
    *,
    kind: str,
    subject: str,
    reason: str,
    back: str,
    player_id: uuid.UUID | None = None,
    payload: dict[str, str] | None = None,
) -> Response:
    refused = await access.allowed(
        current, request, f"console.request.{kind}", player_id=player_id, subject=subject,
        back=back,
    )  # fmt: skip
    if refused:
        return refused
    asked = approvals.ask(
        current.uow, kind=kind, subject=subject, payload=payload or {}, reason=reason,
        officer=current.officer, ctx=current.ctx, player_id=player_id,
    )  # fmt: skip
    return await carry_out(current, request, asked, then="/console/approvals")


@router.get("/approvals")
async def approvals_page(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.approvals.view")
    if refused:
        return refused
    requests = await approvals.listed(current.uow)
    await current.uow.commit()
    return web.page(
        request,
        "approvals.html",
        officer=current.officer,
        csrf=current.csrf,
        requests=requests,
        words=approvals.WORDS,
        remedies=appeals.REMEDIES,
        now=current.uow.now,
    )


@router.post("/approvals/{request_id}/{verdict}")
async def decide(
    request_id: uuid.UUID,
    verdict: str,
    current: web.Signed,
    request: Request,
    *,
    reason: Reason,
    csrf: Csrf = None,
) -> Response:
    web.checked_csrf(current, csrf)
    if verdict not in {"approve", "reject"}:
        return problem(request, current, DomainError("unknown_verdict", "approve or reject"))
    try:
        asked = await approvals.find(current.uow, request_id)
    except DomainError as error:
        return problem(request, current, error)
    refused = await access.allowed(
        current, request, f"console.approve.{asked.kind}", player_id=asked.player_id,
        subject=f"request:{asked.id}", own_request=asked.requested_by == current.officer.id,
        back="/console/approvals",
    )  # fmt: skip
    if refused:
        return refused
    try:
        after = await approvals.decide(
            current.uow,
            request=asked,
            officer=current.officer,
            approve=verdict == "approve",
            reason=reason,
            ctx=current.ctx,
            cashier=request.app.state.cashier,
            settings=jurisdictions.load(
                request.app.state.settings.jurisdictions_file or jurisdictions.JURISDICTIONS
            ),
            notifier=request.app.state.notifier,
        )
    except DomainError as error:
        await current.uow.rollback()
        return problem(request, current, error)
    await current.uow.commit()
    if after is not None:  # e.g. an approved payout goes to its provider, after the commit
        await after()
    return web.redirect(request, "/console/approvals")
