"""The cashier: deposits and withdrawals from request to provider to webhook, through the gate.

Opening a payment runs in the caller's unit of work (the API's, under its Idempotency-Key):
the gate decides (limits, exclusions, due diligence; KYC, AML hold and the KYT deny list for
withdrawals), a withdrawal holds its amount, and one of at least the jurisdiction's review
threshold waits for an officer. Everything that talks to a provider runs here, between units of
work, so no database transaction waits on the network while holding a player's lock:

- `submit` sends an approved withdrawal or an initiated deposit to the providers of its route
  in order, failing over on a timeout or a 5xx only when that cannot charge twice
  (core/payments/routing.py); each attempt is recorded; the provider that took it is bound to
  the payment for good.
- `webhook` verifies a provider's webhook, acts on each message id once (the replay store),
  and moves the payment; duplicates, stale and contradicting events change nothing and are
  journaled; a bad signature changes nothing and is journaled as a security event.
"""

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from compliance import facts
from compliance.jurisdictions import Jurisdictions
from core import journal, sql
from core.errors import Conflict, DomainError, InvalidRequest, NotFound
from core.guard import Guard
from core.journal import EventContext
from core.money import Money
from core.payments import routing, service
from core.payments.lifecycle import IllegalTransition, Kind
from core.payments.providers import Adapter, Method, Order, ProviderDeclined, WebhookEvent
from core.payments.service import Payment
from core.payments.signatures import SignatureRefused
from core.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)
Outcome = Literal["moved", "ignored", "refused", "unknown_payment"]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a webhook did, as answered to the provider (200: it need not send it again)."""

    outcome: Outcome
    payment_id: uuid.UUID | None
    state: str | None
    detail: str | None = None
    replayed: bool = False  # the same message id was acted on before: this is that answer


class Cashier:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        gate: Guard,
        config: routing.PaymentsConfig,
        adapters: Mapping[str, Adapter],
        jurisdictions: Jurisdictions,
    ) -> None:
        self.uows = uows
        self.gate = gate
        self.config = config
        self.adapters = adapters
        self.jurisdictions = jurisdictions

    # -- opening, in the caller's unit of work -------------------------------------------------

    async def open_deposit(
        self,
        uow: UnitOfWork,
        *,
        player_id: uuid.UUID,
        amount: Money,
        method: Method,
        ctx: EventContext,
    ) -> Payment:
        country = await _country(uow, player_id)
        return await service.open_deposit(
            uow,
            player_id=player_id,
            amount=amount,
            method=method,
            routes=self._routes("deposit", country, amount),
            ctx=ctx,
            guard=self.gate,
        )

    async def open_withdrawal(
        self,
        uow: UnitOfWork,
        *,
        player_id: uuid.UUID,
        amount: Money,
        method: Method,
        destination: str | None,
        ctx: EventContext,
    ) -> Payment:
        country = await _country(uow, player_id)
        return await service.open_withdrawal(
            uow,
            player_id=player_id,
            amount=amount,
            method=method,
            destination=destination,
            routes=self._routes("withdrawal", country, amount),
            needs_review=await self._needs_review(uow, country, amount),
            ctx=ctx,
            guard=self.gate,
        )

    def _routes(self, kind: Kind, country: str, amount: Money) -> list[str]:
        route = self.config.route(kind=kind, country=country, currency=amount.currency)
        return [name for name in route.providers if name in self.adapters]

    async def _needs_review(self, uow: UnitOfWork, country: str, amount: Money) -> bool:
        """At or above the jurisdiction's threshold in EUR; without a rate to EUR, an officer
        looks (a missing rate must not wave a large withdrawal through)."""
        threshold = self.jurisdictions.of(country).withdrawal_review_threshold_eur_minor
        try:
            in_eur = await facts.in_eur(uow, amount)
        except InvalidRequest:
            return True
        return in_eur >= threshold

    # -- officers --------------------------------------------------------------------------------

    async def review(
        self,
        uow: UnitOfWork,
        payment_id: uuid.UUID,
        *,
        approve: bool,
        officer: str,
        reason: str,
        ctx: EventContext,
    ) -> Payment:
        """An officer approves (to be sent) or rejects (the hold returns) a withdrawal."""
        if not officer.strip() or not reason.strip():
            raise InvalidRequest("reason_required", "a review needs an officer and a reason")
        payment = await service.get(uow, payment_id, lock=True)
        if payment.kind != "withdrawal":
            raise Conflict("not_a_withdrawal", "only withdrawals are reviewed")
        if payment.state != "requested":
            raise Conflict(
                "already_reviewed",
                f"the withdrawal is {payment.state}",
                payment_id=str(payment_id),
                state=payment.state,
            )
        applied = await service.move(
            uow,
            payment,
            "approved" if approve else "rejected",
            cause="officer",
            actor=officer,
            ctx=ctx,
            guard=self.gate,
        )
        await journal.record(
            uow,
            "payment.reviewed",
            ctx=ctx,
            player_id=payment.player_id,
            amount=payment.amount,
            data={
                "payment_id": str(payment_id),
                "approved": approve,
                "officer": officer,
                "reason": reason,
            },
        )
        return applied.payment

    # -- providers -------------------------------------------------------------------------------

    async def submit(self, payment_id: uuid.UUID, ctx: EventContext) -> Payment:
        """Send the payment to its providers unless one has it already or it is not ready.

        Safe to call again at any time (a client's retry, an operator's resubmit): an
        advisory lock keeps two submissions of one payment from running side by side, and the
        providers see our payment id as their idempotency key.
        """
        async with self.uows() as lock_uow:
            try:
                if not await sql.scalar(
                    lock_uow,
                    "SELECT pg_try_advisory_xact_lock(hashtextextended(%(key)s, 0))",
                    {"key": f"payment-submit:{payment_id}"},
                ):
                    return await self._current(payment_id)  # being sent right now
                return await self._send(payment_id, ctx)
            finally:
                # Its transaction wrote nothing: ending it releases the lock.
                await lock_uow.commit()

    async def _send(self, payment_id: uuid.UUID, ctx: EventContext) -> Payment:
        payment = await self._current(payment_id)
        if not _ready(payment):
            return payment
        order = Order(
            payment_id=payment.id,
            kind=payment.kind,
            amount=payment.amount,
            country=payment.country,
            method=payment.method,
            destination=payment.destination,
        )

        async def record(provider: str, outcome: str, status: int | None) -> None:
            async with self.uows() as uow:
                await service.record_attempt(
                    uow, payment_id, provider=provider, outcome=outcome, status=status, ctx=ctx
                )
                await uow.commit()

        adapters = [self.adapters[name] for name in payment.routes if name in self.adapters]
        if payment.kind == "withdrawal":
            adapters = await self._resumed(payment, adapters)
        try:
            accepted = await routing.submit_with_failover(order, adapters, record=record)
        except ProviderDeclined as declined:
            return await self._declined(payment, declined, ctx)
        except (routing.NoProviderAvailable, routing.PayoutInDoubt) as stopped:
            # The payment stays open (nothing moved) and is sent again on the next submit.
            stopped.details["payment_id"] = str(payment_id)
            raise
        async with self.uows() as uow:
            bound = await service.bind(
                uow,
                payment_id,
                provider=accepted.provider,
                provider_ref=accepted.provider_ref,
                redirect_url=accepted.redirect_url,
                ctx=ctx,
            )
            if bound.kind == "withdrawal":
                bound = (
                    await service.apply(
                        uow,
                        payment_id,
                        "sent",
                        cause="provider",
                        actor=accepted.provider,
                        ctx=ctx,
                        guard=self.gate,
                    )
                ).payment
            await uow.commit()
        return bound

    async def _resumed(self, payment: Payment, adapters: list[Adapter]) -> list[Adapter]:
        """A payout sent again after a provider left it in doubt starts at that provider: the
        ones before it said they never saw it and would take it now, while it may have paid."""
        async with self.uows() as uow:
            tried = await service.attempts(uow, payment.id)
        doubts = [attempt["provider"] for attempt in tried if attempt["outcome"] == "in_doubt"]
        return routing.resume_after_doubt(adapters, doubts[-1]) if doubts else adapters

    async def _current(self, payment_id: uuid.UUID) -> Payment:
        async with self.uows() as uow:
            return await service.get(uow, payment_id)

    async def _declined(
        self, payment: Payment, declined: ProviderDeclined, ctx: EventContext
    ) -> Payment:
        async with self.uows() as uow:
            applied = await service.apply(
                uow,
                payment.id,
                "failed",
                cause="provider",
                actor=declined.provider,
                ctx=ctx,
                guard=self.gate,
            )
            await uow.commit()
        return applied.payment

    # -- webhooks --------------------------------------------------------------------------------

    async def webhook(
        self, provider: str, headers: Mapping[str, str], body: bytes, ctx: EventContext
    ) -> Receipt:
        """Act on a provider's webhook once. Raises SignatureRefused (journaled) for a bad
        signature, IllegalTransition (transient) for an event ahead of its payment's state, and
        the gate's transient refusals: none of these is stored, so the provider's retry acts."""
        adapter = self.adapters.get(provider)
        if adapter is None:
            raise NotFound("unknown_provider", "no such payment provider", provider=provider)
        async with self.uows() as uow:
            try:
                event = adapter.parse_webhook(headers, body, uow.now)
            except InvalidRequest as unread:
                if unread.code != "unsupported_webhook_event":
                    raise  # well signed, unreadable: the provider's bug, 422
                # A refund, a dispute: not a step of our lifecycles. Acknowledged (or the
                # provider retries for days) and journaled for an officer.
                await journal.record(
                    uow,
                    "payment.webhook_unsupported",
                    ctx=ctx,
                    data={"provider": provider, "detail": unread.message},
                )
                await uow.commit()
                return Receipt("ignored", None, None, "unsupported_webhook_event")
            except SignatureRefused as refused:
                await journal.record(
                    uow,
                    "security.webhook_refused",
                    ctx=ctx,
                    data={"provider": provider, "reason": refused.reason},
                )
                await uow.commit()
                raise
            digest = hashlib.sha256(body).digest()
            stored = await _stored(uow, provider, event.message_id)
            if stored is not None:
                if stored.digest != digest:  # a genuine signature over another body, same id
                    await journal.record(
                        uow,
                        "security.webhook_id_reused",
                        ctx=ctx,
                        data={"provider": provider, "webhook_id": event.message_id},
                    )
                    await uow.commit()
                    raise Conflict(
                        "webhook_id_reused",
                        "this webhook id was used before for another message; nothing was done",
                        webhook_id=event.message_id,
                    )
                await uow.commit()
                return stored.receipt
            receipt = await self._act(uow, event, ctx)
            claimed = await sql.scalar(
                uow,
                "INSERT INTO webhook_receipts (provider, message_id, payment_id, event, outcome,"
                " body_sha256, received_at) VALUES (%(provider)s, %(id)s, %(payment)s, %(event)s,"
                " %(outcome)s, %(digest)s, %(now)s) ON CONFLICT DO NOTHING RETURNING true",
                {
                    "provider": provider,
                    "id": event.message_id,
                    "payment": receipt.payment_id if receipt.outcome != "unknown_payment" else None,
                    "event": event.event,
                    "outcome": receipt.outcome,
                    "digest": digest,
                    "now": uow.now,
                },
            )
            if not claimed:  # the same message, acted on by a concurrent delivery: theirs holds
                await uow.rollback()
                again = await _stored(uow, provider, event.message_id)
                await uow.commit()
                assert again is not None  # noqa: S101 - the conflict was that row
                return again.receipt
            await uow.commit()
            return receipt

    async def _act(self, uow: UnitOfWork, event: WebhookEvent, ctx: EventContext) -> Receipt:
        try:
            payment = await service.get(uow, event.payment_id, lock=True)
        except NotFound:
            await self._refusal(uow, event, None, "unknown_payment", ctx)
            return Receipt("unknown_payment", event.payment_id, None, "unknown_payment")
        problem = _mismatch(payment, event)
        if problem is None and payment.provider is None:
            # The provider took it but its answer was lost (a timeout we could not resolve):
            # its first webhook binds the payment to it.
            payment = await service.bind(
                uow,
                payment.id,
                provider=event.provider,
                provider_ref=event.provider_ref,
                redirect_url=None,
                ctx=ctx,
                locked=payment,
            )
        if problem is not None:
            await self._refusal(uow, event, payment, problem, ctx)
            return Receipt("refused", payment.id, payment.state, problem)
        try:
            applied = await service.move(
                uow,
                payment,
                event.event,
                cause="webhook",
                actor=event.provider,
                webhook_id=event.message_id,
                ctx=ctx,
                guard=self.gate,
            )
        except IllegalTransition as illegal:
            if illegal.transient:
                raise
            await uow.rollback()
            payment = await service.get(uow, event.payment_id, lock=True)
            await self._refusal(uow, event, payment, "contradicts_state", ctx)
            return Receipt("refused", payment.id, payment.state, "contradicts_state")
        except DomainError as error:
            if error.transient:
                raise
            await uow.rollback()
            await self._refusal(uow, event, payment, error.code, ctx)
            return Receipt("refused", payment.id, payment.state, error.code)
        if applied.moved:
            return Receipt("moved", payment.id, applied.payment.state)
        return Receipt("ignored", payment.id, applied.payment.state, applied.ignored)

    async def _refusal(
        self,
        uow: UnitOfWork,
        event: WebhookEvent,
        payment: Payment | None,
        problem: str,
        ctx: EventContext,
    ) -> None:
        """A webhook we will not act on, ever: on record for officers and reconciliation."""
        log.warning("webhook %s from %s refused: %s", event.message_id, event.provider, problem)
        await journal.record(
            uow,
            "payment.webhook_refused",
            ctx=ctx,
            player_id=payment.player_id if payment else None,
            amount=event.amount,
            data={
                "payment_id": str(event.payment_id),
                "provider": event.provider,
                "provider_ref": event.provider_ref,
                "webhook_id": event.message_id,
                "event": event.event,
                "state": payment.state if payment else None,
                "problem": problem,
            },
        )

    # -- housekeeping ----------------------------------------------------------------------------

    async def expire(self, *, older_than: timedelta, ctx: EventContext) -> int:
        """End deposits initiated or pending for longer than `older_than` (the player left the
        payment page); one unit of work each, so one failure does not hold back the rest."""
        async with self.uows() as uow:
            stale = await sql.all_rows(
                uow,
                "SELECT id FROM payments WHERE kind = 'deposit'"
                " AND state IN ('initiated', 'pending') AND created_at < %(before)s ORDER BY id",
                {"before": uow.now - older_than},
            )
        expired = 0
        for row in stale:
            async with self.uows() as uow:
                applied = await service.apply(
                    uow,
                    row["id"],
                    "expired",
                    cause="timer",
                    actor="expiry",
                    ctx=ctx,
                    guard=self.gate,
                )
                await uow.commit()
                expired += applied.moved
        return expired


async def _country(uow: UnitOfWork, player_id: uuid.UUID) -> str:
    """The player's jurisdiction: payments are routed, and reviewed, by it."""
    country: str | None = await sql.scalar(
        uow, "SELECT jurisdiction FROM players WHERE id = %(id)s", {"id": player_id}
    )
    if country is None:
        raise NotFound("unknown_player", "no such player", player_id=str(player_id))
    return country


