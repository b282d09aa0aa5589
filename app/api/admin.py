"""Operator API: players (until the vault owns registration), manual adjustments, FX rates,
and balances now or at any past instant."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app import schemas
from app.api import idempotent
from app.auth import IdempotencyKey, Operator, Uow
from app.contract import MONEY, combined, refusals
from app.gating import Gated
from core import fx, ledger, players, wallets
from core.errors import InvalidRequest
from core.journal import rfc3339
from core.money import format_minor, parse_amount
from policies import killswitch

router = APIRouter(prefix="/v1/admin", tags=["operator"])


def parse_instant(text: str, field: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise InvalidRequest(
            "invalid_datetime", f"{field} must be an RFC 3339 date-time with offset", field=field
        )
    return instant


@router.post(
    "/players",
    response_model=schemas.PlayerCreated,
    responses=refusals({422: ["unknown_currency", "invalid_jurisdiction"]}),
)
async def create_player(
    request: Request,
    body: schemas.NewPlayer,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    async def act() -> schemas.PlayerCreated:
        player_id = await players.register(
            uow, currency=body.currency, jurisdiction=body.jurisdiction, ctx=principal.context()
        )
        return schemas.PlayerCreated(
            player_id=player_id, currency=body.currency, jurisdiction=body.jurisdiction
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/adjustments",
    response_model=schemas.AdjustmentDone,
    responses=refusals(
        combined(
            {404: ["unknown_player"], 409: ["insufficient_funds"]},
            MONEY,
            {422: ["currency_mismatch", "reason_required"]},
        )
    ),
)
async def adjust(
    *,
    request: Request,
    body: schemas.Adjustment,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
    gate: Gated,
) -> Response:
    """Credit or debit a wallet by hand: a normal ledger transaction, journaled with its reason."""

    async def act() -> schemas.AdjustmentDone:
        done = await wallets.adjust(
            uow,
            player_id=body.player_id,
            amount=parse_amount(body.amount, body.currency),
            source=body.source,
            direction=body.direction,
            operator=principal.actor,
            reason=body.reason,
            ctx=principal.context(),
            guard=gate,
        )
        return schemas.AdjustmentDone.of(
            done.wallet, ledger_transaction_id=done.ledger_transaction_id
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/adjustments/{ledger_transaction_id}/reversal",
    response_model=schemas.AdjustmentDone,
    responses=refusals(
        {
            404: ["unknown_adjustment"],
            409: ["already_reversed", "insufficient_funds"],
            422: ["reason_required"],
        }
    ),
)
async def reverse_adjustment(
    *,
    request: Request,
    ledger_transaction_id: Annotated[int, Path(ge=1, le=2**63 - 1, examples=[6])],  # a BIGINT
    body: schemas.Reversal,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
    gate: Gated,
) -> Response:
    """Correct an adjustment: a new mirrored transaction linked to it (each reversed once)."""

    async def act() -> schemas.AdjustmentDone:
        done = await wallets.reverse_adjustment(
            uow,
            transaction_id=ledger_transaction_id,
            operator=principal.actor,
            reason=body.reason,
            ctx=principal.context(),
            guard=gate,
        )
        return schemas.AdjustmentDone.of(
            done.wallet, ledger_transaction_id=done.ledger_transaction_id
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.post(
    "/fx-rates",
    response_model=schemas.FxRateOut,
    responses=refusals(
        {422: ["unknown_currency", "invalid_rate", "same_currency", "invalid_datetime"]}
    ),
)
async def record_fx_rate(
    request: Request,
    body: schemas.NewFxRate,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """Record a rate; stakes in `base` for `quote` wallets use the newest rate in force."""

    async def act() -> schemas.FxRateOut:
        rate = await fx.record_rate(
            uow,
            base=body.base,
            quote=body.quote,
            rate=fx.parse_rate(body.rate),
            source=body.source,
            as_of=parse_instant(body.as_of, "as_of"),
            ctx=principal.context(),
        )
        return schemas.FxRateOut(
            base=rate.base,
            quote=rate.quote,
            rate=str(rate.rate),
            source=rate.source,
            as_of=rfc3339(rate.as_of),
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.get(
    "/accounts/{code}/balance",
    response_model=schemas.AccountBalance,
    responses=refusals({404: ["unknown_account"], 422: ["invalid_datetime"]}),
)
async def account_balance(
    code: Annotated[
        str,
        Path(
            pattern=r"^[A-Za-z0-9:_.-]{1,200}$",
            examples=[f"player:{schemas.EXAMPLE_PLAYER_ID}:cash"],
        ),
    ],
    uow: Uow,
    _: Operator,
    at: Annotated[
        str | None,
        Query(
            description="RFC 3339 instant: the balance as it stood then",
            examples=["2026-11-25T12:00:00Z"],
        ),
    ] = None,
) -> schemas.AccountBalance:
    """Current balance (O(1)), or the balance at `at` recomputed from postings."""
    account = await ledger.account_by_code(uow, code)
    if at is None:
        minor, when = await ledger.balance(uow, account.id), None
    else:
        instant = parse_instant(at, "at")
        minor, when = await ledger.balance_at(uow, account.id, instant), rfc3339(instant)
    await uow.commit()
    return schemas.AccountBalance(
        account=code,
        currency=account.currency,
        balance=format_minor(minor, account.currency),
        at=when,
    )


@router.get(
    "/players/{player_id}/wallet",
    response_model=schemas.WalletView,
    responses=refusals({404: ["unknown_player"]}),
)
async def player_wallet(
    player_id: schemas.PlayerId,
    uow: Uow,
    _: Operator,
) -> schemas.WalletView:
    wallet = await players.wallet(uow, player_id)
    await uow.commit()
    return schemas.WalletView.of(wallet)


@router.get("/kill-switches", response_model=schemas.KillSwitches)
async def kill_switches(uow: Uow, _: Operator) -> schemas.KillSwitches:
    """Every zone, and the newest switch of each zone that was ever switched."""
    current = await killswitch.states(uow)
    return schemas.KillSwitches(
        zones=list(killswitch.ZONES),
        switches=[schemas.KillSwitchState(**vars(s)) for s in current.values()],
    )


@router.post(
    "/kill-switches",
    response_model=schemas.KillSwitchState,
    responses=refusals({422: ["unknown_zone", "reason_required"]}),
)
async def switch_zone(
    request: Request,
    body: schemas.KillSwitchChange,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """Stop (or restart) a zone of money movement at once; journaled with its reason."""

    async def act() -> schemas.KillSwitchState:
        done = await killswitch.switch(
            uow,
            zone=body.zone,
            off=body.off,
            reason=body.reason,
            actor=principal.actor,
            ctx=principal.context(),
        )
        return schemas.KillSwitchState(**vars(done))

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)
