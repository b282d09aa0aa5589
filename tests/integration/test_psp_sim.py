"""The PSP simulator end to end: both adapters against it over loopback HTTP, its webhooks read by
the adapters in a small receiver standing in for Pitwarden's webhook endpoint, every fault mode,
the statement, and the failover between the two simulated providers. No database.

The simulator and the receiver run in this process under uvicorn, each on a free port; every
test starts from a reset simulator.
"""

import asyncio
import base64
import csv
import dataclasses
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.psp_sim import create_app
from core.errors import InvalidRequest
from core.money import Money
from core.payments import signatures
from core.payments.adapters import PayrailAdapter, StandardAdapter
from core.payments.providers import (
    Accepted,
    Adapter,
    Known,
    Order,
    ProviderDeclined,
    ProviderUnavailable,
    WebhookEvent,
)
from core.payments.reconcile import STATEMENT_COLUMNS
from core.payments.routing import (
    PaymentsConfig,
    PayoutInDoubt,
    build_adapters,
    parse_config,
    submit_with_failover,
)
from core.payments.signatures import SignatureRefused
from tests.serving import free_socket, serving, url_of

CLIENT_TIMEOUT_S = 0.4  # the adapters' timeout; a stalled request outlasts it by 1 s
RETRY_BASE_S = 0.1
MAX_ATTEMPTS = 4
SWIFT_SECRET = "whsec_" + base64.b64encode(b"swiftpay-integration-secret-0001").decode()
PAYRAIL_SECRET = "payrail-integration-secret-000001"
PROVIDERS = ("swiftpay", "payrail")


class Receiver:
    """Pitwarden's webhook endpoint in miniature: each webhook read by its provider's adapter."""

    def __init__(self) -> None:
        self.adapters: dict[str, Adapter] = {}
        self.reset()

    def reset(self) -> None:
        self.events: list[WebhookEvent] = []
        self.arrived: list[float] = []
        self.refused: list[str] = []
        self.fail_next = 0
        self.arrival = asyncio.Event()

    async def received(self, count: int) -> None:
        """Wait (3 s at most) until `count` webhooks have been accepted."""
        async with asyncio.timeout(3):
            while len(self.events) < count:
                self.arrival.clear()
                await self.arrival.wait()

    async def webhook(self, request: Request) -> Response:
        if self.fail_next:
            self.fail_next -= 1
            return Response(status_code=500)
        adapter = self.adapters[request.path_params["provider"]]
        try:
            event = adapter.parse_webhook(request.headers, await request.body(), datetime.now(UTC))
        except SignatureRefused as refused:
            self.refused.append(refused.reason)
            return Response(status_code=401)
        except InvalidRequest as invalid:
            self.refused.append(invalid.code)
            return Response(status_code=422)
        self.events.append(event)
        self.arrived.append(time.monotonic())
        self.arrival.set()
        return Response(status_code=204)


@dataclass
class World:
    control: httpx.AsyncClient
    config: PaymentsConfig
    adapters: dict[str, Adapter]
    receiver: Receiver
    attempts: list[tuple[str, str, int | None]] = field(default_factory=list)

    async def record(self, provider: str, outcome: str, status: int | None) -> None:
        self.attempts.append((provider, outcome, status))

    async def call(self, method: str, path: str, body: object = None) -> httpx.Response:
        response = await self.control.request(method, path, json=body)
        assert response.is_success, response.text
        return response

    async def fault(self, provider: str, **spec: object) -> None:
        await self.call("POST", f"/_control/{provider}/faults", spec)

    async def deliver(self) -> list[dict]:
        """Flush the simulator's queue; every delivery so far (its worker may have sent some)."""
        await self.call("POST", "/_control/deliver")
        return await self.deliveries()

    async def deliveries(self) -> list[dict]:
        return (await self.call("GET", "/_control/deliveries")).json()["deliveries"]

    async def held(self, provider: str) -> list[dict]:
        return (await self.call("GET", f"/_control/{provider}/payments")).json()["payments"]

    async def manual(self, provider: str) -> None:
        await self.call("POST", f"/_control/{provider}/settlement", {"mode": "manual"})

    def events(self) -> list[tuple[str, str]]:
        return [(event.provider, event.event) for event in self.receiver.events]


