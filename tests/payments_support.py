"""Payments in tests: an in-process provider with the real Swiftpay webhook contract, and the
cashier wired to it in the app under test.

`FakeProvider` is for the API and database behaviour of payments (lifecycle, gate, ledger,
replay store) without a network; the PSP simulator (app/psp_sim.py) is for the providers'
own behaviour over HTTP (tests/integration/test_payments_chaos.py).
"""

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa

from compliance.cashier import Cashier
from core.journal import rfc3339
from core.payments import routing, signatures
from core.payments.adapters import SWIFTPAY_EVENTS, SWIFTPAY_OBJECTS, StandardAdapter
from core.payments.providers import (
    Accepted,
    Known,
    Order,
    ProviderDeclined,
    ProviderUnavailable,
    WebhookEvent,
)
from core.uow import UnitOfWorkFactory
from tests.conftest import Api

SECRET = "whsec_" + base64.b64encode(b"fake-provider-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-else-secret-0123456789").decode()
# Our (kind, event) -> Swiftpay's status word, from the adapter's own table.
SWIFTPAY_STATUS = {
    (kind, event): status
    for kind, word in SWIFTPAY_OBJECTS.items()
    for (obj, status), event in SWIFTPAY_EVENTS.items()
    if obj == word
}
_UNUSED_CLIENT = httpx.AsyncClient()  # the parser never sends anything


class FakeProvider:
    """A provider in process: takes orders (one per payment id), answers lookups, and signs
    Swiftpay webhooks; faults are queued with `fail_next` and `lookup_fails`."""

    def __init__(self, name: str, *, secrets: tuple[str, ...] = (SECRET,)) -> None:
        self.name = name
        self.orders: dict[uuid.UUID, Order] = {}
        self.fail_next: list[Exception] = []
        self.lookup_fails = False
        self.executes_before_failing = False  # a timeout after taking the order
        self._parser = StandardAdapter(
            name=name,
            base_url="http://unused.invalid",
            api_key="unused",
            webhook_secrets=secrets,
            client=_UNUSED_CLIENT,
        )

    def ref(self, payment_id: uuid.UUID) -> str:
        return f"{self.name}_{payment_id.hex[:12]}"

    async def submit(self, order: Order) -> Accepted:
        if self.fail_next:
            fault = self.fail_next.pop(0)
            if self.executes_before_failing:
                self.orders.setdefault(order.payment_id, order)
            raise fault
        self.orders.setdefault(order.payment_id, order)
        url = (
            f"https://{self.name}.example/pay/{order.payment_id}"
            if order.kind == "deposit"
            else None
        )
        return Accepted(self.name, self.ref(order.payment_id), url)

    async def lookup(self, payment_id: uuid.UUID) -> Known | None:
        if self.lookup_fails:
            raise ProviderUnavailable(self.name, "timeout")
        if payment_id not in self.orders:
            return None
        return Known(self.name, self.ref(payment_id), "pending", None)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        return self._parser.parse_webhook(headers, body, now)

    def webhook(
        self,
        payment: Mapping[str, Any],
        event: str,
        *,
        at: datetime,
        message_id: str | None = None,
        amount: str | None = None,
        secret: str = SECRET,
        ref: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A signed Swiftpay webhook saying `event` (our word) of `payment` (an API view)."""
        kind = payment["kind"]
        body = json.dumps(
            {
                "type": f"{SWIFTPAY_OBJECTS[kind]}.{SWIFTPAY_STATUS[kind, event]}",
                "timestamp": rfc3339(at),
                "data": {
                    "id": ref or self.ref(uuid.UUID(payment["payment_id"])),
                    "reference": payment["payment_id"],
                    "amount": amount or payment["amount"],
                    "currency": payment["currency"],
                },
            }
        ).encode()
        msg_id = message_id or f"msg_{uuid.uuid4().hex}"
        headers = signatures.webhook_headers([secret], msg_id, int(at.timestamp()), body)
        return headers, body


def declined(provider: str) -> ProviderDeclined:
    return ProviderDeclined(provider, "card_declined", 402)


def timeout(provider: str) -> ProviderUnavailable:
    return ProviderUnavailable(provider, "timeout")


ROUTES = {
    "providers": [
        {
            "name": name,
            "contract": "standard",
            "base_url": "http://unused.invalid",
            "api_key": "unused",
            "webhook_secrets": [SECRET],
            "timeout_s": 1,
        }
        for name in ("fastpay", "slowpay")
    ],
    "routes": [{"kind": "*", "country": "*", "currency": "*", "providers": ["fastpay", "slowpay"]}],
}


def use_fake_providers(
    api: Api, *, secrets: tuple[str, ...] = (SECRET,)
) -> tuple[FakeProvider, FakeProvider]:
    """Swap the app's cashier for one whose route is fastpay, then slowpay, both fakes."""
    first, second = FakeProvider("fastpay", secrets=secrets), FakeProvider("slowpay")
    current: Cashier = api.app.state.cashier
    api.app.state.cashier = Cashier(
        uows=current.uows,
        gate=current.gate,
        config=routing.parse_config(ROUTES, environ={}),
        adapters={first.name: first, second.name: second},
        jurisdictions=current.jurisdictions,
    )
    return first, second


async def send_webhook(
    api: Api, provider: str, signed: tuple[dict[str, str], bytes]
) -> httpx.Response:
    headers, body = signed
    return await api.http.post(
        f"/v1/webhooks/{provider}",
        content=body,
        headers=headers | {"Content-Type": "application/json"},
    )


async def journal(uows: UnitOfWorkFactory, event: str, payment_id: str) -> list[dict[str, Any]]:
    """The data of `event` journal entries about this payment, oldest first."""
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT envelope->'data' FROM journal_events WHERE event = :event"
                " AND envelope->'data'->>'payment_id' = :id ORDER BY id"
            ),
            {"event": event, "id": payment_id},
        )
        return [dict(row) for row in rows.scalars()]
