"""The published contract (/openapi.json): what FastAPI infers, and what it cannot see.

FastAPI sees bodies, parameters and the player token's bearer scheme. It does not see what the
dependencies check by hand: the request signature (`authenticate`), the Idempotency-Key
(`idempotency_key`), the role checks, the gate. `document` declares each of them on exactly the
operations whose route depends on it, so the document follows the code: a new route that takes
`IdempotencyKey` declares the required header without anyone remembering to.

Each error status of an operation has the error body's schema and one example per code it can
answer: the codes of its dependencies (found here) and the codes of its own refusals (written
beside the route with `refusals`). README's error table lists them all.
"""

import json
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from app import auth, gating, player_auth, schemas, signing
from app.errors import error_body
from policies import ruleset

Codes = Mapping[int, Iterable[str]]

# The four signing headers go together (one security requirement: all of them at once).
SIGNING_SCHEMES = ("ClientId", "RequestTimestamp", "RequestNonce", "Signature")
PLAYER_SCHEME = "PlayerToken"  # app/player_auth.py's HTTPBearer
IDEMPOTENCY_HEADER = "Idempotency-Key"
EXAMPLE_KEY = "5d1f6a52-3c2e-4f4b-9a59-7c0b1f2e8d41"

MONEY: Codes = {
    422: (
        "unknown_currency",
        "invalid_amount",
        "too_many_decimals",
        "amount_not_positive",
        "amount_too_large",
    )
}

_SIGNED = {
    401: (
        "missing_auth_header",
        "bad_timestamp",
        "timestamp_out_of_window",
        "bad_nonce",
        "bad_signature",
        "nonce_reused",
    )
}
_ROLE = {403: ("forbidden",)}
_PLAYER = {401: ("missing_auth_header", "invalid_token", "token_expired")}
_IDEMPOTENT = {
    400: ("idempotency_key_missing", "idempotency_key_invalid"),
    409: ("idempotency_key_in_flight", "concurrent_conflict"),
    422: ("idempotency_key_reused",),
}
_JSON_BODY = {400: ("malformed_json",), 413: ("body_too_large",), 422: ("invalid_request",)}
_PARAMETERS = {422: ("invalid_request",)}
_DATABASE = {503: ("database_unavailable",)}  # any operation with a unit of work (app/outage.py)
_PAYMENTS = {503: ("payments_disabled",)}  # the cashier's operations, without a payments config
_GATE_UNAVAILABLE = {
    503: ("no_active_policy", "policy_unavailable", "age_unavailable", "no_fx_rate")
}

_STATUS_TEXT = {
    400: "The request is malformed",
    401: "Not authenticated; nothing changed",
    403: "Refused; nothing moved",
    404: "Something the request names does not exist",
    409: "Contradicts the current state or an earlier request",
    410: "Deliberately destroyed",
    413: "The body is larger than the server accepts",
    422: "Values the API does not accept",
    503: "Cannot be decided safely now; nothing moved",
}
_POLICY_TEXT = (
    " A policy refusal's code is the reason code of the rule that refused; its details carry"
    " decision_id, policy_version, rule_ids, category and, for responsible-gambling reasons,"
    " help (organisations of the player's country)."
)
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Only on a refusal that may lift (zone_off, a 503): seconds to wait "
        "before sending the same request, with the same Idempotency-Key, again (such a refusal "
        "is not kept as the key's answer)",
        "schema": {"type": "integer"},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="pitwarden", with error="invalid_token" when a token was sent',
        "schema": {"type": "string"},
    }
}
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same Idempotency-Key (nothing was done again)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def refusals(codes: Codes) -> dict[int | str, dict[str, Any]]:
    """A route's own refusals, for its `responses=`: the codes each status can carry."""
    return {status: _response(status, list(found)) for status, found in codes.items()}


def combined(*groups: Codes) -> dict[int, list[str]]:
    merged: dict[int, list[str]] = {}
    for group in groups:
        for status, codes in group.items():
            merged.setdefault(status, [])
            merged[status] += [code for code in codes if code not in merged[status]]
    return merged


