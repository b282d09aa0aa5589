"""A local payment-provider simulator: every provider of a payments config, in one ASGI app.

Each provider of the config is served under `/{name}` in its own contract's dialect (the
"standard" contract as Swiftpay, "payrail" as Payrail; `core/payments/adapters.py` describes
both), so a config whose base URLs are `http://127.0.0.1:8100/{name}` points Pitwarden at it
unchanged, with the same API keys and webhook secrets. It behaves like a provider where that
matters to us:

- payments live in memory, keyed by our payment id: Swiftpay replays the first answer to a
  repeated `Idempotency-Key` (another body under it is a 422), Payrail answers a repeated
  `merchant_reference` with a 409 holding the transaction it has; never a second payment;
- each state change is a signed webhook to `{callback_base}/v1/webhooks/{name}`, delivered in
  order, one at a time, and retried on anything but a 2xx with exponential backoff
  (`retry_base_s`, doubling, at most `max_attempts` attempts in all);
- deposits go pending -> confirmed and payouts sent -> confirmed by themselves (settlement
  "auto", after `after_s`), or stay open until the control API settles them ("manual").

The control API (`/_control`, unauthenticated: bind it to loopback) makes it misbehave on
command, and shows what it did. Faults queue per provider and each applies to the next `count`
requests or webhooks:

    GET  /_control                            providers, contracts, webhook URLs
    POST /_control/reset                      forget everything; cut stalled requests short
    POST /_control/{name}/faults              {"on": "submit" | "lookup", "mode": "drop" |
                                               "lost_answer" | "status", "count", "status",
                                               "code", "stall_s"} or {"on": "webhook", "mode":
                                               "delay" | "duplicate" | "reorder" | "forge" |
                                               "drop", "count", "delay_s", "times"}
    POST /_control/{name}/settlement          {"mode": "auto" | "manual", "after_s": 0}
    POST /_control/{name}/payments/{id}/settle  {"outcome": "confirmed" | "failed" | "expired"}
    GET  /_control/{name}/payments            what the provider holds, in our terms
    GET  /_control/{name}/statement.csv       provider_ref,payment_id,kind,amount,currency,
                                               status,settled_at
    POST /_control/deliver                    deliver every queued webhook now and answer the
                                               deliveries made (delays, backoff and held
                                               reorders ignored): a test's fast-forward
    GET  /_control/deliveries                 every delivery attempt and its HTTP answer

Request faults: "drop" stalls past the client's timeout (`stall_s`, by default the provider's
timeout + 1 s) without acting, as a request lost on the way; "lost_answer" acts, then stalls,
as an answer lost on the way back; "status" answers `status` with error `code` in the
provider's dialect without acting (a 5xx outage, or a 4xx decline). Webhook faults: "delay"
holds a webhook `delay_s`; "duplicate" sends it `times` times under one id; "reorder" holds the
next `count` and sends them in reverse; "forge" sends a copy signed with a wrong secret first
(once, never retried), then the genuine one; "drop" never sends it.

The statement speaks our terms (kind deposit/withdrawal, our lifecycle's status, the amount as
a decimal string), which is the reconciliation format agreed for every provider.
"""

import asyncio
import base64
import contextlib
import csv
import dataclasses
import io
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, Protocol, Self, TypeVar

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from core.errors import InvalidRequest
from core.money import MAX_MINOR, Money, check_currency, parse_amount
from core.payments import signatures
from core.payments.lifecycle import Event, Kind
from core.payments.providers import Method
from core.payments.reconcile import STATEMENT_COLUMNS
from core.payments.routing import PaymentsConfig, ProviderConfig

Log = Callable[[str], None]
_T = TypeVar("_T")
Outcome = Literal["confirmed", "failed", "expired"]
FINAL: Final[frozenset[str]] = frozenset({"confirmed", "failed", "expired"})
WEBHOOK_TIMEOUT_S: Final = 5.0
_STALL_MARGIN_S: Final = 1.0
_REFERENCE = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_COUNTRY = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
_CURRENCY = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
_CODE = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


