"""Which providers take a payment, in which order, and how we fail over between them.

The payments config is a JSON file the operator maintains (example:
`core/payments/data/payments.example.json`):

    {"providers": [{"name": "swiftpay", "contract": "standard",
                    "base_url": "https://api.swiftpay.example", "api_key": "env:SWIFTPAY_KEY",
                    "webhook_secrets": ["whsec_..."], "timeout_s": 10}, ...],
     "routes": [{"kind": "deposit", "country": "*", "currency": "EUR",
                 "providers": ["swiftpay", "payrail"]}, ...]}

A secret written `env:NAME` is read from the environment, so the file itself need hold none.
The file is checked whole when loaded, secrets included: a typo stops the server at start
rather than the first payment or webhook.

Routes. A route names a kind (deposit, withdrawal), a country (ISO 3166-1 alpha-2) and a
currency, each or all of them "*" (the default), and the providers to try in order. The most
specific matching route wins: the one naming the most of the three. Two routes that name as
many and could both match one payment (`deposit * EUR` and `* DE EUR`) are ambiguous where they
overlap, and the file is refused when it is loaded, unless a route for exactly that overlap
(`deposit DE EUR`) decides it; then every payment has one best route. A payment no
route matches is `InvalidRequest("no_payment_route")` (422): a fact about this country and
currency that no retry will change, so it is final, not a 503.

Failover (`submit_with_failover`). The same payment id goes to every provider, as the
idempotency key and merchant reference, so no provider can ever hold two payments for it:

- accepted: done.
- declined (4xx): final, no other provider is tried. A decline is about this order: the
  player's card, the provider's screening of a payout account. Sending a declined card to the
  next acquirer is card cycling, which the card schemes penalise, and routing a payout around a
  provider's screening defeats it. The player can try again with another method.
- unavailable (timeout, unreachable, 5xx): whether the provider acted is unknown, so it is
  asked by `lookup` first:
  - it has the payment: adopt it (`adopted`), try no other, so nothing is charged twice;
  - it never saw it: record the failure and go on to the next provider;
  - the lookup fails too (`in_doubt`): a deposit goes on to the next provider, since a double
    deposit is found by reconciliation and refunded; a withdrawal stops with `PayoutInDoubt`,
    since paying out twice is worse than paying out late.
  A connection refused now is treated the same, not as "surely never sent": an earlier run for
  the same payment may have reached that provider.
- every provider unavailable: `NoProviderAvailable`, with the attempts.

`record(provider, outcome, status)` is awaited once per provider tried, before the next one is,
so the caller can store each attempt as it happens; `status` is the HTTP status the provider
answered, when it answered one (a decline, a 5xx), else None.

What the caller must keep: a payment with an accepted or adopted attempt is that provider's
for good, and is never failed over again. A withdrawal stopped in doubt resumes with the
provider it stopped at first (`PayoutInDoubt.provider`; `resume_after_doubt`), never with one
before it: those said they had never seen the payout, and would take it now. The rule assumes a
provider records a payment before it answers: one whose lookup cannot see a request still in
flight could make a withdrawal fail over while that request is paid; reconciliation against
its statement catches it.
"""

import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

import httpx

from core.errors import InvalidRequest, Unavailable
from core.money import check_currency
from core.payments import signatures
from core.payments.adapters import PayrailAdapter, StandardAdapter
from core.payments.lifecycle import Kind
from core.payments.providers import (
    Accepted,
    Adapter,
    Order,
    ProviderDeclined,
    ProviderUnavailable,
)

EXAMPLE_CONFIG: Final = Path(__file__).parent / "data" / "payments.example.json"

Contract = Literal["standard", "payrail"]
ANY: Final = "*"
AttemptOutcome = Literal[
    "accepted", "declined", "adopted", "timeout", "unreachable", "server_error", "in_doubt"
]
Record = Callable[[str, AttemptOutcome, int | None], Awaitable[None]]

