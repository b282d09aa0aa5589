"""The payments review queue: withdrawals at or above the jurisdiction's review threshold wait
for officers. Rejecting one (its held amount returns to the player's cash) is one officer's
decision; approving one (the money leaves) is a four-eyes request that a second officer
approves, after which the withdrawal is sent to its provider."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, web
from app.console.protections import ask, carry_out, problem
from compliance.cashier import Cashier
from core.errors import DomainError
from core.money import format_minor
from core.payments import service

router = APIRouter(prefix="/console", include_in_schema=False)
QUEUE = 100


def _cashier(request: Request) -> Cashier | None:
    cashier: Cashier | None = request.app.state.cashier
    return cashier


@router.get("/payments")
async def queue(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.payments.view")
    if refused:
        return refused
    waiting = await service.review_queue(current.uow, limit=QUEUE)
    await current.uow.commit()
    return web.page(
        request,
        "payments.html",
        officer=current.officer,
        csrf=current.csrf,
        payments_on=_cashier(request) is not None,
        waiting=[
            {
                "id": p.id,
                "player_id": p.player_id,
                "amount": f"{format_minor(p.amount.minor, p.amount.currency)} {p.amount.currency}",
                "method": p.method,
                "country": p.country,
                "created_at": p.created_at,
            }
            for p in waiting  # the longest waiting first
        ],
    )


@router.post("/payments/{payment_id}/reject")
async def reject(
    payment_id: uuid.UUID,
    current: web.Signed,
    request: Request,
    reason: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    web.checked_csrf(current, csrf)
    cashier = _cashier(request)
    if cashier is None:
        return problem(request, current, DomainError("payments_disabled", "payments are off"))
    refused = await access.allowed(
        current, request, "console.payment.review", subject=f"payment:{payment_id}",
        back="/console/payments",
    )  # fmt: skip
    if refused:
        return refused
    rejected = cashier.review(
        current.uow, payment_id, approve=False, officer=current.officer.actor, reason=reason,
        ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, rejected, then="/console/payments")


@router.post("/payments/{payment_id}/approve")
async def ask_to_approve(
    payment_id: uuid.UUID,
    current: web.Signed,
    request: Request,
    reason: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    web.checked_csrf(current, csrf)
    try:
        payment = await service.get(current.uow, payment_id)
    except DomainError as error:
        return problem(request, current, error)
    return await ask(
        current, request, kind="payout_approve", subject=str(payment_id), reason=reason,
        back="/console/payments", player_id=payment.player_id,
    )  # fmt: skip