# The control API's commands


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RequestFault(_Strict):
    on: Literal["submit", "lookup"]
    mode: Literal["drop", "lost_answer", "status"]
    count: int = Field(1, ge=1, le=1000)
    status: int = Field(503, ge=400, le=599)
    code: _CODE = "simulated_failure"
    stall_s: float | None = Field(None, gt=0, le=600)

    @model_validator(mode="after")
    def _acts(self) -> Self:
        if self.on == "lookup" and self.mode == "lost_answer":
            raise ValueError("a lookup acts on nothing, so it has no lost_answer mode")
        return self


class WebhookFault(_Strict):
    on: Literal["webhook"]
    mode: Literal["delay", "duplicate", "reorder", "forge", "drop"]
    count: int = Field(1, ge=1, le=1000)
    delay_s: float = Field(1.0, ge=0, le=600)
    times: int = Field(2, ge=2, le=20)


_FAULT: Final = TypeAdapter[RequestFault | WebhookFault](
    Annotated[RequestFault | WebhookFault, Field(discriminator="on")]
)


class Settlement(_Strict):
    mode: Literal["auto", "manual"]
    after_s: float = Field(0.0, ge=0, le=3600)


class Settle(_Strict):
    outcome: Outcome


_SETTLEMENT: Final = TypeAdapter(Settlement)
_SETTLE: Final = TypeAdapter(Settle)


# What the providers are sent


class _SwiftpayRequest(_Strict):
    reference: _REFERENCE
    amount: str
    currency: _CURRENCY
    country: _COUNTRY
    method: Method
    destination: _REFERENCE | None = None


class _PayrailRequest(_Strict):
    merchant_reference: _REFERENCE
    type: Literal["PAYIN", "PAYOUT"]
    amount_minor: int = Field(gt=0, le=MAX_MINOR)
    currency: _CURRENCY
    country: _COUNTRY
    payment_method: Literal["CARD", "BANK_TRANSFER", "CRYPTO"]
    beneficiary: _REFERENCE | None = None


@dataclass
class SimPayment:
    """A payment as the simulated provider holds it; `status` is in our lifecycle's terms."""

    provider: str
    provider_ref: str
    reference: str  # our payment id
    kind: Kind
    amount: Money
    country: str
    method: Method
    destination: str | None
    status: Event
    created_at: datetime
    settled_at: datetime | None = None

    def summary(self) -> dict[str, object]:
        return {
            "provider_ref": self.provider_ref,
            "payment_id": self.reference,
            "kind": self.kind,
            "amount": self.amount.decimal_string,
            "currency": self.amount.currency,
            "status": self.status,
            "created_at": _rfc3339(self.created_at),
            "settled_at": _rfc3339(self.settled_at) if self.settled_at else None,
        }


@dataclass
class _Fault:
    spec: RequestFault | WebhookFault
    remaining: int


@dataclass
class _Message:
    """A webhook to deliver: its id and body are fixed; each attempt signs it afresh."""

    provider: str
    message_id: str
    reference: str
    event: Event
    body: bytes
    forged: bool = False
    attempts: int = 0


