"""What Pitwarden asks of a payment provider, whatever its contract: the adapter interface.

An adapter speaks one provider contract over HTTP (core/payments/adapters.py holds the two we
have: Standard Webhooks and Payrail). The router (core/payments/routing.py) picks the providers
for a payment's country and currency and fails over between them; the payments service
(core/payments/service.py) records what came of each attempt and moves the payment.

Our payment id is the idempotency key at every provider: a retry of the same order, at the same
provider or after failing over, can never open a second payment there.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from core.money import Money
from core.payments.lifecycle import Event, Kind

Method = Literal["card", "bank_transfer", "crypto"]
# Why the provider gave no answer; the failover records it as the attempt's outcome.
Unavailability = Literal["timeout", "unreachable", "server_error"]


@dataclass(frozen=True, slots=True)
class Order:
    """A payment as a provider must execute it."""

    payment_id: uuid.UUID  # our id, the provider's idempotency key and merchant reference
    kind: Kind
    amount: Money
    country: str  # ISO 3166-1 alpha-2, the player's
    method: Method
    destination: str | None = None  # a withdrawal's crypto address or payout account token


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the order (or already had it: the same answer again)."""

    provider: str
    provider_ref: str  # the provider's own id of the payment
    redirect_url: str | None = None  # a deposit's hosted payment page, when there is one


@dataclass(frozen=True, slots=True)
class Known:
    """What a provider says of a payment of ours when asked by our payment id."""

    provider: str
    provider_ref: str
    status: str  # the provider's word; `event` is its meaning for our lifecycle, if any
    event: Event | None
    redirect_url: str | None = None  # an adopted deposit still needs its hosted payment page


class ProviderUnavailable(Exception):
    """A timeout, a connection failure or a 5xx: whether the provider acted is unknown."""

    def __init__(self, provider: str, what: Unavailability, status: int | None = None) -> None:
        super().__init__(f"{provider}: {what}" + (f" ({status})" if status else ""))
        self.provider = provider
        self.what = what
        self.status = status


class ProviderDeclined(Exception):
    """A 4xx: the provider refused the order and did nothing with it (a final answer)."""

    def __init__(self, provider: str, code: str, status: int) -> None:
        super().__init__(f"{provider} declined: {code} ({status})")
        self.provider = provider
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook, in our terms."""

    provider: str
    message_id: str  # the replay store's key (with the provider)
    payment_id: uuid.UUID
    provider_ref: str
    event: Event
    amount: Money
    occurred_at: datetime


class Adapter(Protocol):
    name: str  # the provider's code in routes, accounts and webhooks

    async def submit(self, order: Order) -> Accepted:
        """Send the order; raise ProviderUnavailable or ProviderDeclined."""
        ...

    async def lookup(self, payment_id: uuid.UUID) -> Known | None:
        """The provider's record of our payment, or None if it never received it.

        Raises ProviderUnavailable when it cannot answer, ProviderDeclined when it refuses to
        (our credentials): either way nothing is known, and the failover treats both alike.
        """
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        """Verify and read a webhook; raise signatures.SignatureRefused or InvalidRequest."""
        ...
