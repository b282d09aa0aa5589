"""The published contract: money is a patterned string, never a JSON number; examples exist; and
a client built from /openapi.json alone can make correct requests: it signs as the security
schemes say, sends the Idempotency-Key where it is required, and knows every error it can get.
"""

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from app import contract, schemas
from app.main import create_app
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api
from tests.error_codes import documented
from tests.payments_support import use_fake_providers

SIGNING_HEADERS = {
    "ClientId": "X-Client-Id",
    "RequestTimestamp": "X-Request-Timestamp",
    "RequestNonce": "X-Request-Nonce",
    "Signature": "X-Signature",
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# Mutating operations that take no Idempotency-Key, and why (README says so too).
NO_KEY = {
    ("POST", "/v1/wallet/balance"): "a read, sent as a POST by the seamless-wallet contract",
    ("POST", "/v1/admin/players/{player_id}/session"): "a retry mints another token, none kept",
    ("POST", "/v1/webhooks/{provider}"): "the providers' own signatures and message ids",
    ("POST", "/v1/admin/payments/{payment_id}/submit"): "sends the same payment id again",
    ("POST", "/v1/vault/players/{player_id}/reveal"): "shows a field again, journaled again",
    ("POST", "/v1/vault/players/{player_id}/export"): "exports again, journaled again",
    ("POST", "/v1/vault/players/{player_id}/erasure"): "a second erasure answers 410 erased",
    ("POST", "/v1/vault/players/{player_id}/documents"): "stores the document again",
}


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(walk(value, f"{path}/{index}"))
    return found


def openapi(uows: UnitOfWorkFactory, settings: Settings) -> dict[str, Any]:
    # The document needs no database: the factories are never used.
    return create_app(settings=settings, uow_factory=uows, vault_uow_factory=uows).openapi()


def published(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def example_request(document: dict[str, Any], path: str, operation: dict[str, Any]) -> Any:
    """The request a user tries from /docs: path, query and body from the examples only."""
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header":
            continue
        value = parameter.get("example", parameter["schema"].get("examples", [None])[0])
        assert value is not None, f"{path}: {parameter['name']} has no example"
        text = value if isinstance(value, str) else json.dumps(value)
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", text)
        else:
            query[parameter["name"]] = text
    body = b""
    if "requestBody" in operation:
        media = operation["requestBody"]["content"]["application/json"]
        if "example" in media:
            example = media["example"]
        else:
            name = media["schema"]["$ref"].rsplit("/", 1)[1]
            example = document["components"]["schemas"][name]["examples"][0]
        body = json.dumps(example).encode()
    return (f"{path}?{urlencode(query)}" if query else path), body


class Caller:
    """Calls the API as each operation's security requirement says, and nothing more."""

    def __init__(self, api: Api, token: str) -> None:
        self.api, self.token = api, token

    async def send(
        self, method: str, target: str, body: bytes, operation: dict[str, Any], **headers: str
    ) -> httpx.Response:
        schemes = {name for requirement in operation.get("security", []) for name in requirement}
        if schemes == set(SIGNING_HEADERS):
            client = self.api.provider if target.startswith("/v1/wallet") else self.api.operator
            headers |= client.sign(method, target, body)
        elif schemes == {contract.PLAYER_SCHEME}:
            headers["Authorization"] = f"Bearer {self.token}"
        else:
            assert schemes == set(), schemes
        headers["Content-Type"] = "application/json"
        return await self.api.http.request(method, target, content=body, headers=headers)


@pytest.fixture
async def caller(api: Api, uows: UnitOfWorkFactory) -> Caller:
    player = await factories.committed_player(uows, cash="10.00")
    minted = await api.operator.post(f"/v1/admin/players/{player}/session", {})
    return Caller(api, minted.json()["token"])


def test_no_number_types_in_the_contract(uows: UnitOfWorkFactory, settings: Settings) -> None:
    schemas_ = openapi(uows, settings)["components"]["schemas"]
    numbers = [path for path, node in walk(schemas_) if node.get("type") == "number"]
    assert numbers == []


def test_amounts_and_currencies_are_patterned_strings(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    schemas_ = openapi(uows, settings)["components"]["schemas"]
    for name in ("BetRequest", "WinRequest", "Adjustment"):
        amount = schemas_[name]["properties"]["amount"]
        assert amount["type"] == "string"
        assert amount["pattern"].startswith("^")
        currency = schemas_[name]["properties"]["currency"]
        assert (currency["type"], currency["pattern"]) == ("string", "^[A-Z]{3}$")


def test_wallet_endpoints_document_examples_and_errors(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    document = openapi(uows, settings)
    for endpoint in ("balance", "bet", "win", "rollback"):
        operation = document["paths"][f"/v1/wallet/{endpoint}"]["post"]
        assert {"401", "404", "422"} <= set(operation["responses"])
        if endpoint != "balance":  # a balance conflicts with nothing
            assert "409" in operation["responses"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert document["components"]["schemas"][ref.rsplit("/", 1)[1]]["examples"]


async def test_a_client_signing_as_the_security_scheme_says_is_accepted(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    schemes = api.app.openapi()["components"]["securitySchemes"]
    assert {
        n: (schemes[n]["type"], schemes[n]["in"], schemes[n]["name"]) for n in SIGNING_HEADERS
    } == {n: ("apiKey", "header", header) for n, header in SIGNING_HEADERS.items()}
    # The canonical request is the indented block of the Signature scheme's description.
    template = [
        line.strip()
        for line in schemes["Signature"]["description"].splitlines()
        if line.startswith("    ")
    ]
    player = await factories.committed_player(uows, cash="10.00")

    async def call(client_id: str, secret: str, method: str, target: str, body: bytes) -> Any:
        timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
        values = {
            "METHOD": method,
            "PATH?QUERY": target,
            "TIMESTAMP": timestamp,
            "NONCE": nonce,
            "hex SHA-256 of the body": hashlib.sha256(body).hexdigest(),
        }
        canonical = "\n".join(values.get(line, line) for line in template).encode()
        headers = {
            "X-Client-Id": client_id,
            "X-Request-Timestamp": timestamp,
            "X-Request-Nonce": nonce,
            "X-Signature": hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        }
        return await api.http.request(method, target, content=body, headers=headers)

    operator, provider = api.operator, api.provider
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    target = f"/v1/admin/accounts/player:{player}:cash/balance?at={tomorrow}"
    account = await call(operator.client_id, operator.secret, "GET", target, b"")
    assert (account.status_code, account.json()["balance"]) == (200, "10.00"), account.text
    body = json.dumps({"request_uuid": str(uuid.uuid4()), "player_id": str(player)}).encode()
    balance = await call(provider.client_id, provider.secret, "POST", "/v1/wallet/balance", body)
    assert (balance.status_code, balance.json()["balance"]) == (200, "10.00"), balance.text


async def test_every_operation_says_how_it_is_authenticated(api: Api, caller: Caller) -> None:
    document = api.app.openapi()
    for method, path, operation in published(document):
        target, body = example_request(document, path, operation)
        response = await api.http.request(method, target, content=body)  # no credentials
        schemes = {name for requirement in operation.get("security", []) for name in requirement}
        code = response.json()["error"]["code"] if response.status_code >= 400 else None
        if schemes:
            assert (response.status_code, code) == (401, "missing_auth_header"), (method, path)
            assert ("WWW-Authenticate" in response.headers) == (schemes == {"PlayerToken"})
        else:
            assert code != "missing_auth_header", (method, path)
    assert caller.token  # the fixture's player token is what the other tests call /v1/me with


def test_every_mutating_route_declares_a_required_idempotency_key(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    app = create_app(settings=settings, uow_factory=uows, vault_uow_factory=uows)
    document = app.openapi()
    mutating = [op for op in contract.operations(app) if op.method in MUTATING]
    for operation in mutating:
        parameters = document["paths"][operation.path][operation.method.lower()].get(
            "parameters", []
        )
        key = [p for p in parameters if (p["in"], p["name"]) == ("header", "Idempotency-Key")]
        if (operation.method, operation.path) in NO_KEY:
            assert key == [], (
                f"{operation.path} needs no key: {NO_KEY[operation.method, operation.path]}"
            )
        else:
            assert key, f"{operation.method} {operation.path} lacks the Idempotency-Key header"
            assert key[0]["required"] is True
            assert key[0]["schema"]["maxLength"] == 128
    assert NO_KEY.keys() <= {(op.method, op.path) for op in mutating}  # no stale exemption


async def test_an_operation_that_declares_the_key_refuses_a_request_without_it(
    api: Api, caller: Caller
) -> None:
    use_fake_providers(api)
    document = api.app.openapi()
    for method, path, operation in published(document):
        declared = any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
        if method not in MUTATING:
            assert not declared
            continue
        target, body = example_request(document, path, operation)
        response = await caller.send(method, target, body, operation)
        code = response.json()["error"]["code"] if response.status_code >= 400 else None
        if declared:
            assert (response.status_code, code) == (400, "idempotency_key_missing"), path
        else:
            assert code != "idempotency_key_missing", path


EXPORT = "/v1/vault/players/{player_id}/export"


async def test_every_example_request_is_one_the_api_accepts(api: Api, caller: Caller) -> None:
    """Sent as /docs would send it (signed, with a key), no example is malformed: what follows
    is the API's answer to a correct request (often a 404: the demo's players are not here)."""
    use_fake_providers(api)
    document = api.app.openapi()
    answered: set[int | str] = set()
    for method, path, operation in published(document):
        target, body = example_request(document, path, operation)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        response = await caller.send(method, target, body, operation, **key)
        if response.status_code >= 400:
            error = response.json()["error"]
            if (path, error["code"]) == (EXPORT, "export_refused"):
                continue  # well formed, and refused to every client by rule (decision 0021)
            assert response.status_code not in {400, 401, 403, 413}, (path, error)
            assert error["code"] != "invalid_request", (path, error)
        if path == "/v1/me/exclusions":  # the caller's own player: its dates hold on any day
            assert response.status_code == 200, response.text
            answered.add("exclusion started")
        answered.add(response.status_code)
    assert {200, "exclusion started"} <= answered


def test_every_error_is_declared_with_the_error_schema_and_documented_codes(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    document = openapi(uows, settings)
    table = documented()
    for method, path, operation in published(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
            assert media["examples"], (method, path, status)
            for code, example in media["examples"].items():
                assert (int(status), code) in table, (method, path, status, code)
                error = schemas.ErrorResponse.model_validate(example["value"]).error
                assert error.code == code
                assert f"`{code}`" in response["description"]
        if "requestBody" in operation:
            assert {"413", "422"} <= set(operation["responses"]), (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_gated_operations_declare_policy_refusals_and_retry_after(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    bet = openapi(uows, settings)["paths"]["/v1/wallet/bet"]["post"]["responses"]
    assert {"self_excluded", "wager_limit_24h", "zone_off", "no_rule"} <= set(
        bet["403"]["content"]["application/json"]["examples"]
    )
    assert "no_active_policy" in bet["503"]["content"]["application/json"]["examples"]
    assert "Retry-After" in bet["403"]["headers"]
    assert "Retry-After" in bet["503"]["headers"]
