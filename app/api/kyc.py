"""KYC levels, AML holds and linked accounts, for compliance officers: the standing the gate
reads for every decision (compliance.kyc). Every change is journaled with its reason and the
client's service identity as the actor (decision 0021; officers act through the console), and
takes effect with the next request."""

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.api import idempotent
from app.auth import IdempotencyKey, Operator, Uow
from app.contract import refusals
from compliance import kyc
from core.uow import UnitOfWork

router = APIRouter(prefix="/v1/admin/players", tags=["kyc and aml"])
PlayerId = schemas.PlayerId


async def _standing(uow: UnitOfWork, player_id: uuid.UUID) -> schemas.Standing:
    found = await kyc.standing(uow, player_id)
    return schemas.Standing(
        player_id=player_id,
        kyc_level=found.kyc_level,
        kyc_set_at=found.kyc_set_at,
        aml_hold=found.aml_hold,
        aml_set_at=found.aml_set_at,
        linked=[schemas.LinkedPlayer(player_id=p, basis=b) for p, b in found.linked],
    )


@router.get(
    "/{player_id}/standing",
    response_model=schemas.Standing,
    responses=refusals({404: ["unknown_player"]}),
)
async def standing(player_id: PlayerId, uow: Uow, _: Operator) -> schemas.Standing:
    """KYC level, AML hold and linked accounts as they stand now."""
    found = await _standing(uow, player_id)
    await uow.commit()
    return found


@router.post(
    "/{player_id}/kyc",
    response_model=schemas.Standing,
    responses=refusals({404: ["unknown_player"], 422: ["invalid_kyc_level", "reason_required"]}),
)
async def set_kyc_level(
    *,
    request: Request,
    player_id: PlayerId,
    body: schemas.KycLevelRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """Set the player's KYC level (a lowered level takes effect as at once as a raised one)."""

    async def act() -> schemas.Standing:
        await kyc.set_level(
            uow,
            player_id=player_id,
            level=body.level,
            actor=principal.actor,
            reason=body.reason,
            ctx=principal.context(),
        )
        return await _standing(uow, player_id)

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/{player_id}/aml-hold",
    response_model=schemas.Standing,
    responses=refusals({404: ["unknown_player"], 422: ["reason_required"]}),
)
async def set_aml_hold(
    *,
    request: Request,
    player_id: PlayerId,
    body: schemas.AmlHoldRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """Put the player's withdrawals on hold, or lift the hold."""

    async def act() -> schemas.Standing:
        await kyc.set_aml_hold(
            uow,
            player_id=player_id,
            on_hold=body.on_hold,
            actor=principal.actor,
            reason=body.reason,
            ctx=principal.context(),
        )
        return await _standing(uow, player_id)

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/{player_id}/links",
    response_model=schemas.Standing,
    responses=refusals({404: ["unknown_player"], 422: ["invalid_link", "reason_required"]}),
)
async def link(
    *,
    request: Request,
    player_id: PlayerId,
    body: schemas.LinkRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """Link two players whose money counts together towards due diligence (registration links
    players sharing an email, phone, national id or IBAN by itself)."""

    async def act() -> schemas.Standing:
        await kyc.link(
            uow,
            player_id=player_id,
            linked_player_id=body.linked_player_id,
            basis="officer",
            ctx=principal.context(),
            reason=body.reason,
        )
        return await _standing(uow, player_id)

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)