def _ready(payment: Payment) -> bool:
    if payment.provider is not None:
        return False
    return (payment.kind, payment.state) in {("deposit", "initiated"), ("withdrawal", "approved")}


def _mismatch(payment: Payment, event: WebhookEvent) -> str | None:
    if payment.provider is None:
        if event.provider not in payment.routes:
            return "provider_not_routed"
    elif payment.provider != event.provider:
        return "other_provider"  # a provider we failed over from executed it after all
    elif payment.provider_ref != event.provider_ref:
        return "provider_ref_mismatch"
    if event.amount != payment.amount:
        return "amount_mismatch"
    return None


@dataclass(frozen=True, slots=True)
class _Stored:
    receipt: Receipt
    digest: bytes  # of the body first acted on under this id


async def _stored(uow: UnitOfWork, provider: str, message_id: str) -> _Stored | None:
    row = await sql.one(
        uow,
        "SELECT r.outcome, r.payment_id, r.body_sha256, p.state FROM webhook_receipts r"
        " LEFT JOIN payments p ON p.id = r.payment_id"
        " WHERE r.provider = %(provider)s AND r.message_id = %(id)s",
        {"provider": provider, "id": message_id},
    )
    if row is None:
        return None
    return _Stored(
        Receipt(row["outcome"], row["payment_id"], row["state"], replayed=True),
        bytes(row["body_sha256"]),
    )
