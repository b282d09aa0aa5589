"""Responsible gambling for operators: limits, time-outs, self-exclusions, and where a player
stands. The player's own calls (app/api/me.py) share the three functions below."""

import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.api import idempotent
from app.api.admin import parse_instant
from app.auth import IdempotencyKey, Operator, Uow
from app.contract import refusals
from compliance import rg
from core import players
from core.journal import EventContext
from core.money import format_minor, parse_amount
from core.uow import UnitOfWork

router = APIRouter(prefix="/v1/admin/players", tags=["responsible gambling"])
# Shared with the player's own calls (app/api/me.py).
LIMIT_REFUSALS = {
    404: ["unknown_player"],
    422: ["invalid_limit", "invalid_amount", "too_many_decimals", "amount_too_large"],
}
EXCLUSION_REFUSALS = {
    404: ["unknown_player"],
    409: ["exclusion_cannot_be_shortened"],
    422: ["invalid_exclusion", "invalid_datetime"],
}
PlayerId = schemas.PlayerId


async def change_limit(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    kind: rg.Kind,
    period: rg.Period,
    amount: str | None,
    actor: str,
    ctx: EventContext,
) -> schemas.LimitChanged:
    currency = (await players.wallet(uow, player_id)).currency
    minor = None if amount is None else parse_amount(amount, currency, allow_zero=True).minor
    done = await rg.set_limit(
        uow, player_id=player_id, kind=kind, period=period, amount=minor, actor=actor, ctx=ctx
    )
    return schemas.LimitChanged(
        kind=done.kind,
        period=done.period,
        amount=None if minor is None else format_minor(minor, currency),
        effective_at=done.effective_at,
        immediate=done.immediate,
        message=rg.describe(done, currency),
    )


async def start_exclusion(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    kind: Literal["time_out", "self_exclusion"],
    until: str | None,
    actor: str,
    reason: str,
    ctx: EventContext,
) -> schemas.ExclusionStarted:
    await players.wallet(uow, player_id)  # an unknown player is a 404
    done = await rg.exclude(
        uow,
        player_id=player_id,
        kind=kind,
        until=parse_instant(until, "until") if until else None,
        actor=actor,
        reason=reason,
        ctx=ctx,
    )
    return schemas.ExclusionStarted(kind=done.kind, starts_at=done.starts_at, ends_at=done.ends_at)


async def standing_of(uow: UnitOfWork, player_id: uuid.UUID) -> schemas.ResponsibleGambling:
    currency = (await players.wallet(uow, player_id)).currency
    current = await rg.limits(uow, player_id)
    used = await rg.usage(uow, player_id)

    def money(minor: int | None) -> str | None:
        return None if minor is None else format_minor(minor, currency)

    states = []
    for kind in rg.KINDS:
        for period in rg.PERIODS:
            pending = current.pending.get((kind, period))
            states.append(
                schemas.LimitState(
                    kind=kind,
                    period=period,
                    in_force=money(current.in_force.get((kind, period))),
                    used=format_minor(used[kind, period], currency),
                    pending=money(pending[0]) if pending else None,
                    pending_from=pending[1] if pending else None,
                )
            )
    return schemas.ResponsibleGambling(
        player_id=player_id,
        currency=currency,
        limits=states,
        exclusions=[
            schemas.ExclusionStarted(kind=e.kind, starts_at=e.starts_at, ends_at=e.ends_at)
            for e in await rg.exclusions_in_force(uow, player_id)
        ],
    )


@router.post(
    "/{player_id}/limits",
    response_model=schemas.LimitChanged,
    responses=refusals(LIMIT_REFUSALS),
)
async def set_limit(
    *,
    request: Request,
    player_id: PlayerId,
    body: schemas.LimitRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """A decrease is in force at once; an increase or a removal after 24 hours."""

    async def act() -> schemas.LimitChanged:
        return await change_limit(
            uow,
            player_id=player_id,
            kind=body.kind,
            period=body.period,
            amount=body.amount,
            actor=principal.actor,
            ctx=principal.context(),
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/{player_id}/exclusions",
    response_model=schemas.ExclusionStarted,
    responses=refusals(EXCLUSION_REFUSALS),
)
async def exclude(
    *,
    request: Request,
    player_id: PlayerId,
    body: schemas.ExclusionRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """A time-out (24 hours to 6 weeks) or a self-exclusion (6 months or more, or
    indefinite), in force at once; a self-exclusion cannot be shortened."""

    async def act() -> schemas.ExclusionStarted:
        return await start_exclusion(
            uow,
            player_id=player_id,
            kind=body.kind,
            until=body.until,
            actor=principal.actor,
            reason=body.reason,
            ctx=principal.context(),
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.get(
    "/{player_id}/responsible-gambling",
    response_model=schemas.ResponsibleGambling,
    responses=refusals({404: ["unknown_player"]}),
)
async def standing(player_id: PlayerId, uow: Uow, _: Operator) -> schemas.ResponsibleGambling:
    """Limits in force and pending, what is used of each, and exclusions in force."""
    return await standing_of(uow, player_id)
