"""A player's KYC level and exclusions, changed from the player's page.

What adds a protection takes effect at once: a lowered KYC level (`console.kyc.lower`), a
time-out or a self-exclusion the officer starts (`console.exclusion.change`; an exclusion is
never shortened, rg.exclude refuses it). What lifts one is four-eyes: a raised KYC level lowers
what the gate asks of the player, so it is a request a senior officer decides
(`console.request.kyc_raise`, approvals.py). Each needs the second factor within 5 minutes.
"""

import uuid
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, web
from app.console.protections import Csrf, Reason, ask, carry_out, problem
from compliance import kyc, rg
from core.errors import DomainError, InvalidRequest

router = APIRouter(prefix="/console", include_in_schema=False)

# The lengths an officer chooses from, in the words the page shows (rg.exclude checks them).
EXCLUSIONS: dict[str, tuple[Literal["time_out", "self_exclusion"], timedelta | None, str]] = {
    "time_out_1d": ("time_out", timedelta(days=1), "Time-out, 24 hours"),
    "time_out_1w": ("time_out", timedelta(weeks=1), "Time-out, 1 week"),
    "time_out_6w": ("time_out", timedelta(weeks=6), "Time-out, 6 weeks"),
    "self_exclusion_6m": ("self_exclusion", timedelta(days=183), "Self-exclusion, 6 months"),
    "self_exclusion_1y": ("self_exclusion", timedelta(days=365), "Self-exclusion, 1 year"),
    "self_exclusion_5y": ("self_exclusion", timedelta(days=5 * 365), "Self-exclusion, 5 years"),
    "self_exclusion": ("self_exclusion", None, "Self-exclusion with no end"),
}


@router.post("/players/{player_id}/kyc")
async def change_level(
    player_id: uuid.UUID,
    current: web.Signed,
    request: Request,
    *,
    level: Annotated[str, Form(max_length=40)],
    reason: Reason,
    csrf: Csrf = None,
) -> Response:
    web.checked_csrf(current, csrf)
    page = f"/console/players/{player_id}"
    if level not in kyc.LEVELS:
        unknown = InvalidRequest("invalid_kyc_level", f"levels are {', '.join(kyc.LEVELS)}")
        return problem(request, current, unknown)
    try:
        now = (await kyc.standing(current.uow, player_id)).kyc_level
    except DomainError as error:
        return problem(request, current, error)
    if level == now:
        same = InvalidRequest("kyc_level_unchanged", f"the player's KYC level is {now} already")
        return problem(request, current, same)
    if kyc.LEVELS.index(level) > kyc.LEVELS.index(now):
        return await ask(
            current, request, kind="kyc_raise", subject=str(player_id), reason=reason,
            back=page, player_id=player_id, payload={"level": level, "from": now},
        )  # fmt: skip
    refused = await access.allowed(
        current, request, "console.kyc.lower", player_id=player_id, back=page
    )
    if refused:
        return refused
    lowered = kyc.set_level(
        current.uow, player_id=player_id, level=level,
        actor=current.officer.actor, reason=reason, ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, lowered, then=page)


@router.post("/players/{player_id}/exclusion")
async def exclude(
    player_id: uuid.UUID,
    current: web.Signed,
    request: Request,
    *,
    length: Annotated[str, Form(max_length=40)],
    reason: Reason,
    csrf: Csrf = None,
) -> Response:
    web.checked_csrf(current, csrf)
    page = f"/console/players/{player_id}"
    if length not in EXCLUSIONS:
        unknown = InvalidRequest("invalid_exclusion", f"lengths are {', '.join(EXCLUSIONS)}")
        return problem(request, current, unknown)
    if not reason.strip():
        return problem(request, current, InvalidRequest("reason_required", "say why"))
    refused = await access.allowed(
        current, request, "console.exclusion.change", player_id=player_id, back=page
    )
    if refused:
        return refused
    kind, lasting, _ = EXCLUSIONS[length]
    started = rg.exclude(
        current.uow, player_id=player_id, kind=kind,
        until=None if lasting is None else current.uow.now + lasting,
        actor=current.officer.actor, reason=reason.strip(), ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, started, then=page)