def payments_config(sim_url: str) -> PaymentsConfig:
    raw = {
        "providers": [
            {
                "name": "swiftpay",
                "contract": "standard",
                "base_url": f"{sim_url}/swiftpay",
                "api_key": "sk_swift_test",
                "webhook_secrets": [SWIFT_SECRET],
                "timeout_s": CLIENT_TIMEOUT_S,
            },
            {
                "name": "payrail",
                "contract": "payrail",
                "base_url": f"{sim_url}/payrail",
                "api_key": "pk_payrail_test",
                "webhook_secrets": [PAYRAIL_SECRET],
                "timeout_s": CLIENT_TIMEOUT_S,
            },
        ],
        "routes": [{"providers": ["swiftpay", "payrail"]}],
    }
    return parse_config(raw, environ={})


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    sim_sock, receiver_sock = free_socket(), free_socket()
    config = payments_config(url_of(sim_sock))
    receiver = Receiver()
    receiver_app = Starlette(
        routes=[Route("/v1/webhooks/{provider}", receiver.webhook, methods=["POST"])]
    )
    sim_app = create_app(
        config,
        callback_base=url_of(receiver_sock),
        retry_base_s=RETRY_BASE_S,
        max_attempts=MAX_ATTEMPTS,
    )
    async with (
        serving(receiver_app, receiver_sock),
        serving(sim_app, sim_sock),
        httpx.AsyncClient() as client,
        httpx.AsyncClient(base_url=url_of(sim_sock)) as control,
    ):
        receiver.adapters = build_adapters(config, client)
        yield World(control, config, receiver.adapters, receiver)


@pytest.fixture(autouse=True)
async def fresh(world: World) -> None:
    await world.call("POST", "/_control/reset")
    world.receiver.reset()
    world.attempts.clear()


def order(kind: str = "deposit", amount: Money | None = None) -> Order:
    return Order(
        payment_id=uuid.uuid4(),
        kind=kind,  # type: ignore[arg-type]
        amount=amount or Money(2500, "EUR"),
        country="DE",
        method="card",
        destination="bc1q-payout-address" if kind == "withdrawal" else None,
    )


# Submit and lookup


@pytest.mark.parametrize("name", PROVIDERS)
async def test_the_same_order_twice_is_one_payment(world: World, name: str) -> None:
    await world.manual(name)
    adapter = world.adapters[name]
    deposit = order()
    first = await adapter.submit(deposit)
    again = await adapter.submit(deposit)
    assert again == first
    assert first.redirect_url is not None
    assert first.redirect_url.startswith("http")
    held = await world.held(name)
    assert [(p["payment_id"], p["provider_ref"]) for p in held] == [
        (str(deposit.payment_id), first.provider_ref)
    ]
    known = await adapter.lookup(deposit.payment_id)
    assert known is not None
    assert (known.provider_ref, known.event) == (first.provider_ref, "pending")


@pytest.mark.parametrize(
    ("name", "code"), [("swiftpay", "idempotency_key_reused"), ("payrail", "DUPLICATE_REFERENCE")]
)
async def test_the_same_payment_id_with_another_amount_is_declined(
    world: World, name: str, code: str
) -> None:
    adapter = world.adapters[name]
    deposit = order()
    await adapter.submit(deposit)
    changed = dataclasses.replace(deposit, amount=Money(1, "EUR"))
    with pytest.raises(ProviderDeclined) as declined:
        await adapter.submit(changed)
    assert declined.value.code == code
    assert [p["amount"] for p in await world.held(name)] == ["25.00"]


@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        ("swiftpay", [("pending", "pending"), ("succeeded", "confirmed")]),
        ("payrail", [("AUTHORISED", "pending"), ("SETTLED", "confirmed")]),
    ],
)
async def test_a_lookup_tells_the_state_in_the_providers_words_and_ours(
    world: World, name: str, statuses: list[tuple[str, str]]
) -> None:
    await world.manual(name)
    adapter = world.adapters[name]
    assert await adapter.lookup(uuid.uuid4()) is None
    deposit = order()
    accepted = await adapter.submit(deposit)
    seen = [await adapter.lookup(deposit.payment_id)]
    await world.call(
        "POST", f"/_control/{name}/payments/{deposit.payment_id}/settle", {"outcome": "confirmed"}
    )
    seen.append(await adapter.lookup(deposit.payment_id))
    assert seen == [
        Known(name, accepted.provider_ref, word, event, accepted.redirect_url)
        for word, event in statuses
    ]


