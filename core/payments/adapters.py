"""The two provider contracts we speak, each behind `providers.Adapter`.

Swiftpay (contract "standard") and Payrail (contract "payrail") differ in everything an adapter
can hide, so the router, the failover and the payments service never learn either dialect:

- Swiftpay ("standard"): `Authorization: Bearer <api key>`; POST /v1/payments (deposits) and
  POST /v1/payouts with `Idempotency-Key: <payment id>`, whose repeat replays the first answer;
  amounts as decimal strings ("25.00"); lookup GET /v1/payments/by-reference/{id}, where a 404
  `resource_missing` means never seen; errors `{"error": {"code", "message"}}`; states pending,
  succeeded, failed, expired (payments) and in_transit, paid, failed (payouts); webhooks signed
  the Standard Webhooks way, `type` "payment.succeeded", `data`, an RFC 3339 `timestamp`, the
  message id in the `webhook-id` header.
- Payrail ("payrail"): `X-Payrail-Key: <api key>`; POST /api/v2/transactions with type PAYIN or
  PAYOUT, where the `merchant_reference` (our payment id) is unique and a repeat is a 409
  DUPLICATE_REFERENCE carrying the transaction Payrail already has; amounts in integer minor
  units (`2500`); lookup GET /api/v2/transactions?merchant_reference={id}, where an empty list
  means never seen; errors `{"error_code", "error_message"}`; states PENDING, AUTHORISED,
  SETTLED, DECLINED, EXPIRED (PAYIN) and PROCESSING, PAID_OUT, DECLINED (PAYOUT); webhooks
  signed in `X-Payrail-Signature: t=..,v1=..`, one event type whose `transaction` carries its
  `state`, `created_at` in Unix seconds, the event id inside the signed body (`event_id`).

docs/payments-providers.md shows both side by side.

Failures map alike for both. A timeout is `ProviderUnavailable("timeout")`; a connection never
made is "unreachable", and so is one that broke mid-way (any answer is lost); a 5xx, a 429 (not
taken, try later) or a 2xx we cannot read is "server_error": whether the provider acted is
unknown, and only its lookup can tell. Any other 4xx is `ProviderDeclined` with the provider's
own error code: it did nothing with the order.

A lookup's "never seen" must be the provider's own statement, never merely a 404: a proxy or a
wrong base URL also answers 404, and reading that as "never seen" would let a payout fail over
to a second provider while the first pays it. A 404 without Swiftpay's `resource_missing` is a
lookup that failed.

Webhooks are authenticated before a byte of their body is interpreted: a forged or replayed
delivery is refused as `SignatureRefused` even when its body is garbage. A well-signed body we
cannot read is `InvalidRequest("malformed_webhook")`; a well-signed event of a type we do not map
(a refund, a dispute) is `InvalidRequest("unsupported_webhook_event")`, so the endpoint can
acknowledge it without acting.
"""

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import httpx

from core.errors import InvalidRequest
from core.money import MAX_MINOR, Money, check_currency, parse_amount
from core.payments import signatures
from core.payments.lifecycle import Event, Kind
from core.payments.providers import (
    Accepted,
    Known,
    Method,
    Order,
    ProviderDeclined,
    ProviderUnavailable,
    WebhookEvent,
)

DEFAULT_TIMEOUT_S: Final = 10.0

# Swiftpay: (object, status) -> our event. A webhook's type is "{object}.{status}".
SWIFTPAY_OBJECTS: Final[Mapping[Kind, str]] = {"deposit": "payment", "withdrawal": "payout"}
SWIFTPAY_EVENTS: Final[Mapping[tuple[str, str], Event]] = {
    ("payment", "pending"): "pending",
    ("payment", "succeeded"): "confirmed",
    ("payment", "failed"): "failed",
    ("payment", "expired"): "expired",
    ("payout", "in_transit"): "sent",
    ("payout", "paid"): "confirmed",
    ("payout", "failed"): "failed",
}
SWIFTPAY_NOT_FOUND: Final = "resource_missing"