# A provider's name is in URLs (/v1/webhooks/{name}) and account codes (house:...:{name}:EUR).
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}\Z")
_COUNTRY = re.compile(r"[A-Z]{2}\Z")
_MAX_TIMEOUT_S: Final = 120
_ENV_PREFIX: Final = "env:"
_PROVIDER_KEYS: Final = {"name", "contract", "base_url", "api_key", "webhook_secrets", "timeout_s"}
_ROUTE_KEYS: Final = {"kind", "country", "currency", "providers"}


class PaymentsConfigError(ValueError):
    """The payments config file cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    contract: Contract
    base_url: str
    api_key: str = field(repr=False)
    webhook_secrets: tuple[str, ...] = field(repr=False)  # several while a rotation overlaps
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind | Literal["*"]
    country: str
    currency: str
    providers: tuple[str, ...]

    @property
    def specificity(self) -> int:
        return sum(value != ANY for value in (self.kind, self.country, self.currency))

    def matches(self, kind: Kind, country: str, currency: str) -> bool:
        wanted = (kind, country, currency)
        return all(mine in (ANY, value) for mine, value in zip(self.fields(), wanted, strict=True))

    def overlap(self, other: "Route") -> tuple[str, str, str] | None:
        """The (kind, country, currency) of the payments both match, or None if none do."""
        both: list[str] = []
        for mine, theirs in zip(self.fields(), other.fields(), strict=True):
            if ANY not in (mine, theirs) and mine != theirs:
                return None
            both.append(theirs if mine == ANY else mine)
        return both[0], both[1], both[2]

    def fields(self) -> tuple[str, str, str]:
        return (self.kind, self.country, self.currency)

    def __str__(self) -> str:
        return f"{self.kind} {self.country} {self.currency}"


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    providers: Mapping[str, ProviderConfig]
    routes: tuple[Route, ...]

    def route(self, *, kind: Kind, country: str, currency: str) -> Route:
        """The most specific route for a payment, or InvalidRequest("no_payment_route")."""
        matching = [route for route in self.routes if route.matches(kind, country, currency)]
        if not matching:
            raise InvalidRequest(
                "no_payment_route",
                f"no payment provider takes a {kind} from {country} in {currency}",
                kind=kind,
                country=country,
                currency=currency,
            )
        # Unique: loading checked that no two routes tie as the most specific for a payment.
        return max(matching, key=lambda route: route.specificity)


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> PaymentsConfig:
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise PaymentsConfigError(f"{path}: {error}") from None
    try:
        return parse_config(raw, environ=os.environ if environ is None else environ)
    except PaymentsConfigError as error:
        raise PaymentsConfigError(f"{path}: {error}") from None


def parse_config(raw: object, *, environ: Mapping[str, str]) -> PaymentsConfig:
    if not isinstance(raw, dict) or not {"providers", "routes"} <= set(raw) <= {
        "providers",
        "routes",
        "_about",
    }:
        raise PaymentsConfigError('an object with "providers" and "routes" is required')
    providers_raw, routes_raw = raw["providers"], raw["routes"]
    if not isinstance(providers_raw, list) or not isinstance(routes_raw, list):
        raise PaymentsConfigError('"providers" and "routes" must be lists')
    providers: dict[str, ProviderConfig] = {}
    for index, entry in enumerate(providers_raw):
        provider = _provider(entry, f"providers[{index}]", environ)
        if provider.name in providers:
            raise PaymentsConfigError(f"providers[{index}]: {provider.name!r} is listed twice")
        providers[provider.name] = provider
    routes = tuple(
        _route(entry, f"routes[{index}]", providers) for index, entry in enumerate(routes_raw)
    )
    _check_unambiguous(routes)
    return PaymentsConfig(providers, routes)


def _check_unambiguous(routes: Sequence[Route]) -> None:
    """Every payment has one most specific route (the reasoning is in the module docstring).

    If two routes both match a payment as the most specific ones, they are equally specific
    and overlap; a route for exactly their overlap is more specific and matches it, so the
    two were not the most specific after all.
    """
    listed = {route.fields() for route in routes}
    for index, route in enumerate(routes):
        for other in routes[:index]:
            if route.fields() == other.fields():
                raise PaymentsConfigError(f"the route '{route}' is listed twice")
            overlap = route.overlap(other)
            if route.specificity == other.specificity and overlap and overlap not in listed:
                raise PaymentsConfigError(
                    f"routes '{other}' and '{route}' are equally specific and both match"
                    f" '{' '.join(overlap)}': add a route for it to decide"
                )


def _provider(raw: object, where: str, environ: Mapping[str, str]) -> ProviderConfig:
    if not isinstance(raw, dict) or set(raw) != _PROVIDER_KEYS:
        raise PaymentsConfigError(f"{where}: an object with exactly {sorted(_PROVIDER_KEYS)}")
    name, contract, base_url = raw["name"], raw["contract"], raw["base_url"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise PaymentsConfigError(f"{where}: name must be 1-40 of a-z 0-9 _ - (not first: _ -)")
    if contract not in get_args(Contract):
        raise PaymentsConfigError(f"{where}: contract must be one of {get_args(Contract)}")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise PaymentsConfigError(f"{where}: base_url must be an http(s) URL")
    timeout = raw["timeout_s"]
    if type(timeout) not in (int, float) or not 0 < timeout <= _MAX_TIMEOUT_S:
        raise PaymentsConfigError(f"{where}: timeout_s must be a number in (0, {_MAX_TIMEOUT_S}]")
    secrets_raw = raw["webhook_secrets"]
    if not isinstance(secrets_raw, list) or not secrets_raw:
        raise PaymentsConfigError(f"{where}: webhook_secrets must be a non-empty list")
    api_key = _secret(raw["api_key"], f"{where}.api_key", environ)
    secrets = tuple(
        _secret(value, f"{where}.webhook_secrets[{index}]", environ)
        for index, value in enumerate(secrets_raw)
    )
    try:  # signing once with each secret checks it the way verification will use it
        if contract == "standard":
            for secret in secrets:
                signatures.sign(secret, "msg_check", 0, b"")
        else:
            signatures.sign_payrail(secrets, 0, b"")
    except signatures.SignatureRefused as refused:
        raise PaymentsConfigError(f"{where}.webhook_secrets: {refused.message}") from None
    return ProviderConfig(name, contract, base_url.rstrip("/"), api_key, secrets, float(timeout))


def _secret(value: object, where: str, environ: Mapping[str, str]) -> str:
    if not isinstance(value, str) or not value:
        raise PaymentsConfigError(f"{where}: a non-empty string is required")
    if not value.startswith(_ENV_PREFIX):
        return value
    variable = value.removeprefix(_ENV_PREFIX)
    found = environ.get(variable)
    if not found:
        raise PaymentsConfigError(f"{where}: the environment variable {variable} is not set")
    return found


def _route(raw: object, where: str, providers: Mapping[str, ProviderConfig]) -> Route:
    if not isinstance(raw, dict) or "providers" not in raw or not set(raw) <= _ROUTE_KEYS:
        raise PaymentsConfigError(f"{where}: an object with providers, among {sorted(_ROUTE_KEYS)}")
    kind = raw.get("kind", ANY)
    country = raw.get("country", ANY)
    currency = raw.get("currency", ANY)
    names = raw["providers"]
    if kind not in (ANY, *get_args(Kind)):
        raise PaymentsConfigError(f"{where}: kind must be deposit, withdrawal or *")
    if country != ANY and not (isinstance(country, str) and _COUNTRY.match(country)):
        raise PaymentsConfigError(f"{where}: country must be an ISO 3166-1 alpha-2 code or *")
    if currency != ANY:
        try:
            check_currency(currency if isinstance(currency, str) else "")
        except InvalidRequest:
            raise PaymentsConfigError(f"{where}: currency must be an ISO 4217 code or *") from None
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise PaymentsConfigError(f"{where}: providers must be a non-empty list without repeats")
    unknown = [name for name in names if name not in providers]
    if unknown:
        raise PaymentsConfigError(f"{where}: unknown providers {unknown}")
    return Route(kind, country, currency, tuple(names))


def build_adapters(config: PaymentsConfig, client: httpx.AsyncClient) -> dict[str, Adapter]:
    """One adapter per configured provider, all sharing the caller's client (and its pool)."""
    adapters: dict[str, Adapter] = {}
    for provider in config.providers.values():
        cls = StandardAdapter if provider.contract == "standard" else PayrailAdapter
        adapters[provider.name] = cls(
            name=provider.name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            webhook_secrets=provider.webhook_secrets,
            client=client,
            timeout_s=provider.timeout_s,
        )
    return adapters