@pytest.mark.parametrize(
    ("name", "code"), [("swiftpay", "unauthorized"), ("payrail", "AUTH_FAILED")]
)
async def test_a_wrong_api_key_is_declined(world: World, name: str, code: str) -> None:
    provider = world.config.providers[name]
    cls = StandardAdapter if name == "swiftpay" else PayrailAdapter
    async with httpx.AsyncClient() as client:
        wrong = cls(
            name=name,
            base_url=provider.base_url,
            api_key="wrong",
            webhook_secrets=provider.webhook_secrets,
            client=client,
        )
        with pytest.raises(ProviderDeclined) as declined:
            await wrong.submit(order())
    assert (declined.value.code, declined.value.status) == (code, 401)
    assert await world.held(name) == []


# Request faults


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_outage_answers_nothing_done_and_passes(world: World, name: str) -> None:
    await world.fault(name, on="submit", mode="status", status=503)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await world.adapters[name].submit(order())
    assert (unavailable.value.what, unavailable.value.status) == ("server_error", 503)
    assert await world.held(name) == []
    await world.adapters[name].submit(order())  # count 1: the next one goes through
    assert len(await world.held(name)) == 1


@pytest.mark.parametrize(
    ("name", "code"), [("swiftpay", "card_declined"), ("payrail", "CARD_DECLINED")]
)
async def test_a_decline_carries_the_providers_code(world: World, name: str, code: str) -> None:
    await world.fault(name, on="submit", mode="status", status=402, code="card_declined")
    with pytest.raises(ProviderDeclined) as declined:
        await world.adapters[name].submit(order())
    assert (declined.value.code, declined.value.status) == (code, 402)


async def test_rate_limiting_is_unavailability_not_a_decline(world: World) -> None:
    await world.fault("payrail", on="submit", mode="status", status=429)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await world.adapters["payrail"].submit(order())
    assert unavailable.value.status == 429


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_dropped_request_times_out_and_was_never_done(world: World, name: str) -> None:
    await world.fault(name, on="submit", mode="drop")
    deposit = order()
    with pytest.raises(ProviderUnavailable) as unavailable:
        await world.adapters[name].submit(deposit)
    assert unavailable.value.what == "timeout"  # not the 504 the stall ends with
    assert await world.adapters[name].lookup(deposit.payment_id) is None


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_lost_answer_times_out_but_the_payment_was_made(world: World, name: str) -> None:
    await world.fault(name, on="submit", mode="lost_answer")
    deposit = order()
    with pytest.raises(ProviderUnavailable) as unavailable:
        await world.adapters[name].submit(deposit)
    assert unavailable.value.what == "timeout"
    known = await world.adapters[name].lookup(deposit.payment_id)
    assert known is not None
    assert [p["provider_ref"] for p in await world.held(name)] == [known.provider_ref]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_failing_lookups(world: World, name: str) -> None:
    await world.fault(name, on="lookup", mode="status", status=500)
    await world.fault(name, on="lookup", mode="drop")
    with pytest.raises(ProviderUnavailable) as first:
        await world.adapters[name].lookup(uuid.uuid4())
    with pytest.raises(ProviderUnavailable) as second:
        await world.adapters[name].lookup(uuid.uuid4())
    assert (first.value.what, second.value.what) == ("server_error", "timeout")
    assert await world.adapters[name].lookup(uuid.uuid4()) is None


async def test_a_provider_nobody_listens_for_is_unreachable() -> None:
    sock = free_socket()
    url = url_of(sock)
    sock.close()
    async with httpx.AsyncClient() as client:
        adapter = StandardAdapter(
            name="gone", base_url=url, api_key="k", webhook_secrets=[SWIFT_SECRET], client=client
        )
        with pytest.raises(ProviderUnavailable) as unavailable:
            await adapter.submit(order())
    assert unavailable.value.what == "unreachable"