@dataclass
class _Provider:
    config: ProviderConfig
    payments: dict[str, SimPayment] = field(default_factory=dict)  # by our payment id
    replies: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)  # idempotency
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)
    held: list[_Message] = field(default_factory=list)  # a reorder's webhooks
    settlement: Settlement = field(default_factory=lambda: Settlement(mode="auto"))

    def take(self, on: str) -> tuple[RequestFault | WebhookFault | None, bool]:
        """The fault for the next request or webhook of `on`, and whether it just ran out."""
        queue = self.faults.get(on)
        if not queue:
            return None, False
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            queue.popleft()
        return fault.spec, fault.remaining == 0


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """The providers' state, the webhook queue and its delivery; the routes call into it."""

    def __init__(
        self,
        config: PaymentsConfig,
        *,
        callback_base: str,
        retry_base_s: float,
        max_attempts: int,
        log: Log | None,
    ) -> None:
        self.providers = {name: _Provider(conf) for name, conf in config.providers.items()}
        self.callback_base = callback_base.rstrip("/")
        self._retry_base_s = retry_base_s
        self._max_attempts = max_attempts
        self.log: Log = log or (lambda _: None)
        self._queue: list[tuple[float, int, _Message]] = []  # (due, order, message)
        self._order = itertools.count()
        self.deliveries: list[dict[str, object]] = []
        self._sending = asyncio.Lock()
        self._queued = asyncio.Event()
        self._cut = asyncio.Event()
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}  # automatic settlements
        self._refs = itertools.count(1)
        self._client: httpx.AsyncClient | None = None

    def webhook_url(self, provider: str) -> str:
        return f"{self.callback_base}/v1/webhooks/{provider}"

    # Lifecycle

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        worker = asyncio.create_task(self._deliver_forever())
        try:
            yield
        finally:
            self._cut.set()
            self._cancel_timers()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await self._client.aclose()

    async def reset(self) -> None:
        self._cut.set()  # requests stalled now answer at once
        self._cut = asyncio.Event()
        async with self._sending:  # not while a delivery is on its way
            self._forget()

    def _forget(self) -> None:
        for provider in self.providers.values():
            provider.payments.clear()
            provider.replies.clear()
            provider.faults.clear()
            provider.held.clear()
            provider.settlement = Settlement(mode="auto")
        self._queue.clear()
        self.deliveries.clear()
        self._cancel_timers()

    def _cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def stall(self, provider: _Provider, fault: RequestFault) -> None:
        """Hold a request past the client's timeout (reset or shutdown cut it short)."""
        seconds = fault.stall_s or provider.config.timeout_s + _STALL_MARGIN_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._cut.wait(), seconds)

    # Payments

    def new_ref(self, provider: _Provider, kind: Kind) -> str:
        number = next(self._refs)
        if provider.config.contract == "payrail":
            return f"PR{number:010d}"
        prefix = "pay" if kind == "deposit" else "po"
        return f"{prefix}_{number:06d}{secrets.token_hex(4)}"

    def opened(self, provider: _Provider, payment: SimPayment) -> None:
        """A new payment: its first webhook now, its settlement soon if that is automatic.

        Even "at once" settles on the loop's next turn, so the answer that opened the payment
        still shows it open, as a provider's would.
        """
        provider.payments[payment.reference] = payment
        self.log(f"{provider.config.name}: {payment.kind} {payment.reference} {payment.amount}")
        self.emit(provider, payment)
        if provider.settlement.mode == "auto":
            timer = asyncio.get_running_loop().call_later(
                provider.settlement.after_s, self._settle_if_open, provider, payment
            )
            self._timers[provider.config.name, payment.reference] = timer

    def _settle_if_open(self, provider: _Provider, payment: SimPayment) -> None:
        self._timers.pop((provider.config.name, payment.reference), None)
        if payment.status not in FINAL and provider.payments.get(payment.reference) is payment:
            self.settle(provider, payment, "confirmed")

    def settle(self, provider: _Provider, payment: SimPayment, outcome: Outcome) -> None:
        payment.status = outcome
        payment.settled_at = _now()
        self.log(f"{provider.config.name}: {payment.reference} {outcome}")
        self.emit(provider, payment)

    # Webhooks

    def emit(self, provider: _Provider, payment: SimPayment) -> None:
        """Queue the webhook of the payment's current state, through the webhook faults."""
        contract = _CONTRACTS[provider.config.contract]
        message_id = contract.message_id()
        message = _Message(
            provider.config.name,
            message_id,
            payment.reference,
            payment.status,
            contract.webhook(payment, message_id),
        )
        fault, ran_out = provider.take("webhook")
        if not isinstance(fault, WebhookFault):
            self._enqueue(message)
        elif fault.mode == "drop":
            self._record(message, status=None, error="dropped", final=True)
        elif fault.mode == "delay":
            self._enqueue(message, delay=fault.delay_s)
        elif fault.mode == "duplicate":
            for _ in range(fault.times):
                self._enqueue(dataclasses.replace(message))
        elif fault.mode == "forge":
            self._enqueue(dataclasses.replace(message, forged=True))
            self._enqueue(message)
        else:  # reorder
            provider.held.append(message)
            if ran_out:
                self._release(provider)

    def _release(self, provider: _Provider) -> None:
        for message in reversed(provider.held):
            self._enqueue(message)
        provider.held.clear()

    def _enqueue(self, message: _Message, delay: float = 0.0) -> None:
        due = asyncio.get_running_loop().time() + delay
        self._queue.append((due, next(self._order), message))
        self._queued.set()

    def _next(self, *, due_only: bool) -> _Message | None:
        if not self._queue:
            return None
        entry = min(self._queue, key=lambda item: item[:2])
        if due_only and entry[0] > asyncio.get_running_loop().time():
            return None
        self._queue.remove(entry)
        return entry[2]

    async def _deliver_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with self._sending:
                message = self._next(due_only=True)
                if message is not None:
                    await self._attempt(message)
            if message is None:
                self._queued.clear()
                wait = min((due for due, _, _ in self._queue), default=loop.time() + 60)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), max(wait - loop.time(), 0.001))

    async def deliver_now(self) -> list[dict[str, object]]:
        """Deliver everything queued and held, now, retries included; the attempts made."""
        async with self._sending:
            first = len(self.deliveries)
            for provider in self.providers.values():
                self._release(provider)
            while (message := self._next(due_only=False)) is not None:
                await self._attempt(message)
            return self.deliveries[first:]

    async def _attempt(self, message: _Message) -> None:
        assert self._client is not None  # noqa: S101 - set while running
        provider = self.providers[message.provider]
        contract = _CONTRACTS[provider.config.contract]
        webhook_secrets = (
            contract.forgery_secrets() if message.forged else provider.config.webhook_secrets
        )
        headers = contract.sign(webhook_secrets, message.message_id, int(time.time()), message.body)
        message.attempts += 1
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(
                self.webhook_url(message.provider),
                content=message.body,
                headers=headers | {"Content-Type": "application/json"},
            )
            status = response.status_code
        except httpx.HTTPError as failure:
            error = type(failure).__name__
        delivered = status is not None and 200 <= status < 300  # noqa: PLR2004 - HTTP's 2xx
        # A forger does not retry; a provider retries until its attempts run out.
        final = delivered or message.forged or message.attempts >= self._max_attempts
        self._record(message, status=status, error=error, final=final)
        if not final:
            backoff = self._retry_base_s * 2 ** (message.attempts - 1)
            self._enqueue(message, delay=backoff)

    def _record(
        self, message: _Message, *, status: int | None, error: str | None, final: bool
    ) -> None:
        entry: dict[str, object] = {
            "provider": message.provider,
            "message_id": message.message_id,
            "payment_id": message.reference,
            "event": message.event,
            "attempt": message.attempts,
            "status": status,
            "error": error,
            "forged": message.forged,
            "final": final,
            "at": _rfc3339(_now()),
        }
        self.deliveries.append(entry)
        answer = status if status is not None else error
        self.log(f"webhook {message.provider} {message.event} {message.message_id}: {answer}")


