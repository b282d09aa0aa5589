"""The console's pages: home, my sessions, a player. Each page is a console action decided by
the console ruleset (app/console/access.py); a refusal is a page that says why."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, personal, players, sessions, web
from app.console.signin import _ctx
from app.console.standing import EXCLUSIONS
from compliance import kyc
from core.errors import NotFound

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def home(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.home.view")
    if refused:
        return refused
    await current.uow.commit()
    return web.page(request, "home.html", officer=current.officer, csrf=current.csrf)


@router.get("/sessions")
async def my_sessions(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.sessions.own")
    if refused:
        return refused
    listed = await sessions.of_officer(current.uow, current.officer.id, current.session)
    await current.uow.commit()
    return web.page(
        request, "sessions.html", officer=current.officer, csrf=current.csrf, sessions=listed
    )


@router.post("/sessions/{ref}/end")
async def end_session(
    ref: str,
    current: web.Signed,
    request: Request,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    web.checked_csrf(current, csrf)
    refused = await access.allowed(
        current, request, "console.sessions.own", subject=f"session:{ref}"
    )
    if refused:
        return refused
    await sessions.end_other(
        current.uow,
        officer_id=current.officer.id,
        ref=ref,
        ctx=_ctx(request, current.session, current.officer),
    )
    await current.uow.commit()
    return web.redirect(request, "/console/sessions")


@router.get("/players")
async def find_player(current: web.Signed, request: Request, player_id: str = "") -> Response:
    found = web.parse_uuid(player_id.strip())
    if found is not None:
        return web.redirect(request, f"/console/players/{found}")
    await current.uow.commit()
    return web.page(
        request,
        "home.html",
        status_code=422 if player_id else 200,
        officer=current.officer,
        csrf=current.csrf,
        error="A player id is a UUID, e.g. 00000000-0000-4000-8000-000000000001."
        if player_id
        else None,
    )


@router.get("/players/{player_id}")
async def player(player_id: str, current: web.Signed, request: Request) -> Response:
    found = web.parse_uuid(player_id)
    refused = await access.allowed(
        current, request, "console.player.view", player_id=found, subject=f"player:{player_id}"
    )
    if refused:
        return refused
    try:
        shown = await players.page(current.uow, found) if found is not None else None
    except NotFound:
        shown = None
    if shown is None:
        await current.uow.commit()
        return web.page(
            request,
            "not_found.html",
            status_code=404,
            officer=current.officer,
            csrf=current.csrf,
            what=f"No player {player_id}.",
        )
    await current.uow.commit()
    return web.page(
        request,
        "player.html",
        officer=current.officer,
        csrf=current.csrf,
        player=shown,
        personal=await personal.masked(request, shown.player_id),
        purposes=personal.purposes(current.officer.role),
        kyc_levels=kyc.LEVELS,
        exclusion_lengths=[(value, words) for value, (_, _, words) in EXCLUSIONS.items()],
    )
