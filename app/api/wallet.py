"""Seamless wallet, called by game providers: balance, bet (debit), win (credit), rollback."""

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.api import idempotent
from app.auth import IdempotencyKey, Principal, Provider, Uow
from app.contract import MONEY, combined, refusals
from app.gating import Gated
from core import players, rounds
from core.journal import EventContext
from core.money import parse_amount

CONTRACT_VER = "1.0"
router = APIRouter(prefix="/v1/wallet", tags=["seamless wallet"])


def _provider(principal: Principal) -> str:
    assert principal.client.provider_code is not None  # noqa: S101 - game_provider role has one
    return principal.client.provider_code


def _answer(request_uuid: uuid.UUID, outcome: rounds.Outcome) -> schemas.WalletResponse:
    return schemas.WalletResponse.of(
        outcome.wallet,
        request_uuid=request_uuid,
        transaction_uuid=uuid.UUID(outcome.transaction_uuid),
        round_id=outcome.round_ref,
        bet_id=outcome.bet_ref,
        bet_status=outcome.bet_status,
        ledger_transaction_id=outcome.ledger_transaction_id,
        tombstone=outcome.tombstone,
    )


@router.post(
    "/balance",
    response_model=schemas.BalanceResponse,
    responses=refusals({404: ["unknown_player"]}),
)
async def balance(
    body: schemas.BalanceRequest,
    uow: Uow,
    _: Provider,
) -> schemas.BalanceResponse:
    """The player's playable balance (cash + bonus) in the wallet currency."""
    wallet = await players.wallet(uow, body.player_id)
    await uow.commit()  # keeps the nonce
    return schemas.BalanceResponse.of(wallet, request_uuid=body.request_uuid)


@router.post(
    "/bet",
    response_model=schemas.WalletResponse,
    responses=refusals(
        combined(
            {
                404: ["unknown_player"],
                409: [
                    "insufficient_funds",
                    "round_closed",
                    "round_mismatch",
                    "bet_id_reused",
                    "bet_rolled_back",
                    "transaction_uuid_reused",
                ],
            },
            MONEY,
            {422: ["no_fx_rate"]},
        )
    ),
)
async def bet(
    *,
    request: Request,
    body: schemas.BetRequest,
    uow: Uow,
    principal: Provider,
    key: IdempotencyKey,
    gate: Gated,
) -> Response:
    """Debit a stake: cash first, then bonus. Opens the round on its first bet."""

    async def act() -> schemas.WalletResponse:
        cmd = rounds.PlaceBet(
            provider_code=_provider(principal),
            transaction_uuid=str(body.transaction_uuid),
            player_id=body.player_id,
            round_ref=body.round_id,
            bet_ref=body.bet_id,
            game_id=body.game_id,
            amount=parse_amount(body.amount, body.currency),
        )
        outcome = await rounds.place_bet(uow, cmd, _context(principal, body), guard=gate)
        return _answer(body.request_uuid, outcome)

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/win",
    response_model=schemas.WalletResponse,
    responses=refusals(
        {
            404: ["unknown_player", "unknown_bet"],
            409: ["bet_mismatch", "bet_already_settled", "transaction_uuid_reused"],
            422: [
                "unknown_currency",
                "invalid_amount",
                "too_many_decimals",
                "amount_too_large",
                "currency_mismatch",
            ],
        }
    ),
)
async def win(
    *,
    request: Request,
    body: schemas.WinRequest,
    uow: Uow,
    principal: Provider,
    key: IdempotencyKey,
    gate: Gated,
) -> Response:
    """Settle a bet with its payout (WIN, PUSH when equal to the stake, LOSE when zero).

    The payout returns to cash and bonus in the proportion that funded the stake.
    """

    async def act() -> schemas.WalletResponse:
        cmd = rounds.SettleBet(
            provider_code=_provider(principal),
            transaction_uuid=str(body.transaction_uuid),
            player_id=body.player_id,
            round_ref=body.round_id,
            bet_ref=body.bet_id,
            amount=parse_amount(body.amount, body.currency, allow_zero=True),
            close_round=body.round_closed,
        )
        outcome = await rounds.settle_bet(uow, cmd, _context(principal, body), guard=gate)
        return _answer(body.request_uuid, outcome)

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/rollback",
    response_model=schemas.WalletResponse,
    responses=refusals(
        {
            404: ["unknown_player"],
            409: [
                "bet_mismatch",
                "bet_already_rolled_back",
                "rollback_after_settle",
                "transaction_uuid_reused",
            ],
        }
    ),
)
async def rollback(
    *,
    request: Request,
    body: schemas.RollbackRequest,
    uow: Uow,
    principal: Provider,
    key: IdempotencyKey,
    gate: Gated,
) -> Response:
    """Void an open bet and return its stake to the sources that funded it.

    A rollback for a bet never seen records a tombstone: the late bet with that id is refused.
    """

    async def act() -> schemas.WalletResponse:
        cmd = rounds.RollbackBet(
            provider_code=_provider(principal),
            transaction_uuid=str(body.transaction_uuid),
            player_id=body.player_id,
            round_ref=body.round_id,
            bet_ref=body.bet_id,
        )
        outcome = await rounds.rollback_bet(uow, cmd, _context(principal, body), guard=gate)
        return _answer(body.request_uuid, outcome)

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


def _context(principal: Principal, body: schemas.Telemetry) -> EventContext:
    return principal.context(
        session_id=body.session_id, geo=body.geo, device=body.device, contract_ver=CONTRACT_VER
    )