# The two contracts' dialects


class _Dialect(Protocol):
    def message_id(self) -> str: ...
    def forgery_secrets(self) -> tuple[str, ...]: ...
    def sign(
        self, webhook_secrets: tuple[str, ...], message_id: str, timestamp: int, body: bytes
    ) -> dict[str, str]: ...
    def render(self, payment: SimPayment, base: str) -> dict[str, object]: ...
    def webhook(self, payment: SimPayment, message_id: str) -> bytes: ...
    def error(self, status: int, code: str, message: str) -> JSONResponse: ...


class _Swiftpay:
    """The "standard" contract: decimal strings, Idempotency-Key, Standard Webhooks."""

    words: Final[dict[tuple[Kind, str], str]] = {
        ("deposit", "pending"): "pending",
        ("deposit", "confirmed"): "succeeded",
        ("deposit", "failed"): "failed",
        ("deposit", "expired"): "expired",
        ("withdrawal", "sent"): "in_transit",
        ("withdrawal", "confirmed"): "paid",
        ("withdrawal", "failed"): "failed",
    }

    @staticmethod
    def message_id() -> str:
        return f"msg_{secrets.token_hex(12)}"

    @staticmethod
    def forgery_secrets() -> tuple[str, ...]:
        return ("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),)

    @staticmethod
    def sign(
        webhook_secrets: tuple[str, ...], message_id: str, timestamp: int, body: bytes
    ) -> dict[str, str]:
        return signatures.webhook_headers(webhook_secrets, message_id, timestamp, body)

    def render(self, payment: SimPayment, base: str) -> dict[str, object]:
        rendered: dict[str, object] = {
            "id": payment.provider_ref,
            "object": "payment" if payment.kind == "deposit" else "payout",
            "reference": payment.reference,
            "status": self.words[payment.kind, payment.status],
            "amount": payment.amount.decimal_string,
            "currency": payment.amount.currency,
            "country": payment.country,
            "method": payment.method,
            "created": _rfc3339(payment.created_at),
        }
        if payment.destination is not None:
            rendered["destination"] = payment.destination
        if payment.kind == "deposit" and base:
            rendered["redirect_url"] = f"{base}/{payment.provider}/checkout/{payment.provider_ref}"
        return rendered

    def webhook(self, payment: SimPayment, message_id: str) -> bytes:
        del message_id  # Standard Webhooks carry it in a header
        data = self.render(payment, "")
        document = {"type": f"{data['object']}.{data['status']}", "timestamp": _rfc3339(_now())}
        return json.dumps(document | {"data": data}).encode()

    @staticmethod
    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status)