def _response(status: int, codes: list[str]) -> dict[str, Any]:
    return {
        "model": schemas.ErrorResponse,
        "description": _STATUS_TEXT.get(status, "Refused"),
        "content": {"application/json": {"examples": _examples(codes)}},
    }


def _examples(codes: Iterable[str]) -> dict[str, Any]:
    return {
        code: {"summary": code, "value": error_body(code, code.replace("_", " "))} for code in codes
    }


def signing_schemes(tolerance_s: int) -> dict[str, Any]:
    how = (
        "Every call of an API client carries the four headers X-Client-Id, X-Request-Timestamp, "
        "X-Request-Nonce and X-Signature together. "
    )
    return {
        "ClientId": _header_scheme("X-Client-Id", how + "This one: the client's id."),
        "RequestTimestamp": _header_scheme(
            "X-Request-Timestamp",
            how + f"This one: Unix seconds, within {tolerance_s} s of the server's clock.",
        ),
        "RequestNonce": _header_scheme(
            "X-Request-Nonce",
            how + "This one: 16-64 characters of A-Za-z0-9_-, never used before by this client "
            "(the server remembers them, across restarts).",
        ),
        "Signature": _header_scheme(
            "X-Signature",
            how + "This one: the lowercase hex HMAC-SHA256, keyed with the client's secret, of "
            "the canonical request, six lines joined by \\n (no newline at the end):\n\n"
            f"    {signing.SCHEME}\n    METHOD\n    PATH?QUERY\n    TIMESTAMP\n    NONCE\n"
            "    hex SHA-256 of the body\n\n"
            "METHOD in capitals; PATH?QUERY the path percent-decoded (UTF-8), then `?` and the "
            "query string exactly as sent (no `?` without a query); TIMESTAMP and NONCE as in "
            "their headers; the body's bytes exactly as sent "
            "(an empty body hashes to e3b0c442...b855). A missing header, another signature, an "
            "unknown client, a timestamp out of the window or a nonce seen before is a 401 and "
            "changes nothing. `pitwarden client sign METHOD PATH --client-id ID --secret S "
            "--body JSON` prints the four headers (and a fresh Idempotency-Key); app/signing.py "
            "computes them.",
        ),
    }


def _header_scheme(name: str, description: str) -> dict[str, Any]:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


def idempotency_parameter() -> dict[str, Any]:
    return {
        "name": IDEMPOTENCY_HEADER,
        "in": "header",
        "required": True,
        "description": "Names this request once and for all: the same key with the same request "
        "answers the first answer again, status and body byte for byte, with "
        "Idempotent-Replayed: true; with another request it is a 422 idempotency_key_reused. "
        "1-128 printable characters (a UUID is a good key).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
        "example": EXAMPLE_KEY,
    }


@cache
def policy_reasons() -> tuple[str, ...]:
    """The reason codes a policy refusal can carry under the shipped rulesets."""
    loaded = [
        ruleset.load(ruleset.RULESETS / version)
        for version in ruleset.available()
        if not version.startswith(ruleset.CONSOLE_PREFIX)  # the console's: pages, not the API
    ]
    reasons = {r.reason_code for s in loaded for r in s.rules if r.effect == "deny"}
    return tuple(sorted(reasons | {ruleset.NO_RULE}))


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            found.add(sub.call)
        found |= _calls(sub)
    return found


@dataclass(frozen=True)
class Operation:
    """One method of one published route, as included in the app (prefixes, router deps)."""

    method: str
    path: str
    route: RouteContext

    @property
    def calls(self) -> set[Callable[..., Any]]:
        """Every dependency the operation runs, however deep."""
        return _calls(self.route.dependant)

    @property
    def idempotent(self) -> bool:
        """The operation claims an Idempotency-Key (app/api/idempotent.py runs it)."""
        return auth.idempotency_key in self.calls


def operations(app: FastAPI) -> Iterator[Operation]:
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            for method in sorted(context.methods or ()):
                yield Operation(method, str(context.path_format), context)