# Payrail: (type, state) -> our event. AUTHORISED is a card the issuer has reserved the money
# on; it is not ours until SETTLED, so it is still "pending" to us.
PAYRAIL_TYPES: Final[Mapping[Kind, str]] = {"deposit": "PAYIN", "withdrawal": "PAYOUT"}
PAYRAIL_METHODS: Final[Mapping[Method, str]] = {
    "card": "CARD",
    "bank_transfer": "BANK_TRANSFER",
    "crypto": "CRYPTO",
}
PAYRAIL_EVENTS: Final[Mapping[tuple[str, str], Event]] = {
    ("PAYIN", "PENDING"): "pending",
    ("PAYIN", "AUTHORISED"): "pending",
    ("PAYIN", "SETTLED"): "confirmed",
    ("PAYIN", "DECLINED"): "failed",
    ("PAYIN", "EXPIRED"): "expired",
    ("PAYOUT", "PROCESSING"): "sent",
    ("PAYOUT", "PAID_OUT"): "confirmed",
    ("PAYOUT", "DECLINED"): "failed",
}
PAYRAIL_DUPLICATE: Final = "DUPLICATE_REFERENCE"

# Payrail signs the body, and the event id is inside it: the signature is checked with this
# stand-in id first (the HMAC covers the timestamp and the body, not the id), and only then is
# the body read for the real one. See PayrailAdapter.parse_webhook.
_UNREAD_ID: Final = "unread"
_TOO_MANY_REQUESTS: Final = 429
_NOT_FOUND: Final = 404
_CONFLICT: Final = 409


class _Fields:
    """Typed reads from a JSON object a provider sent: it is untrusted input like any other.

    `refuse` makes the exception for a missing or mistyped field: a malformed webhook for a
    webhook, a server error for an API answer.
    """

    def __init__(self, raw: object, refuse: Callable[[str], Exception], path: str = "") -> None:
        if not isinstance(raw, dict):
            raise refuse(path or "body")
        self._raw: dict[str, Any] = raw
        self._refuse = refuse
        self._path = path

    def _get(self, key: str) -> object:
        return self._raw.get(key)

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self._refuse(self._path + key)
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self._get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        value = self._get(key)
        if type(value) is not int:  # neither a bool nor a float passes
            raise self._refuse(self._path + key)
        return value

    def object(self, key: str) -> "_Fields":
        return _Fields(self._get(key), self._refuse, f"{self._path}{key}.")

    def objects(self, key: str) -> list["_Fields"]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._refuse(self._path + key)
        return [_Fields(item, self._refuse, f"{self._path}{key}[].") for item in value]