class _Payrail:
    """The "payrail" contract: minor units, unique merchant references, its own words."""

    @staticmethod
    def word(payment: SimPayment) -> str:
        if payment.kind == "withdrawal":
            return {"sent": "PROCESSING", "confirmed": "PAID_OUT"}.get(payment.status, "DECLINED")
        if payment.status == "pending":
            return "AUTHORISED" if payment.method == "card" else "PENDING"
        return {"confirmed": "SETTLED", "failed": "DECLINED"}.get(payment.status, "EXPIRED")

    @staticmethod
    def message_id() -> str:
        return f"evt_{secrets.token_hex(12)}"

    @staticmethod
    def forgery_secrets() -> tuple[str, ...]:
        return (secrets.token_hex(24),)

    @staticmethod
    def sign(
        webhook_secrets: tuple[str, ...], message_id: str, timestamp: int, body: bytes
    ) -> dict[str, str]:
        del message_id  # Payrail's is inside the signed body
        return {
            signatures.PAYRAIL_SIGNATURE: signatures.sign_payrail(webhook_secrets, timestamp, body)
        }

    def render(self, payment: SimPayment, base: str) -> dict[str, object]:
        rendered: dict[str, object] = {
            "transaction_id": payment.provider_ref,
            "merchant_reference": payment.reference,
            "type": "PAYIN" if payment.kind == "deposit" else "PAYOUT",
            "state": self.word(payment),
            "amount_minor": payment.amount.minor,
            "currency": payment.amount.currency,
            "country": payment.country,
            "payment_method": payment.method.upper(),
            "created_at": int(payment.created_at.timestamp()),
        }
        if payment.destination is not None:
            rendered["beneficiary"] = payment.destination
        if payment.kind == "deposit" and base:
            rendered["payment_url"] = f"{base}/{payment.provider}/checkout/{payment.provider_ref}"
        return rendered

    def webhook(self, payment: SimPayment, message_id: str) -> bytes:
        document = {
            "event_id": message_id,
            "event_type": "TRANSACTION_STATE_CHANGED",
            "created_at": int(time.time()),
            "transaction": self.render(payment, ""),
        }
        return json.dumps(document).encode()

    @staticmethod
    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error_code": code.upper(), "error_message": message}, status)


_CONTRACTS: Final[dict[str, _Dialect]] = {"standard": _Swiftpay(), "payrail": _Payrail()}


# The providers' APIs


