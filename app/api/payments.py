"""Payments: the operator's cashier opens deposits and withdrawals; officers review large
withdrawals; providers send webhooks.

Opening runs under the Idempotency-Key like every mutating call (a denial replays as the same
403). Sending to a provider happens after that commit, so a retry under the same key sends a
payment that no provider has yet (same payment id, the providers' idempotency key) and answers
with the payment as it is now.
"""

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app import schemas
from app.api import idempotent
from app.auth import IdempotencyKey, Operator, Uow, trace_id
from app.contract import MONEY, combined, refusals
from app.errors import Unauthorized
from app.gating import Cashiered
from compliance.cashier import Cashier
from core.journal import EventContext
from core.money import parse_amount
from core.payments import service
from core.payments.signatures import SignatureRefused

router = APIRouter(tags=["payments"])
# The providers' endpoint, matched early: providers send many webhooks, and FastAPI tries the
# routes in order (measured: route matching was 9 % of a webhook's server time when last).
webhooks = APIRouter(tags=["payments"])
PaymentId = Annotated[
    uuid.UUID,
    Path(description="The payment's id", examples=["3f0c8a1e-2b7d-4c55-9e61-0d4a7b9c2e18"]),
]
_SWIFTPAY_EVENT = {
    "type": "payment.succeeded",
    "timestamp": "2026-11-25T12:00:05Z",
    "data": {
        "id": "pay_7f3a9c2e41d8",
        "object": "payment",
        "reference": "3f0c8a1e-2b7d-4c55-9e61-0d4a7b9c2e18",
        "status": "succeeded",
        "amount": "50.00",
        "currency": "EUR",
        "country": "MT",
        "method": "card",
        "created": "2026-11-25T12:00:00Z",
    },
}
# No provider took it yet: the operator sends it again later (POST .../submit).
_UNSENT = {503: ["no_payment_provider_available", "payout_in_doubt"]}
_OPENING = combined(
    {404: ["unknown_player"], 422: ["unknown_method", "no_payment_route"]}, MONEY, _UNSENT
)


async def _sent(cashier: Cashier, opened: Response, ctx: EventContext) -> Response:
    """After the opening committed: send the payment if no provider has it, answer it as is."""
    if opened.status_code != 200:  # noqa: PLR2004 - a refusal stands as it was stored
        return opened
    payment_id = uuid.UUID(orjson.loads(bytes(opened.body))["payment_id"])
    payment = await cashier.submit(payment_id, ctx)
    headers = {k: v for k, v in opened.headers.items() if k.lower() == "idempotent-replayed"}
    return JSONResponse(schemas.PaymentView.of(payment).model_dump(mode="json"), headers=headers)


@router.post(
    "/v1/payments/deposits", response_model=schemas.PaymentView, responses=refusals(_OPENING)
)
async def deposit(
    *,
    request: Request,
    body: schemas.DepositRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
    cashier: Cashiered,
) -> Response:
    """Open a deposit (decided now: limits, exclusions, due diligence) and send it to the first
    provider of its route that takes it; `redirect_url` is the provider's payment page. The
    player's balance is credited when the provider confirms it (webhook)."""
    ctx = principal.context(session_id=body.session_id, geo=body.geo, device=body.device)

    async def act() -> schemas.PaymentView:
        payment = await cashier.open_deposit(
            uow,
            player_id=body.player_id,
            amount=parse_amount(body.amount, body.currency),
            method=body.method,
            ctx=ctx,
        )
        return schemas.PaymentView.of(payment)

    opened = await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)
    return await _sent(cashier, opened, ctx)


@router.post(
    "/v1/payments/withdrawals",
    response_model=schemas.PaymentView,
    responses=refusals(
        combined(
            _OPENING,
            {409: ["insufficient_funds"], 422: ["currency_mismatch", "destination_required"]},
        )
    ),
)
async def withdrawal(
    *,
    request: Request,
    body: schemas.WithdrawalRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
    cashier: Cashiered,
) -> Response:
    """Request a withdrawal from the player's cash: decided now (verified KYC, no AML hold,
    the destination screened against the KYT deny list), its amount held at once. Below the
    jurisdiction's review threshold it is sent right away; at or above it waits for an
    officer (`needs_review`, state `requested`)."""
    ctx = principal.context(session_id=body.session_id, geo=body.geo, device=body.device)

    async def act() -> schemas.PaymentView:
        payment = await cashier.open_withdrawal(
            uow,
            player_id=body.player_id,
            amount=parse_amount(body.amount, body.currency),
            method=body.method,
            destination=body.destination,
            ctx=ctx,
        )
        return schemas.PaymentView.of(payment)

    opened = await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)
    return await _sent(cashier, opened, ctx)