async def test_a_404_that_is_not_the_providers_own_is_no_never_seen(world: World) -> None:
    provider = world.config.providers["swiftpay"]
    async with httpx.AsyncClient() as client:
        misrouted = StandardAdapter(
            name="swiftpay",
            base_url=provider.base_url + "/wrong-prefix",
            api_key=provider.api_key,
            webhook_secrets=provider.webhook_secrets,
            client=client,
        )
        with pytest.raises(ProviderUnavailable):
            await misrouted.lookup(uuid.uuid4())


# Webhooks


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize(
    ("kind", "events"),
    [("deposit", ["pending", "confirmed"]), ("withdrawal", ["sent", "confirmed"])],
)
async def test_each_state_change_is_a_verified_webhook(
    world: World, name: str, kind: str, events: list[str]
) -> None:
    payment = order(kind, Money(70000, "JPY") if kind == "deposit" else Money(1250, "BHD"))
    accepted = await world.adapters[name].submit(payment)
    deliveries = await world.deliver()
    assert [d["status"] for d in deliveries] == [204, 204]
    received = world.receiver.events
    assert [event.event for event in received] == events
    assert {(e.payment_id, e.provider_ref, e.amount, e.provider) for e in received} == {
        (payment.payment_id, accepted.provider_ref, payment.amount, name)
    }
    assert len({event.message_id for event in received}) == 2
    assert all(abs((datetime.now(UTC) - e.occurred_at).total_seconds()) < 5 for e in received)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_settling_by_hand(world: World, name: str) -> None:
    await world.manual(name)
    deposit, payout = order(), order("withdrawal")
    await world.adapters[name].submit(deposit)
    await world.adapters[name].submit(payout)
    base = f"/_control/{name}/payments"
    await world.call("POST", f"{base}/{deposit.payment_id}/settle", {"outcome": "expired"})
    await world.call("POST", f"{base}/{payout.payment_id}/settle", {"outcome": "failed"})
    await world.deliver()
    assert world.events() == [
        (name, "pending"),
        (name, "sent"),
        (name, "expired"),
        (name, "failed"),
    ]
    again = await world.control.post(
        f"{base}/{deposit.payment_id}/settle", json={"outcome": "confirmed"}
    )
    assert again.status_code == 409
    assert [p["status"] for p in await world.held(name)] == ["expired", "failed"]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_duplicated_webhooks_share_one_id(world: World, name: str) -> None:
    await world.fault(name, on="webhook", mode="duplicate", times=3)
    await world.adapters[name].submit(order())
    await world.deliver()
    assert world.events() == [(name, "pending")] * 3 + [(name, "confirmed")]
    assert len({event.message_id for event in world.receiver.events[:3]}) == 1


@pytest.mark.parametrize("name", PROVIDERS)
async def test_reordered_webhooks_arrive_in_reverse(world: World, name: str) -> None:
    await world.fault(name, on="webhook", mode="reorder", count=2)
    await world.adapters[name].submit(order())
    await world.receiver.received(2)  # released as soon as both are held
    assert world.events() == [(name, "confirmed"), (name, "pending")]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_forged_webhook_is_refused_and_the_genuine_one_accepted(
    world: World, name: str
) -> None:
    await world.fault(name, on="webhook", mode="forge")
    await world.adapters[name].submit(order())
    deliveries = await world.deliver()
    assert [(d["event"], d["forged"], d["status"]) for d in deliveries] == [
        ("pending", True, 401),
        ("pending", False, 204),
        ("confirmed", False, 204),
    ]
    assert world.receiver.refused == ["no_valid_signature"]
    assert world.events() == [(name, "pending"), (name, "confirmed")]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_dropped_webhook_never_comes_but_the_lookup_knows(world: World, name: str) -> None:
    await world.fault(name, on="webhook", mode="drop")
    deposit = order()
    await world.adapters[name].submit(deposit)
    await world.deliver()
    assert world.events() == [(name, "confirmed")]
    deliveries = await world.deliveries()
    assert [(d["event"], d["error"]) for d in deliveries] == [
        ("pending", "dropped"),
        ("confirmed", None),
    ]
    known = await world.adapters[name].lookup(deposit.payment_id)
    assert known is not None
    assert known.event == "confirmed"


