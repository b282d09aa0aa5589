"""Payments config, route selection and the failover rules, with fake adapters: no network."""

import base64
import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from core.errors import InvalidRequest, Unavailable
from core.money import Money
from core.payments.adapters import PayrailAdapter, StandardAdapter
from core.payments.providers import (
    Accepted,
    Known,
    Order,
    ProviderDeclined,
    ProviderUnavailable,
    WebhookEvent,
)
from core.payments.routing import (
    EXAMPLE_CONFIG,
    NoProviderAvailable,
    PaymentsConfigError,
    PayoutInDoubt,
    adapters_for,
    build_adapters,
    load_config,
    parse_config,
    resume_after_doubt,
    submit_with_failover,
)

WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
PAYRAIL_SECRET = "payrail-unit-test-secret-000000"


def provider(name: str, contract: str = "standard", **changes: object) -> dict[str, object]:
    secret = WHSEC if contract == "standard" else PAYRAIL_SECRET
    entry: dict[str, object] = {
        "name": name,
        "contract": contract,
        "base_url": f"https://{name}.example/",
        "api_key": f"key-{name}",
        "webhook_secrets": [secret],
        "timeout_s": 5,
    }
    return entry | changes


def route(providers: list[str], kind: str = "*", country: str = "*", currency: str = "*") -> dict:
    return {"kind": kind, "country": country, "currency": currency, "providers": providers}


PROVIDERS = [provider("swiftpay"), provider("payrail", "payrail"), provider("third")]
ROUTES = [
    route(["payrail"]),
    route(["swiftpay", "payrail"], kind="deposit"),
    route(["payrail"], kind="deposit", currency="USD"),
    route(["third"], kind="deposit", country="DE", currency="EUR"),
    route(["swiftpay"], kind="withdrawal", country="MT"),
]


def config(providers: list | None = None, routes: list | None = None, env: Mapping | None = None):
    raw = {"providers": PROVIDERS if providers is None else providers, "routes": routes or ROUTES}
    return parse_config(copy.deepcopy(raw), environ=env or {})


# The config


def test_the_example_config_loads_and_hides_its_secrets() -> None:
    loaded = load_config(EXAMPLE_CONFIG)
    assert set(loaded.providers) == {"swiftpay", "payrail"}
    assert loaded.providers["payrail"].contract == "payrail"
    assert "whsec_" not in repr(loaded.providers["swiftpay"])
    assert "not_a_secret" not in repr(loaded)


def test_a_secret_may_come_from_the_environment() -> None:
    env = {"SWIFT_KEY": "live-key", "SWIFT_HOOK": WHSEC}
    swift = provider("swiftpay", api_key="env:SWIFT_KEY", webhook_secrets=["env:SWIFT_HOOK"])
    loaded = config([swift], [route(["swiftpay"])], env)
    assert loaded.providers["swiftpay"].api_key == "live-key"
    assert loaded.providers["swiftpay"].webhook_secrets == (WHSEC,)
    with pytest.raises(PaymentsConfigError, match="SWIFT_KEY is not set"):
        config([swift], [route(["swiftpay"])], {})


@pytest.mark.parametrize(
    ("providers", "routes", "problem"),
    [
        ([provider("a"), provider("a")], [route(["a"])], "listed twice"),
        ([provider("A")], [route(["A"])], "name"),
        ([provider("_control")], [route(["_control"])], "name"),
        ([provider("a", contract="stripe")], [route(["a"])], "contract"),
        ([provider("a", base_url="ftp://a")], [route(["a"])], "base_url"),
        ([provider("a", timeout_s=0)], [route(["a"])], "timeout_s"),
        ([provider("a", timeout_s="5")], [route(["a"])], "timeout_s"),
        ([provider("a", webhook_secrets=[])], [route(["a"])], "webhook_secrets"),
        ([provider("a", webhook_secrets=["whsec_short"])], [route(["a"])], "webhook_secrets"),
        ([provider("a", "payrail", webhook_secrets=["short"])], [route(["a"])], "shorter"),
        ([provider("a", extra=1)], [route(["a"])], "exactly"),
        ([provider("a")], [route(["b"])], "unknown providers"),
        ([provider("a")], [route([])], "non-empty"),
        ([provider("a")], [route(["a", "a"])], "repeats"),
        ([provider("a")], [route(["a"], kind="refund")], "kind"),
        ([provider("a")], [route(["a"], country="deu")], "country"),
        # ISO 4217 "XXX" means "no currency": a route cannot be for it.
        ([provider("a")], [route(["a"], currency="XXX")], "currency"),
        ([provider("a")], [route(["a"]), route(["a"])], "listed twice"),
        (
            [provider("a")],
            [
                route(["a"], kind="deposit", currency="EUR"),
                route(["a"], country="DE", currency="EUR"),
            ],
            "both match 'deposit DE EUR'",
        ),
    ],
)
def test_a_bad_config_is_refused_with_the_reason(providers, routes, problem) -> None:
    with pytest.raises(PaymentsConfigError, match=problem):
        config(providers, routes)