def adapters_for(
    order: Order, config: PaymentsConfig, adapters: Mapping[str, Adapter]
) -> list[Adapter]:
    """The adapters of the order's route, in the route's order."""
    route = config.route(kind=order.kind, country=order.country, currency=order.amount.currency)
    return [adapters[name] for name in route.providers]


@dataclass(frozen=True, slots=True)
class Attempt:
    provider: str
    outcome: AttemptOutcome
    status: int | None


class NoProviderAvailable(Unavailable):
    """Every provider of the route was unavailable, and none has the payment (503, transient).

    A deposit may still be in doubt at one of them (`attempts` says `in_doubt`): reconciliation
    must look for it there.
    """

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        super().__init__(
            "no_payment_provider_available",
            "no payment provider could take the payment; try again later",
            attempts=[f"{attempt.provider}: {attempt.outcome}" for attempt in attempts],
        )
        self.attempts = tuple(attempts)


class PayoutInDoubt(Unavailable):
    """A payout that `provider` may or may not have taken: it neither answered nor could be
    asked. No other provider may be tried; ask `provider` again (lookup) until it answers."""

    def __init__(self, provider: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(
            "payout_in_doubt",
            f"{provider} did not answer and cannot say whether it took the payout; it is not"
            " sent anywhere else until it does",
            provider=provider,
            attempts=[f"{attempt.provider}: {attempt.outcome}" for attempt in attempts],
        )
        self.provider = provider
        self.attempts = tuple(attempts)


def resume_after_doubt(adapters_in_order: Sequence[Adapter], provider: str) -> list[Adapter]:
    """The adapters to send a payout again after `PayoutInDoubt`: `provider` first, none before.

    The providers before it said they had never seen the payout, so they would take it now,
    while `provider` may have paid it: it must answer (take it, or say it never saw it) before
    anyone else is asked. Empty if the route no longer has `provider`, so nothing is sent.
    """
    names = [adapter.name for adapter in adapters_in_order]
    return list(adapters_in_order[names.index(provider) :]) if provider in names else []


async def submit_with_failover(
    order: Order, adapters_in_order: Sequence[Adapter], *, record: Record
) -> Accepted:
    """Submit `order` to the first provider that takes it (rules in the module docstring)."""
    attempts: list[Attempt] = []

    async def note(provider: str, outcome: AttemptOutcome, status: int | None) -> None:
        attempts.append(Attempt(provider, outcome, status))
        await record(provider, outcome, status)

    for adapter in adapters_in_order:
        try:
            accepted = await adapter.submit(order)
        except ProviderDeclined as declined:
            await note(adapter.name, "declined", declined.status)
            raise
        except ProviderUnavailable as unavailable:
            try:
                known = await adapter.lookup(order.payment_id)
            except (ProviderUnavailable, ProviderDeclined):
                await note(adapter.name, "in_doubt", unavailable.status)
                if order.kind == "withdrawal":
                    raise PayoutInDoubt(adapter.name, attempts) from unavailable
                continue
            if known is not None:
                await note(adapter.name, "adopted", None)
                return Accepted(adapter.name, known.provider_ref, known.redirect_url)
            await note(adapter.name, unavailable.what, unavailable.status)
            continue
        await note(adapter.name, "accepted", None)
        return accepted
    raise NoProviderAvailable(attempts)