class _Answer(Exception):
    """An early answer, raised anywhere below a route and sent as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def _early(_: Request, answer: Exception) -> Response:
    assert isinstance(answer, _Answer)  # noqa: S101 - registered for _Answer only
    return answer.response


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


class _Api:
    """What both providers' APIs share: request faults, refusals, the hosted payment page."""

    def __init__(self, sim: Simulator, provider: _Provider) -> None:
        self.sim = sim
        self.provider = provider
        self.name = provider.config.name
        self.dialect = _CONTRACTS[provider.config.contract]

    def routes(self) -> list[BaseRoute]:
        return [Route("/checkout/{ref}", self.checkout, methods=["GET"])]

    def refuse(self, status: int, code: str, message: str) -> _Answer:
        return _Answer(self.dialect.error(status, code, message))

    async def faulty(
        self,
        on: Literal["submit", "lookup"],
        request: Request,
        act: Callable[[], Awaitable[Response]],
    ) -> Response:
        """`act`, unless a request fault of `on` is queued: then what the fault says."""
        fault, _ = self.provider.take(on)
        if not isinstance(fault, RequestFault):
            return await act()
        self.sim.log(f"{self.name}: {on} {request.url.path}: {fault.mode}")
        if fault.mode == "drop":  # lost on the way: nothing done
            await self.sim.stall(self.provider, fault)
            return Response(status_code=504)
        if fault.mode == "status":
            return self.dialect.error(fault.status, fault.code, "simulated failure")
        answer = await act()  # lost_answer: done, but the answer never arrives
        await self.sim.stall(self.provider, fault)
        return answer

    def open(
        self,
        reference: str,
        kind: Kind,
        amount: Money,
        *,
        country: str,
        method: Method,
        destination: str | None,
    ) -> SimPayment:
        payment = SimPayment(
            provider=self.name,
            provider_ref=self.sim.new_ref(self.provider, kind),
            reference=reference,
            kind=kind,
            amount=amount,
            country=country,
            method=method,
            destination=destination,
            status="pending" if kind == "deposit" else "sent",
            created_at=_now(),
        )
        self.sim.opened(self.provider, payment)
        return payment

    async def checkout(self, request: Request) -> Response:
        return PlainTextResponse(
            f"{self.name} simulator: the hosted payment page of {request.path_params['ref']}."
            f" Settle it with POST /_control/{self.name}/payments/<payment id>/settle"
        )