def test_a_route_for_their_overlap_settles_two_equally_specific_routes() -> None:
    routes = [
        route(["swiftpay"], kind="deposit", currency="EUR"),
        route(["payrail"], country="DE", currency="EUR"),
        route(["third"], kind="deposit", country="DE", currency="EUR"),
    ]
    loaded = config(routes=routes)
    assert loaded.route(kind="deposit", country="DE", currency="EUR").providers == ("third",)
    assert loaded.route(kind="deposit", country="FR", currency="EUR").providers == ("swiftpay",)
    assert loaded.route(kind="withdrawal", country="DE", currency="EUR").providers == ("payrail",)


def test_an_unreadable_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "payments.json"
    path.write_text("{not json")
    with pytest.raises(PaymentsConfigError, match=str(path)):
        load_config(path)


# Route selection


@pytest.mark.parametrize(
    ("kind", "country", "currency", "expected"),
    [
        ("deposit", "DE", "EUR", ("third",)),  # names all three
        ("deposit", "DE", "USD", ("payrail",)),  # deposit * USD beats deposit * *
        ("deposit", "FR", "EUR", ("swiftpay", "payrail")),  # deposit * *
        ("withdrawal", "MT", "EUR", ("swiftpay",)),
        ("withdrawal", "FR", "EUR", ("payrail",)),  # the catch-all
    ],
)
def test_the_most_specific_route_wins(kind, country, currency, expected) -> None:
    assert config().route(kind=kind, country=country, currency=currency).providers == expected


def test_no_route_is_a_final_refusal_that_says_which_payment() -> None:
    loaded = config(routes=[route(["swiftpay"], kind="deposit", currency="EUR")])
    with pytest.raises(InvalidRequest) as refused:
        loaded.route(kind="deposit", country="DE", currency="USD")
    assert refused.value.code == "no_payment_route"
    assert refused.value.details == {"kind": "deposit", "country": "DE", "currency": "USD"}
    assert not refused.value.transient


async def test_build_adapters_speaks_each_providers_contract() -> None:
    async with httpx.AsyncClient() as client:
        adapters = build_adapters(config(), client)
    assert isinstance(adapters["swiftpay"], StandardAdapter)
    assert isinstance(adapters["payrail"], PayrailAdapter)
    assert {name: adapter.name for name, adapter in adapters.items()} == {
        "swiftpay": "swiftpay",
        "payrail": "payrail",
        "third": "third",
    }
    chosen = adapters_for(order("deposit", currency="USD"), config(), adapters)
    assert [adapter.name for adapter in chosen] == ["payrail"]


# The failover


def order(kind: str = "deposit", currency: str = "EUR") -> Order:
    return Order(
        payment_id=uuid.uuid4(),
        kind=kind,  # type: ignore[arg-type]
        amount=Money(2500, currency),
        country="DE",
        method="card",
        destination="acct-1" if kind == "withdrawal" else None,
    )


@dataclass
class Fake:
    """An adapter that answers as told and remembers what it was asked."""

    name: str
    fails_with: Exception | None = None
    lookup_answer: Known | Exception | None = None
    submitted: list[Order] = field(default_factory=list)
    looked_up: list[uuid.UUID] = field(default_factory=list)

    async def submit(self, order: Order) -> Accepted:
        self.submitted.append(order)
        if self.fails_with is not None:
            raise self.fails_with
        return Accepted(self.name, f"{self.name}-ref")

    async def lookup(self, payment_id: uuid.UUID) -> Known | None:
        self.looked_up.append(payment_id)
        if isinstance(self.lookup_answer, Exception):
            raise self.lookup_answer
        return self.lookup_answer

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        del headers, body, now
        raise AssertionError("the failover never reads a webhook")


class Recorder:
    def __init__(self, *later: Fake) -> None:
        self.calls: list[tuple[str, str, int | None]] = []
        self.later = later

    async def __call__(self, provider: str, outcome: str, status: int | None) -> None:
        # Each attempt is recorded before the next provider is asked anything.
        assert all(not fake.submitted for fake in self.later if fake.name != provider)
        self.calls.append((provider, outcome, status))


def timeout(name: str) -> ProviderUnavailable:
    return ProviderUnavailable(name, "timeout")


async def test_the_first_provider_that_accepts_takes_the_payment() -> None:
    a, b = Fake("a"), Fake("b")
    record = Recorder()
    accepted = await submit_with_failover(order(), [a, b], record=record)
    assert accepted == Accepted("a", "a-ref")
    assert record.calls == [("a", "accepted", None)]
    assert b.submitted == []
    assert a.looked_up == []


@pytest.mark.parametrize("kind", ["deposit", "withdrawal"])
async def test_a_decline_is_final_and_no_other_provider_is_tried(kind) -> None:
    a, b = Fake("a", ProviderDeclined("a", "card_declined", 402)), Fake("b")
    record = Recorder()
    with pytest.raises(ProviderDeclined) as declined:
        await submit_with_failover(order(kind), [a, b], record=record)
    assert declined.value.code == "card_declined"
    assert record.calls == [("a", "declined", 402)]
    assert b.submitted == []


