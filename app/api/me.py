"""The player's own API, called from the player's browser or app with a player token: where
they stand, their limits and exclusions, and why they were refused. The token decides whose
data a call reads or changes; no path or body names a player. Operators mint the tokens.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app import schemas
from app.api import idempotent
from app.api.rg import (
    EXCLUSION_REFUSALS,
    LIMIT_REFUSALS,
    PlayerId,
    change_limit,
    standing_of,
    start_exclusion,
)
from app.auth import IdempotencyKey, Operator, Uow
from app.contract import refusals
from app.player_auth import PlayerPrincipal, tokens
from compliance import denials
from core import journal, players
from core.payments import service

router = APIRouter()
player_api = APIRouter(prefix="/v1/me", tags=["player"])
sessions = APIRouter(prefix="/v1/admin/players", tags=["player tokens"])
_PLAYER = refusals({404: ["unknown_player"]})  # the token's player is gone


@sessions.post("/{player_id}/session", response_model=schemas.PlayerToken, responses=_PLAYER)
async def mint_token(
    request: Request, player_id: PlayerId, uow: Uow, principal: Operator
) -> schemas.PlayerToken:
    """A player token, valid for 15 minutes, for the casino's front end to hand to the player
    it has logged in. Journaled as `player.token_issued` with the token's id (never the token).
    No Idempotency-Key: a retry mints another token, and no token is ever stored."""
    await players.wallet(uow, player_id)  # an unknown player is a 404
    minted = tokens(request.app.state.settings).mint(player_id, now=uow.now)
    await journal.record(
        uow,
        "player.token_issued",
        ctx=principal.context(),
        player_id=player_id,
        data={"token_id": minted.token_id, "expires_at": journal.rfc3339(minted.expires_at)},
    )
    await uow.commit()
    return schemas.PlayerToken(token=minted.token, expires_at=minted.expires_at)


@player_api.get(
    "/responsible-gambling", response_model=schemas.ResponsibleGambling, responses=_PLAYER
)
async def my_standing(uow: Uow, player: PlayerPrincipal) -> schemas.ResponsibleGambling:
    """My limits in force, changes waiting for their cooling-off and when they take effect,
    what I have used of each limit's period, and my time-outs and self-exclusions in force."""
    return await standing_of(uow, player.player_id)


@player_api.post("/limits", response_model=schemas.LimitChanged, responses=refusals(LIMIT_REFUSALS))
async def set_my_limit(
    request: Request,
    body: schemas.PlayerLimitRequest,
    uow: Uow,
    player: PlayerPrincipal,
    key: IdempotencyKey,
) -> Response:
    """Set, lower, raise or remove (`amount: null`) one of my limits. Lowering (or a first
    limit) is in force at once; raising or removing after a 24-hour cooling-off. The answer
    says when, as an instant (`effective_at`) and in words (`message`)."""

    async def act() -> schemas.LimitChanged:
        return await change_limit(
            uow,
            player_id=player.player_id,
            kind=body.kind,
            period=body.period,
            amount=body.amount,
            actor=player.actor,
            ctx=player.context(),
        )

    return await idempotent.run(
        request, uow=uow, scope=player.actor, nonce=None, key=key, action=act
    )


@player_api.post(
    "/exclusions",
    response_model=schemas.ExclusionStarted,
    responses=refusals(EXCLUSION_REFUSALS),
)
async def exclude_me(
    request: Request,
    body: schemas.PlayerExclusionRequest,
    uow: Uow,
    player: PlayerPrincipal,
    key: IdempotencyKey,
) -> Response:
    """Take a break: a time-out of 24 hours to 6 weeks, or a self-exclusion of 6 months or
    more (`until: null`: indefinite), in force at once. A self-exclusion in force cannot be
    shortened (409 `exclusion_cannot_be_shortened`), only lengthened."""

    async def act() -> schemas.ExclusionStarted:
        return await start_exclusion(
            uow,
            player_id=player.player_id,
            kind=body.kind,
            until=body.until,
            actor=player.actor,
            reason=body.reason or "asked by the player",
            ctx=player.context(),
        )

    return await idempotent.run(
        request, uow=uow, scope=player.actor, nonce=None, key=key, action=act
    )


@player_api.get("/decisions", response_model=schemas.PlayerDecisions, responses=_PLAYER)
async def my_refusals(
    uow: Uow,
    player: PlayerPrincipal,
    limit: Annotated[int, Query(ge=1, le=denials.MAX_LISTED, examples=[20])] = 20,
) -> schemas.PlayerDecisions:
    """Why I was refused: my most recent denied decisions, newest first, each with its reason
    in words and, for responsible-gambling reasons, where to find help in my country."""
    found = await denials.recent(uow, player_id=player.player_id, limit=limit)
    return schemas.PlayerDecisions(
        decisions=[
            schemas.PlayerDecision(
                decision_id=d.decision_id,
                action=d.action,
                reason_code=d.reason_code,
                reason=d.reason,
                category=d.category,
                policy_version=d.policy_version,
                decided_at=d.decided_at,
                help=[schemas.HelpContact.model_validate(c.as_json()) for c in d.help],
            )
            for d in found
        ]
    )


@player_api.get("/payments", response_model=list[schemas.PaymentView])
async def my_payments(
    uow: Uow,
    player: PlayerPrincipal,
    limit: Annotated[int, Query(ge=1, le=100, examples=[20])] = 20,
) -> list[schemas.PaymentView]:
    """My deposits and withdrawals, newest first, each in its state (a withdrawal waiting for
    review says so with `needs_review`); a refused one is in `/v1/me/decisions` with its reason."""
    found = await service.find(uow, player_id=player.player_id, limit=limit)
    return [schemas.PaymentView.of(payment) for payment in found]


router.include_router(sessions)
router.include_router(player_api)