@router.get(
    "/v1/payments/{payment_id}",
    response_model=schemas.PaymentDetail,
    responses=refusals({404: ["unknown_payment"]}),
)
async def payment(payment_id: PaymentId, uow: Uow, _: Operator) -> schemas.PaymentDetail:
    """The payment with every step it took and every call to a provider."""
    found = await service.get(uow, payment_id)
    steps = await service.transitions(uow, payment_id)
    tries = await service.attempts(uow, payment_id)
    await uow.commit()  # keeps the nonce
    return schemas.PaymentDetail(
        **schemas.PaymentView.of(found).model_dump(),
        transitions=[schemas.PaymentStep(**step) for step in steps],
        attempts=[schemas.PaymentAttemptView(**attempt) for attempt in tries],
    )


@router.get("/v1/admin/payments", response_model=list[schemas.PaymentView])
async def payments(
    uow: Uow,
    _: Operator,
    player_id: Annotated[uuid.UUID | None, Query(examples=[schemas.EXAMPLE_PLAYER_ID])] = None,
    state: Annotated[str | None, Query(pattern=r"^[a-z]{1,20}$", examples=["requested"])] = None,
    needs_review: Annotated[bool | None, Query(examples=[True])] = None,
    limit: Annotated[int, Query(ge=1, le=200, examples=[50])] = 50,
) -> list[schemas.PaymentView]:
    """Payments, newest first, filtered by player, state and review: `?state=requested&
    needs_review=true` is the officers' queue of withdrawals waiting for a decision."""
    found = await service.find(
        uow, player_id=player_id, state=state, needs_review=needs_review, limit=limit
    )
    await uow.commit()  # keeps the nonce
    return [schemas.PaymentView.of(payment) for payment in found]


@router.post(
    "/v1/admin/payments/{payment_id}/review",
    response_model=schemas.PaymentView,
    responses=refusals(
        combined(
            {
                404: ["unknown_payment"],
                409: ["not_a_withdrawal", "already_reviewed"],
                422: ["reason_required"],
            },
            _UNSENT,
        )
    ),
)
async def review(
    *,
    request: Request,
    payment_id: PaymentId,
    body: schemas.ReviewRequest,
    uow: Uow,
    principal: Operator,
    key: IdempotencyKey,
    cashier: Cashiered,
) -> Response:
    """Approve a withdrawal waiting for review (it is sent) or reject it (the held amount
    returns to the player's cash). The client is recorded as the reviewer; an officer's review
    goes through the console (decision 0021)."""
    ctx = principal.context()

    async def act() -> schemas.PaymentView:
        payment = await cashier.review(
            uow,
            payment_id,
            approve=body.approve,
            officer=principal.actor,
            reason=body.reason,
            ctx=ctx,
        )
        return schemas.PaymentView.of(payment)

    reviewed = await idempotent.run_signed(
        request, uow=uow, principal=principal, key=key, action=act
    )
    return await _sent(cashier, reviewed, ctx)


@router.post(
    "/v1/admin/payments/{payment_id}/submit",
    response_model=schemas.PaymentView,
    responses=refusals(combined({404: ["unknown_payment"]}, _UNSENT)),
)
async def submit(
    payment_id: PaymentId, uow: Uow, principal: Operator, cashier: Cashiered
) -> schemas.PaymentView:
    """Send a payment that no provider has yet (after every provider was unavailable, or a
    payout in doubt): the same payment id goes to the route's providers again, in order."""
    await service.get(uow, payment_id)
    await uow.commit()  # keeps the nonce
    payment = await cashier.submit(payment_id, principal.context())
    return schemas.PaymentView.of(payment)


@webhooks.post(
    "/v1/webhooks/{provider}",
    response_model=schemas.WebhookAnswer,
    responses=refusals(
        {
            401: ["webhook_signature_refused"],
            404: ["unknown_provider"],
            409: ["webhook_id_reused", "illegal_payment_transition"],
            413: ["body_too_large"],
            422: ["malformed_webhook", "unsupported_webhook_event"],
        }
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": _SWIFTPAY_EVENT}
            },
            "description": "The provider's event, exactly as signed (its signature is in the "
            "provider's own headers: webhook-id, webhook-timestamp and webhook-signature for "
            "Standard Webhooks)",
        }
    },
)
async def webhook(
    provider: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,40}$", examples=["swiftpay"])],
    request: Request,
    cashier: Cashiered,
) -> schemas.WebhookAnswer:
    """A payment provider's event, authenticated by its signature (Standard Webhooks headers, or
    the provider's own), acted on once per message id. 200 for every message we will not need
    again, including duplicates, stale events and events we refuse (journaled for officers);
    401 for a bad signature (journaled as a security event); 409 with Retry-After for an event
    ahead of what we know (its predecessor has not arrived yet)."""
    body = await request.body()
    ctx = EventContext(actor=f"psp:{provider}", trace_id=trace_id(request))
    try:
        receipt = await cashier.webhook(provider, request.headers, body, ctx)
    except SignatureRefused as refused:
        raise Unauthorized(
            "webhook_signature_refused", str(refused), reason=refused.reason
        ) from None
    return schemas.WebhookAnswer(
        outcome=receipt.outcome,
        replayed=receipt.replayed,
        payment_id=receipt.payment_id,
        state=receipt.state,
        detail=receipt.detail,
    )