@pytest.mark.parametrize("kind", ["deposit", "withdrawal"])
async def test_a_provider_that_has_the_payment_after_all_is_adopted(kind) -> None:
    known = Known("a", "a-77", "succeeded", "confirmed", redirect_url="https://a/pay/77")
    a, b = Fake("a", timeout("a"), known), Fake("b")
    record = Recorder(b)
    the_order = order(kind)
    accepted = await submit_with_failover(the_order, [a, b], record=record)
    assert accepted == Accepted("a", "a-77", "https://a/pay/77")
    assert a.looked_up == [the_order.payment_id]
    assert b.submitted == []  # nothing charged or paid twice
    assert record.calls == [("a", "adopted", None)]


@pytest.mark.parametrize("kind", ["deposit", "withdrawal"])
@pytest.mark.parametrize(
    "failure",
    [
        ProviderUnavailable("a", "timeout"),
        ProviderUnavailable("a", "unreachable"),
        ProviderUnavailable("a", "server_error", 503),
    ],
)
async def test_a_provider_that_never_saw_the_payment_is_failed_over(kind, failure) -> None:
    a, b = Fake("a", failure, None), Fake("b")
    record = Recorder(b)
    the_order = order(kind)
    accepted = await submit_with_failover(the_order, [a, b], record=record)
    assert accepted == Accepted("b", "b-ref")
    assert b.submitted == [the_order]  # the same payment id: its idempotency key there
    assert record.calls == [("a", failure.what, failure.status), ("b", "accepted", None)]


@pytest.mark.parametrize(
    "lookup_failure",
    [ProviderUnavailable("a", "timeout"), ProviderDeclined("a", "unauthorized", 401)],
)
async def test_a_deposit_in_doubt_fails_over(lookup_failure) -> None:
    a = Fake("a", ProviderUnavailable("a", "server_error", 503), lookup_failure)
    b = Fake("b")
    record = Recorder(b)
    accepted = await submit_with_failover(order("deposit"), [a, b], record=record)
    assert accepted.provider == "b"
    assert record.calls == [("a", "in_doubt", 503), ("b", "accepted", None)]


@pytest.mark.parametrize(
    "lookup_failure",
    [ProviderUnavailable("a", "timeout"), ProviderDeclined("a", "unauthorized", 401)],
)
async def test_a_payout_in_doubt_stops_and_goes_nowhere_else(lookup_failure) -> None:
    a, b = Fake("a", timeout("a"), lookup_failure), Fake("b")
    record = Recorder(b)
    with pytest.raises(PayoutInDoubt) as in_doubt:
        await submit_with_failover(order("withdrawal"), [a, b], record=record)
    assert b.submitted == []
    assert in_doubt.value.provider == "a"
    assert in_doubt.value.code == "payout_in_doubt"
    assert isinstance(in_doubt.value, Unavailable)
    assert record.calls == [("a", "in_doubt", None)]


async def test_when_every_provider_is_down_the_attempts_are_listed() -> None:
    a = Fake("a", timeout("a"), None)
    b = Fake(
        "b", ProviderUnavailable("b", "server_error", 502), ProviderUnavailable("b", "timeout")
    )
    record = Recorder()
    with pytest.raises(NoProviderAvailable) as none:
        await submit_with_failover(order("deposit"), [a, b], record=record)
    assert none.value.code == "no_payment_provider_available"
    assert none.value.transient
    assert [(x.provider, x.outcome) for x in none.value.attempts] == [
        ("a", "timeout"),
        ("b", "in_doubt"),
    ]
    assert none.value.details["attempts"] == ["a: timeout", "b: in_doubt"]
    assert record.calls == [("a", "timeout", None), ("b", "in_doubt", 502)]


async def test_no_provider_at_all_is_no_provider_available() -> None:
    with pytest.raises(NoProviderAvailable):
        await submit_with_failover(order(), [], record=Recorder())


async def test_a_payout_in_doubt_resumes_with_the_doubtful_provider_and_none_before() -> None:
    a = Fake("a", timeout("a"), None)  # never saw it: would take it if asked again
    b = Fake("b", timeout("b"), ProviderUnavailable("b", "timeout"))
    c = Fake("c")
    payout = order("withdrawal")
    with pytest.raises(PayoutInDoubt) as in_doubt:
        await submit_with_failover(payout, [a, b, c], record=Recorder())
    assert in_doubt.value.provider == "b"
    resumed = resume_after_doubt([a, b, c], in_doubt.value.provider)
    assert [adapter.name for adapter in resumed] == ["b", "c"]
    b.fails_with = None  # b answers now
    accepted = await submit_with_failover(payout, resumed, record=Recorder())
    assert accepted.provider == "b"
    assert len(a.submitted) == 1  # a was never asked again
    assert resume_after_doubt([a, c], "b") == []