async def test_a_delayed_webhook_comes_later_by_itself(world: World) -> None:
    await world.fault("swiftpay", on="webhook", mode="delay", delay_s=0.6)
    started = time.monotonic()
    await world.adapters["swiftpay"].submit(order())
    await world.receiver.received(2)
    assert world.events() == [("swiftpay", "confirmed"), ("swiftpay", "pending")]
    assert world.receiver.arrived[1] - started >= 0.6


async def test_a_refused_delivery_is_retried_with_growing_backoff(world: World) -> None:
    world.receiver.fail_next = 2
    await world.manual("payrail")
    await world.adapters["payrail"].submit(order())
    await world.receiver.received(1)
    deliveries = await world.deliveries()
    assert [(d["attempt"], d["status"], d["final"]) for d in deliveries] == [
        (1, 500, False),
        (2, 500, False),
        (3, 204, True),
    ]
    assert len({d["message_id"] for d in deliveries}) == 1
    at = [datetime.fromisoformat(d["at"]) for d in deliveries]
    assert (at[1] - at[0]).total_seconds() >= RETRY_BASE_S
    assert (at[2] - at[1]).total_seconds() >= 2 * RETRY_BASE_S


async def test_retries_are_bounded(world: World) -> None:
    world.receiver.fail_next = 100
    await world.manual("swiftpay")
    await world.adapters["swiftpay"].submit(order())
    deliveries = await world.deliver()
    assert [(d["attempt"], d["final"]) for d in deliveries] == [
        (n, n == MAX_ATTEMPTS) for n in range(1, MAX_ATTEMPTS + 1)
    ]
    assert len(await world.deliver()) == MAX_ATTEMPTS  # nothing left to retry


# What the adapters make of a webhook


def swift_delivery(body: bytes, secret: str = SWIFT_SECRET) -> dict[str, str]:
    return signatures.webhook_headers([secret], "msg_test1", int(time.time()), body)


def payrail_delivery(body: bytes, secret: str = PAYRAIL_SECRET) -> dict[str, str]:
    return {signatures.PAYRAIL_SIGNATURE: signatures.sign_payrail([secret], int(time.time()), body)}


@pytest.mark.parametrize(
    ("name", "deliver"), [("swiftpay", swift_delivery), ("payrail", payrail_delivery)]
)
async def test_the_signature_is_checked_before_the_body_is_read(
    world: World, name, deliver
) -> None:
    adapter = world.adapters[name]
    now = datetime.now(UTC)
    garbage = b"\xff not json"
    other = "whsec_" + base64.b64encode(b"x" * 32).decode() if name == "swiftpay" else "y" * 32
    with pytest.raises(SignatureRefused):
        adapter.parse_webhook(deliver(garbage, other), garbage, now)
    with pytest.raises(InvalidRequest) as malformed:
        adapter.parse_webhook(deliver(garbage), garbage, now)
    assert malformed.value.code == "malformed_webhook"


async def test_a_tampered_body_is_refused(world: World) -> None:
    body = json.dumps(
        {
            "event_id": "evt_1",
            "event_type": "TRANSACTION_STATE_CHANGED",
            "created_at": int(time.time()),
            "transaction": {
                "transaction_id": "PR1",
                "merchant_reference": str(uuid.uuid4()),
                "type": "PAYIN",
                "state": "SETTLED",
                "amount_minor": 2500,
                "currency": "EUR",
            },
        }
    ).encode()
    headers = payrail_delivery(body)
    event = world.adapters["payrail"].parse_webhook(headers, body, datetime.now(UTC))
    assert (event.message_id, event.event, event.amount) == (
        "evt_1",
        "confirmed",
        Money(2500, "EUR"),
    )
    tampered = body.replace(b"2500", b"9500")
    with pytest.raises(SignatureRefused):
        world.adapters["payrail"].parse_webhook(headers, tampered, datetime.now(UTC))


async def test_an_event_we_do_not_map_is_unsupported_not_malformed(world: World) -> None:
    body = json.dumps(
        {"type": "payment.refunded", "timestamp": "2026-11-26T12:00:00Z", "data": {}}
    ).encode()
    with pytest.raises(InvalidRequest) as unsupported:
        world.adapters["swiftpay"].parse_webhook(swift_delivery(body), body, datetime.now(UTC))
    assert unsupported.value.code == "unsupported_webhook_event"


# The statement