def _dependency(alias: object) -> object:
    """The function behind an `Annotated[T, Depends(function)]` alias such as `Gated`."""
    depends: Any = typing.get_args(alias)[1]
    return depends.dependency


def _gated(calls: set[Callable[..., Any]]) -> bool:
    """Whether the gate decides the operation: it takes the gate, or it is a signed call of the
    cashier (a webhook's refusal is a 200 with the outcome `refused`)."""
    signed = auth.authenticate in calls
    return _dependency(gating.Gated) in calls or (_dependency(gating.Cashiered) in calls and signed)


def _derived(operation: Operation) -> dict[int, list[str]]:
    """The codes the operation's dependencies, body and parameters answer."""
    calls, route = operation.calls, operation.route
    groups: list[Codes] = []
    if auth.authenticate in calls:
        groups.append(_SIGNED)
    if calls & {auth.game_provider, auth.operator, auth.auditor}:
        groups.append(_ROLE)
    if player_auth.authenticate_player in calls:
        groups.append(_PLAYER)
    if auth.idempotency_key in calls:
        groups.append(_IDEMPOTENT)
    if route.body_field is not None:
        groups.append(_JSON_BODY)
    if route.dependant.path_params or route.dependant.query_params:
        groups.append(_PARAMETERS)
    if _gated(calls):
        groups += [{403: policy_reasons()}, _GATE_UNAVAILABLE]
    if auth.unit_of_work in calls:
        groups.append(_DATABASE)
    if _dependency(gating.Cashiered) in calls:
        groups.append(_PAYMENTS)
    return combined(*groups)


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        signing_schemes(app.state.settings.signature_tolerance_s)
    )
    for operation in operations(app):
        _declare(doc["paths"][operation.path][operation.method.lower()], operation)
    _drop_unused_schemas(doc, ("HTTPValidationError", "ValidationError"))
    return doc


def _declare(published: dict[str, Any], operation: Operation) -> None:
    calls = operation.calls
    if auth.authenticate in calls:
        published["security"] = [{scheme: [] for scheme in SIGNING_SCHEMES}]
    if operation.idempotent:
        published["parameters"] = [idempotency_parameter(), *published.get("parameters", [])]
        published["responses"]["200"].setdefault("headers", {}).update(_REPLAYED)
    codes, gated = _derived(operation), _gated(calls)
    errors = {int(s) for s in published["responses"] if int(s) >= 400} | codes.keys()  # noqa: PLR2004
    for status in sorted(errors):
        response = published["responses"].setdefault(str(status), {})
        _merge(response, status, codes.get(status, []))
        if status in {403, 503} and gated:
            response.setdefault("headers", {}).update(_RETRY_AFTER)
            if status == 403:  # noqa: PLR2004
                response["description"] += _POLICY_TEXT
        if status == 401 and player_auth.authenticate_player in calls:  # noqa: PLR2004
            response.setdefault("headers", {}).update(_WWW_AUTHENTICATE)
    published["responses"] = dict(sorted(published["responses"].items()))


def _merge(response: dict[str, Any], status: int, codes: list[str]) -> None:
    """Add `codes` to the examples of an error response; the description lists them all."""
    media = response.setdefault("content", {}).setdefault("application/json", {})
    media["schema"] = {"$ref": "#/components/schemas/ErrorResponse"}
    examples = media.setdefault("examples", {})
    examples.update({k: v for k, v in _examples(codes).items() if k not in examples})
    listed = ", ".join(f"`{code}`" for code in examples)
    response["description"] = f"{_STATUS_TEXT.get(status, 'Refused')}: {listed}."


def _drop_unused_schemas(doc: dict[str, Any], names: Iterable[str]) -> None:
    """FastAPI's validation error schemas, which our 422 (the error body) replaced."""
    text = json.dumps(doc["paths"])
    for name in names:
        if f'"#/components/schemas/{name}"' not in text:
            doc["components"].get("schemas", {}).pop(name, None)


def install(app: FastAPI) -> None:
    """Serve `document(app)` at /openapi.json (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