class _SwiftpayApi(_Api):
    def routes(self) -> list[BaseRoute]:
        async def payments(request: Request) -> Response:
            return await self.faulty("submit", request, lambda: self.create(request, "deposit"))

        async def payouts(request: Request) -> Response:
            return await self.faulty("submit", request, lambda: self.create(request, "withdrawal"))

        async def by_reference(request: Request) -> Response:
            return await self.faulty("lookup", request, lambda: self.lookup(request))

        return [
            *super().routes(),
            Route("/v1/payments", payments, methods=["POST"]),
            Route("/v1/payouts", payouts, methods=["POST"]),
            Route("/v1/payments/by-reference/{reference}", by_reference, methods=["GET"]),
        ]

    def authorise(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {self.provider.config.api_key}":
            raise self.refuse(401, "unauthorized", "invalid API key")

    async def create(self, request: Request, kind: Kind) -> Response:
        self.authorise(request)
        key = request.headers.get("idempotency-key", "")
        if not key:
            raise self.refuse(400, "idempotency_key_missing", "Idempotency-Key is required")
        try:
            order = _SwiftpayRequest.model_validate_json(await request.body())
            amount = parse_amount(order.amount, order.currency)
        except (ValidationError, InvalidRequest) as error:
            raise self.refuse(422, "invalid_request", str(error).splitlines()[0]) from None
        if kind == "withdrawal" and order.destination is None:
            raise self.refuse(422, "destination_required", "a payout needs a destination")
        fingerprint = f"{request.url.path} {order.model_dump_json()}"
        replied = self.provider.replies.get(key)
        if replied is not None:  # the first answer again, byte for byte
            if replied[0] != fingerprint:
                message = "this Idempotency-Key was used with another request"
                raise self.refuse(422, "idempotency_key_reused", message)
            headers = {"Idempotent-Replayed": "true"}
            return Response(replied[2], replied[1], headers, media_type="application/json")
        if order.reference in self.provider.payments:
            raise self.refuse(409, "reference_in_use", "another request has this reference")
        payment = self.open(
            order.reference,
            kind,
            amount,
            country=order.country,
            method=order.method,
            destination=order.destination,
        )
        body = json.dumps(self.dialect.render(payment, _base(request))).encode()
        self.provider.replies[key] = (fingerprint, 201, body)
        return Response(body, 201, media_type="application/json")

    async def lookup(self, request: Request) -> Response:
        self.authorise(request)
        payment = self.provider.payments.get(request.path_params["reference"])
        if payment is None:
            raise self.refuse(404, "resource_missing", "no payment has this reference")
        return JSONResponse(self.dialect.render(payment, _base(request)))


class _PayrailApi(_Api):
    def routes(self) -> list[BaseRoute]:
        async def transactions(request: Request) -> Response:
            if request.method == "POST":
                return await self.faulty("submit", request, lambda: self.create(request))
            return await self.faulty("lookup", request, lambda: self.lookup(request))

        return [
            *super().routes(),
            Route("/api/v2/transactions", transactions, methods=["GET", "POST"]),
        ]

    def authorise(self, request: Request) -> None:
        if request.headers.get("x-payrail-key") != self.provider.config.api_key:
            raise self.refuse(401, "AUTH_FAILED", "invalid X-Payrail-Key")

    async def create(self, request: Request) -> Response:
        self.authorise(request)
        try:
            order = _PayrailRequest.model_validate_json(await request.body())
            check_currency(order.currency)
        except (ValidationError, InvalidRequest) as error:
            raise self.refuse(400, "VALIDATION_ERROR", str(error).splitlines()[0]) from None
        kind: Kind = "deposit" if order.type == "PAYIN" else "withdrawal"
        if kind == "withdrawal" and order.beneficiary is None:
            raise self.refuse(400, "VALIDATION_ERROR", "a PAYOUT needs a beneficiary")
        existing = self.provider.payments.get(order.merchant_reference)
        if existing is not None:  # the reference is unique: the transaction Payrail has
            duplicate = {
                "error_code": "DUPLICATE_REFERENCE",
                "error_message": "a transaction has this merchant_reference",
                "transaction": self.dialect.render(existing, _base(request)),
            }
            return JSONResponse(duplicate, 409)
        payment = self.open(
            order.merchant_reference,
            kind,
            Money(order.amount_minor, order.currency),
            country=order.country,
            method=_METHODS[order.payment_method],
            destination=order.beneficiary,
        )
        return JSONResponse(self.dialect.render(payment, _base(request)), 201)

    async def lookup(self, request: Request) -> Response:
        self.authorise(request)
        payment = self.provider.payments.get(request.query_params.get("merchant_reference", ""))
        found = [] if payment is None else [self.dialect.render(payment, _base(request))]
        return JSONResponse({"transactions": found})


_METHODS: Final[dict[str, Method]] = {
    "CARD": "card",
    "BANK_TRANSFER": "bank_transfer",
    "CRYPTO": "crypto",
}


# The control API


def _control_error(status: int, code: str, message: str) -> _Answer:
    return _Answer(JSONResponse({"error": {"code": code, "message": message}}, status))


class _ControlApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_control", self.overview, methods=["GET"]),
            Route("/_control/reset", self.reset, methods=["POST"]),
            Route("/_control/deliver", self.deliver, methods=["POST"]),
            Route("/_control/deliveries", self.deliveries, methods=["GET"]),
            Route("/_control/{provider}/faults", self.faults, methods=["POST"]),
            Route("/_control/{provider}/settlement", self.settlement, methods=["POST"]),
            Route(
                "/_control/{provider}/payments/{payment_id}/settle", self.settle, methods=["POST"]
            ),
            Route("/_control/{provider}/payments", self.payments, methods=["GET"]),
            Route("/_control/{provider}/statement.csv", self.statement, methods=["GET"]),
        ]

    def provider(self, request: Request) -> _Provider:
        name = request.path_params["provider"]
        provider = self.sim.providers.get(name)
        if provider is None:
            raise _control_error(404, "unknown_provider", f"no provider {name!r}")
        return provider

    @staticmethod
    async def parsed(adapter: TypeAdapter[_T], request: Request) -> _T:
        try:
            return adapter.validate_json(await request.body())
        except ValidationError as error:
            problems = "; ".join(f"{e['loc']}: {e['msg']}" for e in error.errors())
            raise _control_error(422, "invalid_request", problems) from None

    async def overview(self, _: Request) -> Response:
        providers = {
            name: {"contract": p.config.contract, "webhook_url": self.sim.webhook_url(name)}
            for name, p in self.sim.providers.items()
        }
        return JSONResponse({"providers": providers})

    async def reset(self, _: Request) -> Response:
        await self.sim.reset()
        return JSONResponse({"reset": True})

    async def deliver(self, _: Request) -> Response:
        return JSONResponse({"deliveries": await self.sim.deliver_now()})

    async def deliveries(self, _: Request) -> Response:
        return JSONResponse({"deliveries": self.sim.deliveries})

    async def faults(self, request: Request) -> Response:
        provider = self.provider(request)
        spec = await self.parsed(_FAULT, request)
        provider.faults.setdefault(spec.on, deque()).append(_Fault(spec, spec.count))
        self.sim.log(f"{provider.config.name}: next {spec.count} {spec.on}: {spec.mode}")
        return JSONResponse(spec.model_dump(), 201)

    async def settlement(self, request: Request) -> Response:
        provider = self.provider(request)
        provider.settlement = await self.parsed(_SETTLEMENT, request)
        return JSONResponse(provider.settlement.model_dump())

    async def settle(self, request: Request) -> Response:
        provider = self.provider(request)
        payment = provider.payments.get(request.path_params["payment_id"])
        if payment is None:
            raise _control_error(404, "unknown_payment", "the provider has no such payment")
        outcome = (await self.parsed(_SETTLE, request)).outcome
        if payment.kind == "withdrawal" and outcome == "expired":
            raise _control_error(422, "invalid_outcome", "a payout does not expire")
        if payment.status in FINAL:
            raise _control_error(409, "already_final", f"the payment is {payment.status}")
        self.sim.settle(provider, payment, outcome)
        return JSONResponse(payment.summary())

    async def payments(self, request: Request) -> Response:
        held = self.provider(request).payments.values()
        return JSONResponse({"payments": [payment.summary() for payment in held]})

    async def statement(self, request: Request) -> Response:
        held = self.provider(request).payments.values()
        return PlainTextResponse(statement_csv(held), media_type="text/csv")


def statement_csv(payments: Iterable[SimPayment]) -> str:
    """The provider's statement: one row per payment, oldest first, RFC 4180 CSV."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STATEMENT_COLUMNS)
    for payment in sorted(payments, key=lambda p: (p.created_at, p.provider_ref)):
        summary = payment.summary()
        writer.writerow([summary[column] or "" for column in STATEMENT_COLUMNS])
    return out.getvalue()


def create_app(
    config: PaymentsConfig,
    *,
    callback_base: str,
    retry_base_s: float = 1.0,
    max_attempts: int = 6,
    log: Log | None = None,
) -> Starlette:
    """The simulator as an ASGI app; `app.state.simulator` is its state, for the CLI's log."""
    sim = Simulator(
        config,
        callback_base=callback_base,
        retry_base_s=retry_base_s,
        max_attempts=max_attempts,
        log=log,
    )
    routes = _ControlApi(sim).routes()
    for provider in sim.providers.values():
        api = _SwiftpayApi if provider.config.contract == "standard" else _PayrailApi
        routes.append(Mount(f"/{provider.config.name}", routes=api(sim, provider).routes()))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with sim.running():
            yield

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={_Answer: _early})
    app.state.simulator = sim
    return app