@pytest.mark.parametrize("name", PROVIDERS)
async def test_the_statement_lists_every_payment_in_decimal_strings(
    world: World, name: str
) -> None:
    adapter = world.adapters[name]
    confirmed = order(amount=Money(2500, "EUR"))
    await adapter.submit(confirmed)
    await world.manual(name)
    failed, payout = order(amount=Money(700, "JPY")), order("withdrawal", Money(1005, "BHD"))
    await adapter.submit(failed)
    await adapter.submit(payout)
    await world.call(
        "POST", f"/_control/{name}/payments/{failed.payment_id}/settle", {"outcome": "failed"}
    )
    response = await world.call("GET", f"/_control/{name}/statement.csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == STATEMENT_COLUMNS
    refs = {p["payment_id"]: p["provider_ref"] for p in await world.held(name)}
    ids = [str(payment.payment_id) for payment in (confirmed, failed, payout)]
    assert [r["payment_id"] for r in rows] == ids
    assert [r["provider_ref"] for r in rows] == [refs[payment_id] for payment_id in ids]
    assert [(r["kind"], r["amount"], r["currency"], r["status"]) for r in rows] == [
        ("deposit", "25.00", "EUR", "confirmed"),
        ("deposit", "700", "JPY", "failed"),
        ("withdrawal", "1.005", "BHD", "sent"),
    ]
    assert [bool(r["settled_at"]) for r in rows] == [True, True, False]
    assert datetime.fromisoformat(rows[0]["settled_at"]).tzinfo is not None


# Failover across the two simulated providers


async def failover(world: World, payment: Order) -> Accepted:
    adapters = [world.adapters["swiftpay"], world.adapters["payrail"]]
    return await submit_with_failover(payment, adapters, record=world.record)


async def test_a_lost_answer_is_adopted_not_sent_again(world: World) -> None:
    await world.fault("swiftpay", on="submit", mode="lost_answer")
    deposit = order()
    accepted = await failover(world, deposit)
    swift = await world.held("swiftpay")
    assert accepted.provider == "swiftpay"
    assert [p["provider_ref"] for p in swift] == [accepted.provider_ref]
    assert await world.held("payrail") == []
    assert world.attempts == [("swiftpay", "adopted", None)]


async def test_a_dropped_request_fails_over_with_the_same_payment_id(world: World) -> None:
    await world.fault("swiftpay", on="submit", mode="drop")
    payout = order("withdrawal")
    accepted = await failover(world, payout)
    assert accepted.provider == "payrail"
    assert await world.held("swiftpay") == []
    assert [p["payment_id"] for p in await world.held("payrail")] == [str(payout.payment_id)]
    assert world.attempts == [("swiftpay", "timeout", None), ("payrail", "accepted", None)]
    await world.deliver()
    assert world.events() == [("payrail", "sent"), ("payrail", "confirmed")]


async def test_a_payout_nobody_can_vouch_for_stays_in_doubt(world: World) -> None:
    await world.fault("swiftpay", on="submit", mode="lost_answer")
    await world.fault("swiftpay", on="lookup", mode="status", status=503)
    with pytest.raises(PayoutInDoubt) as in_doubt:
        await failover(world, order("withdrawal"))
    assert in_doubt.value.provider == "swiftpay"
    assert await world.held("payrail") == []  # not paid out a second time
    assert len(await world.held("swiftpay")) == 1  # which is why: swiftpay did take it
    assert world.attempts == [("swiftpay", "in_doubt", None)]


async def test_a_deposit_in_doubt_goes_on_to_the_next_provider(world: World) -> None:
    await world.fault("swiftpay", on="submit", mode="status", status=503)
    await world.fault("swiftpay", on="lookup", mode="status", status=503)
    deposit = order()
    accepted = await failover(world, deposit)
    assert accepted.provider == "payrail"
    assert world.attempts == [("swiftpay", "in_doubt", 503), ("payrail", "accepted", None)]


async def test_a_decline_is_not_retried_elsewhere(world: World) -> None:
    await world.fault("swiftpay", on="submit", mode="status", status=402, code="card_declined")
    with pytest.raises(ProviderDeclined):
        await failover(world, order())
    assert await world.held("payrail") == []
    assert world.attempts == [("swiftpay", "declined", 402)]