class _Http:
    """One provider's HTTP calls, with the failure mapping both contracts share."""

    def __init__(
        self, name: str, base_url: str, client: httpx.AsyncClient, timeout_s: float
    ) -> None:
        self.name = name
        self._base = base_url.rstrip("/")
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)

    async def send(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        headers: Mapping[str, str],
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The provider's answer below 500; raises ProviderUnavailable when there is none."""
        try:
            response = await self._client.request(
                method,
                self._base + path,
                headers=dict(headers),
                json=body,
                params=params,
                timeout=self._timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise ProviderUnavailable(self.name, "unreachable") from None
        except httpx.TimeoutException:
            raise ProviderUnavailable(self.name, "timeout") from None
        except httpx.TransportError:
            raise ProviderUnavailable(self.name, "unreachable") from None
        status = response.status_code
        if status >= 500 or status == _TOO_MANY_REQUESTS:  # noqa: PLR2004 - HTTP's classes
            raise ProviderUnavailable(self.name, "server_error", status)
        return response

    def answer(self, response: httpx.Response) -> _Fields:
        """A 2xx's JSON object; one we cannot read leaves us not knowing what was done."""
        status = response.status_code

        def unreadable(_: str) -> Exception:
            return ProviderUnavailable(self.name, "server_error", status)

        try:
            raw = response.json()
        except ValueError:
            raw = None
        return _Fields(raw, unreadable)


def _error_body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _declined(provider: str, code: object, status: int) -> ProviderDeclined:
    return ProviderDeclined(provider, code if isinstance(code, str) else f"http_{status}", status)


def _malformed(field: str) -> Exception:
    return InvalidRequest(
        "malformed_webhook", f"the webhook's {field} is missing or unreadable", field=field
    )


def _webhook_json(body: bytes) -> _Fields:
    try:
        raw = json.loads(body)
    except ValueError:
        raise _malformed("body") from None
    return _Fields(raw, _malformed)


def _payment_id(text: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _malformed(field) from None


def _unsupported(provider: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        "unsupported_webhook_event",
        f"{provider} sent an event we do not act on: {what}",
        provider=provider,
        event=what,
    )


class _Provider:
    """What both adapters hold: the provider's name, its HTTP endpoint and key, its webhook
    secrets (several while a rotation overlaps) and the signature tolerance."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        webhook_secrets: Sequence[str],
        client: httpx.AsyncClient,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        tolerance: timedelta = signatures.DEFAULT_TOLERANCE,
    ) -> None:
        self.name = name
        self._http = _Http(name, base_url, client, timeout_s)
        self._api_key = api_key
        self._secrets = tuple(webhook_secrets)
        self._tolerance = tolerance


class StandardAdapter(_Provider):
    """Swiftpay: a JSON REST API with decimal-string amounts, and Standard Webhooks."""

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def _declined(self, response: httpx.Response) -> ProviderDeclined:
        raw = _error_body(response)
        error = raw.get("error") if isinstance(raw, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        status = response.status_code
        return ProviderDeclined(
            self.name, code if isinstance(code, str) else f"http_{status}", status
        )

    async def submit(self, order: Order) -> Accepted:
        path = "/v1/payments" if order.kind == "deposit" else "/v1/payouts"
        body: dict[str, object] = {
            "reference": str(order.payment_id),
            "amount": order.amount.decimal_string,
            "currency": order.amount.currency,
            "country": order.country,
            "method": order.method,
        }
        if order.destination is not None:
            body["destination"] = order.destination
        # Our payment id is the key: a retry here, or after failing over and back, is one payment.
        headers = self._headers() | {"Idempotency-Key": str(order.payment_id)}
        response = await self._http.send("POST", path, headers=headers, body=body)
        if response.is_client_error:
            raise self._declined(response)
        answer = self._http.answer(response)
        if answer.text("reference") != str(order.payment_id):
            raise ProviderUnavailable(self.name, "server_error", response.status_code)
        return Accepted(self.name, answer.text("id"), answer.optional_text("redirect_url"))

    async def lookup(self, payment_id: uuid.UUID) -> Known | None:
        path = f"/v1/payments/by-reference/{payment_id}"
        response = await self._http.send("GET", path, headers=self._headers())
        if response.status_code == _NOT_FOUND:
            declined = self._declined(response)
            if declined.code == SWIFTPAY_NOT_FOUND:
                return None
            raise ProviderUnavailable(self.name, "server_error", _NOT_FOUND)
        if response.is_client_error:
            raise self._declined(response)
        answer = self._http.answer(response)
        status = answer.text("status")
        return Known(
            provider=self.name,
            provider_ref=answer.text("id"),
            status=status,
            event=SWIFTPAY_EVENTS.get((answer.text("object"), status)),
            redirect_url=answer.optional_text("redirect_url"),
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        verified = signatures.verify(self._secrets, headers, body, now, tolerance=self._tolerance)
        doc = _webhook_json(body)
        data = doc.object("data")
        kind, _, status = doc.text("type").partition(".")
        event = SWIFTPAY_EVENTS.get((kind, status))
        if event is None:
            raise _unsupported(self.name, doc.text("type"))
        try:
            amount = parse_amount(data.text("amount"), data.text("currency"))
            occurred_at = datetime.fromisoformat(doc.text("timestamp"))
        except (InvalidRequest, ValueError):
            raise _malformed("data.amount, data.currency or timestamp") from None
        if occurred_at.utcoffset() is None:
            raise _malformed("timestamp")
        return WebhookEvent(
            provider=self.name,
            message_id=verified.message_id,
            payment_id=_payment_id(data.text("reference"), "data.reference"),
            provider_ref=data.text("id"),
            event=event,
            amount=amount,
            occurred_at=occurred_at.astimezone(UTC),
        )


class PayrailAdapter(_Provider):
    """Payrail: transactions with integer minor units, its own states, and signed bodies."""

    def _headers(self) -> dict[str, str]:
        return {"X-Payrail-Key": self._api_key, "Accept": "application/json"}

    def _declined(self, response: httpx.Response) -> ProviderDeclined:
        raw = _error_body(response)
        code = raw.get("error_code") if isinstance(raw, dict) else None
        status = response.status_code
        return ProviderDeclined(
            self.name, code if isinstance(code, str) else f"http_{status}", status
        )

    async def submit(self, order: Order) -> Accepted:
        body: dict[str, object] = {
            "merchant_reference": str(order.payment_id),
            "type": PAYRAIL_TYPES[order.kind],
            "amount_minor": order.amount.minor,
            "currency": order.amount.currency,
            "country": order.country,
            "payment_method": PAYRAIL_METHODS[order.method],
        }
        if order.destination is not None:
            body["beneficiary"] = order.destination
        response = await self._http.send(
            "POST", "/api/v2/transactions", headers=self._headers(), body=body
        )
        if response.status_code == _CONFLICT:
            return self._already_had(order, response)
        if response.is_client_error:
            raise self._declined(response)
        return self._accepted(order, self._http.answer(response), response.status_code)

    def _already_had(self, order: Order, response: httpx.Response) -> Accepted:
        """Payrail's answer to a merchant reference it knows: the transaction it already has.

        The same order again is the same payment (our retry, or a failover coming back); an
        order with other content under the same reference is declined, never merged.
        """
        declined = self._declined(response)
        if declined.code != PAYRAIL_DUPLICATE:
            raise declined
        existing = self._http.answer(response).object("transaction")
        same = (
            existing.text("type") == PAYRAIL_TYPES[order.kind]
            and existing.integer("amount_minor") == order.amount.minor
            and existing.text("currency") == order.amount.currency
        )
        if not same:
            raise declined
        return self._accepted(order, existing, response.status_code)

    def _accepted(self, order: Order, transaction: _Fields, status: int) -> Accepted:
        if transaction.text("merchant_reference") != str(order.payment_id):
            raise ProviderUnavailable(self.name, "server_error", status)
        return Accepted(
            self.name,
            transaction.text("transaction_id"),
            transaction.optional_text("payment_url"),
        )

    async def lookup(self, payment_id: uuid.UUID) -> Known | None:
        response = await self._http.send(
            "GET",
            "/api/v2/transactions",
            headers=self._headers(),
            params={"merchant_reference": str(payment_id)},
        )
        if response.is_client_error:
            raise self._declined(response)
        found = self._http.answer(response).objects("transactions")
        if not found:
            return None
        if len(found) > 1:  # the reference is unique at Payrail: an answer we cannot trust
            raise ProviderUnavailable(self.name, "server_error", response.status_code)
        transaction = found[0]
        state = transaction.text("state")
        return Known(
            provider=self.name,
            provider_ref=transaction.text("transaction_id"),
            status=state,
            event=PAYRAIL_EVENTS.get((transaction.text("type"), state)),
            redirect_url=transaction.optional_text("payment_url"),
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        # Authenticity first, with a stand-in id: the signature covers the body, not the id.
        signatures.verify_payrail(
            self._secrets, headers, body, now, event_id=_UNREAD_ID, tolerance=self._tolerance
        )
        doc = _webhook_json(body)
        # Again with the real id, which checks its form and makes it the replay store's key.
        verified = signatures.verify_payrail(
            self._secrets,
            headers,
            body,
            now,
            event_id=doc.text("event_id"),
            tolerance=self._tolerance,
        )
        transaction = doc.object("transaction")
        kind, state = transaction.text("type"), transaction.text("state")
        event = PAYRAIL_EVENTS.get((kind, state))
        if event is None:
            raise _unsupported(self.name, f"{kind} {state}")
        return WebhookEvent(
            provider=self.name,
            message_id=verified.message_id,
            payment_id=_payment_id(
                transaction.text("merchant_reference"), "transaction.merchant_reference"
            ),
            provider_ref=transaction.text("transaction_id"),
            event=event,
            amount=_minor_units(transaction),
            occurred_at=_unix_seconds(doc.integer("created_at")),
        )


def _minor_units(transaction: _Fields) -> Money:
    minor = transaction.integer("amount_minor")
    try:
        currency = check_currency(transaction.text("currency"))
    except InvalidRequest:
        raise _malformed("transaction.currency") from None
    if not 0 < minor <= MAX_MINOR:
        raise _malformed("transaction.amount_minor")
    return Money(minor, currency)


def _unix_seconds(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise _malformed("created_at") from None
