"""Bad input: a clear 4xx with a machine-readable code, and nothing posted."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.signing import signed_headers
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api


@pytest.fixture
async def player(uows: UnitOfWorkFactory) -> uuid.UUID:
    return await factories.committed_player(uows, cash="100.00")


async def in_chunks(body: bytes) -> AsyncIterator[bytes]:
    """The body sent chunked: no Content-Length tells the server its size in advance."""
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


async def send_raw(api: Api, path: str, body: bytes, *, chunked: bool = False, **extra: str) -> Any:
    headers = (
        signed_headers(
            client_id=api.provider.client_id,
            secret=api.provider.secret,
            method="POST",
            path=path,
            body=body,
        )
        | {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        | extra
    )
    return await api.http.post(path, content=in_chunks(body) if chunked else body, headers=headers)


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"currency": "ZZZ"}, 422, "unknown_currency"),
        ({"currency": "eur"}, 422, "invalid_request"),
        ({"currency": "EURO"}, 422, "invalid_request"),
        ({"currency": "USD"}, 422, "no_fx_rate"),
        ({"amount": "10.001"}, 422, "too_many_decimals"),
        ({"amount": "0.00"}, 422, "amount_not_positive"),
        ({"amount": "0"}, 422, "amount_not_positive"),
        ({"amount": "-5.00"}, 422, "invalid_request"),
        ({"amount": "99999999999999999"}, 422, "invalid_request"),
        ({"amount": "10000000000000.01"}, 422, "amount_too_large"),
        ({"amount": 10.5}, 422, "invalid_request"),
        ({"amount": 10}, 422, "invalid_request"),
        ({"amount": True}, 422, "invalid_request"),
        ({"amount": None}, 422, "invalid_request"),
        ({"amount": "1e3"}, 422, "invalid_request"),
        ({"amount": "NaN"}, 422, "invalid_request"),
        ({"player_id": str(uuid.uuid4())}, 404, "unknown_player"),
        ({"player_id": "not-a-uuid"}, 422, "invalid_request"),
        ({"bet_id": ""}, 422, "invalid_request"),
        ({"bet_id": "x" * 65}, 422, "invalid_request"),
        ({"round_id": "has space"}, 422, "invalid_request"),
        ({"surprise": "field"}, 422, "invalid_request"),
    ],
)
async def test_a_bad_bet_is_refused_and_moves_nothing(
    api: Api, player: uuid.UUID, change: dict[str, Any], status: int, code: str
) -> None:
    body = factories.bet_body(player) | change
    response = await api.provider.post("/v1/wallet/bet", body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await factories.balance(api, player) == "100.00"
    # the bet id was not consumed: the corrected bet goes through
    bet_id = body["bet_id"] if "bet_id" not in change else "b-corrected"
    fixed = await api.provider.post(
        "/v1/wallet/bet", factories.bet_body(player) | {"bet_id": bet_id}
    )
    assert fixed.status_code == 200, fixed.text


@pytest.mark.parametrize(
    "missing",
    [
        "request_uuid",
        "transaction_uuid",
        "player_id",
        "round_id",
        "bet_id",
        "game_id",
        "amount",
        "currency",
    ],
)
async def test_a_missing_field_is_named(api: Api, player: uuid.UUID, missing: str) -> None:
    body = factories.bet_body(player)
    del body[missing]
    response = await api.provider.post("/v1/wallet/bet", body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [p["field"] for p in error["details"]["problems"]] == [missing]
    assert await factories.balance(api, player) == "100.00"


async def test_a_jpy_amount_with_decimals_is_refused(api: Api, uows: UnitOfWorkFactory) -> None:
    async with uows() as uow:
        player_id = await factories.player(uow, cash="1000", currency="JPY")
        await uow.commit()
    response = await api.provider.post(
        "/v1/wallet/bet", factories.bet_body(player_id, "1.5", currency="JPY")
    )
    assert (response.status_code, response.json()["error"]["code"]) == (422, "too_many_decimals")
    assert response.json()["error"]["details"]["max_decimals"] == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b"null", b'"text"', b'{"request_uuid": '],
)
async def test_malformed_json_is_a_400_or_422(api: Api, player: uuid.UUID, body: bytes) -> None:
    response = await send_raw(api, "/v1/wallet/bet", body)
    assert response.status_code in {400, 422}, response.text
    assert response.json()["error"]["code"] in {"malformed_json", "invalid_request"}
    assert await factories.balance(api, player) == "100.00"


async def test_syntactically_broken_json_says_so(api: Api) -> None:
    response = await send_raw(api, "/v1/wallet/bet", b"{not json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_json")


async def test_an_oversized_body_is_refused_before_it_is_read(api: Api, player: uuid.UUID) -> None:
    body = json.dumps(factories.bet_body(player) | {"pad": "x" * 70_000}).encode()
    response = await send_raw(api, "/v1/wallet/bet", body)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")
    assert await factories.balance(api, player) == "100.00"


@pytest.mark.parametrize("size", [70_000, 2_000_000])
async def test_an_oversized_chunked_body_is_refused_as_too_large(
    api: Api, player: uuid.UUID, size: int
) -> None:
    body = json.dumps(factories.bet_body(player) | {"pad": "x" * size}).encode()
    response = await send_raw(api, "/v1/wallet/bet", body, chunked=True)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")
    assert "65536 bytes" in response.json()["error"]["message"]
    assert await factories.balance(api, player) == "100.00"


async def test_a_chunked_body_within_the_limit_is_accepted(api: Api, player: uuid.UUID) -> None:
    body = json.dumps(factories.bet_body(player, "10.00")).encode()
    response = await send_raw(api, "/v1/wallet/bet", body, chunked=True)
    assert response.status_code == 200, response.text
    assert await factories.balance(api, player) == "90.00"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/wallet/bet",
            json.dumps({"game_id": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
            "the body is not UTF-8 JSON",
        ),
        ("/v1/wallet/bet", b"[" * 5000 + b"]" * 5000, "the body's JSON is nested too deeply"),
        ("/v1/wallet/win", b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    ],
)
async def test_a_body_that_is_not_readable_json_is_malformed_json(
    api: Api, player: uuid.UUID, path: str, body: bytes, message: str
) -> None:
    response = await send_raw(api, path, body)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_json")
    assert message in response.json()["error"]["message"]
    assert await factories.balance(api, player) == "100.00"


async def test_a_mutating_call_needs_an_idempotency_key(api: Api, player: uuid.UUID) -> None:
    body = json.dumps(factories.bet_body(player)).encode()
    headers = signed_headers(
        client_id=api.provider.client_id,
        secret=api.provider.secret,
        method="POST",
        path="/v1/wallet/bet",
        body=body,
    ) | {"Content-Type": "application/json"}
    response = await api.http.post("/v1/wallet/bet", content=body, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (
        400,
        "idempotency_key_missing",
    )
    assert await factories.balance(api, player) == "100.00"


async def test_a_win_for_a_bet_of_another_round_is_refused(api: Api, player: uuid.UUID) -> None:
    bet = factories.bet_body(player)
    await api.provider.post("/v1/wallet/bet", bet)
    response = await api.provider.post(
        "/v1/wallet/win", factories.win_body(bet, "5.00", round_id="another-round")
    )
    assert (response.status_code, response.json()["error"]["code"]) == (409, "bet_mismatch")
    assert await factories.balance(api, player) == "90.00"


async def test_an_unknown_route_and_method_answer_in_the_error_format(api: Api) -> None:
    missing = await api.http.get("/v1/nowhere")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = await api.http.get("/v1/wallet/bet")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": "abc"}, "invalid_request"),
        ({"amount": "1.001"}, "too_many_decimals"),
        ({"direction": "sideways"}, "invalid_request"),
        ({"reason": ""}, "invalid_request"),
        ({"reason": "   "}, "reason_required"),
        ({"currency": "USD"}, "currency_mismatch"),
    ],
)
async def test_bad_adjustments_are_refused(
    api: Api, player: uuid.UUID, change: dict[str, Any], code: str
) -> None:
    body = {
        "player_id": str(player),
        "amount": "5.00",
        "currency": "EUR",
        "direction": "credit",
        "reason": "goodwill",
    } | change
    response = await api.operator.post("/v1/admin/adjustments", body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == code
    assert await factories.balance(api, player) == "100.00"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"rate": "0"}, "invalid_rate"),
        ({"rate": "-1"}, "invalid_request"),
        ({"rate": "abc"}, "invalid_request"),
        ({"as_of": "2026-01-01T00:00:00"}, "invalid_datetime"),
        ({"as_of": "yesterday"}, "invalid_datetime"),
        ({"quote": "USD"}, "same_currency"),
        ({"base": "ZZZ"}, "unknown_currency"),
    ],
)
async def test_bad_fx_rates_are_refused(api: Api, change: dict[str, Any], code: str) -> None:
    body = {
        "base": "USD",
        "quote": "EUR",
        "rate": "0.9",
        "source": "feed",
        "as_of": "2026-01-01T00:00:00Z",
    } | change
    response = await api.operator.post("/v1/admin/fx-rates", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("at", ["yesterday", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z"])
async def test_balance_at_needs_a_real_instant(api: Api, player: uuid.UUID, at: str) -> None:
    response = await api.operator.get(f"/v1/admin/accounts/player:{player}:cash/balance?at={at}")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_datetime")


async def test_an_unknown_account_is_a_404(api: Api) -> None:
    response = await api.operator.get("/v1/admin/accounts/player:nobody:cash/balance")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_account")


@pytest.mark.parametrize("txn", ["0", "-1", "9223372036854775808", "21008108753636990976", "x"])
async def test_a_reversal_of_an_impossible_transaction_id_is_a_422(api: Api, txn: str) -> None:
    response = await api.operator.post(f"/v1/admin/adjustments/{txn}/reversal", {"reason": "oops"})
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request")


@pytest.mark.parametrize("text", ["nul\u0000byte", "bell\u0007", "line\nbreak"])
async def test_control_characters_in_free_text_are_refused(
    api: Api, player: uuid.UUID, text: str
) -> None:
    body = {
        "player_id": str(player),
        "amount": "5.00",
        "currency": "EUR",
        "direction": "credit",
        "reason": "goodwill",
    } | {"reason": text}
    response = await api.operator.post("/v1/admin/adjustments", body)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request")
    assert await factories.balance(api, player) == "100.00"


async def test_a_nul_in_telemetry_or_an_account_code_is_refused(
    api: Api, player: uuid.UUID
) -> None:
    bet = await api.provider.post(
        "/v1/wallet/bet", factories.bet_body(player, session_id="s\u0000", device="d")
    )
    assert (bet.status_code, bet.json()["error"]["code"]) == (422, "invalid_request")
    # the server checks the signature over the decoded path
    headers = signed_headers(
        client_id=api.operator.client_id,
        secret=api.operator.secret,
        method="GET",
        path="/v1/admin/accounts/player\u0000x/balance",
        body=b"",
    )
    account = await api.http.get("/v1/admin/accounts/player%00x/balance", headers=headers)
    assert (account.status_code, account.json()["error"]["code"]) == (422, "invalid_request")


@pytest.mark.parametrize("content", ["not base64!", "caf\u00e9"])
async def test_a_document_that_is_not_base64_is_refused(api: Api, content: str) -> None:
    response = await api.operator.post(
        f"/v1/vault/players/{uuid.uuid4()}/documents",
        {"kind": "passport_front", "content_type": "image/png", "content_base64": content},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_base64")


IN_A_MONTH = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
PER_PLAYER = {
    "kyc": {"level": "verified", "reason": "checked"},
    "aml-hold": {"on_hold": True, "reason": "checked"},
    "links": {"linked_player_id": "00000000-0000-4000-8000-000000000002", "reason": "checked"},
    "limits": {"kind": "deposit", "period": "24h", "amount": "10.00"},
    "exclusions": {"kind": "time_out", "until": IN_A_MONTH, "reason": "asked"},
}

ADJUSTMENT = {"player_id": "{p}", "amount": "5.00", "currency": "EUR", "direction": "credit"}


@pytest.mark.parametrize(
    ("path", "body", "person"),
    [
        *((f"/v1/admin/players/{{p}}/{what}", body, "actor") for what, body in PER_PLAYER.items()),
        ("/v1/admin/kill-switches", {"zone": "bet", "off": True, "reason": "x"}, "actor"),
        ("/v1/admin/adjustments", ADJUSTMENT | {"reason": "goodwill"}, "operator"),
        ("/v1/admin/adjustments/1/reversal", {"reason": "oops"}, "operator"),
        ("/v1/admin/payments/{p}/review", {"approve": True, "reason": "ok"}, "officer"),
        ("/v1/vault/players/{p}/reveal", {"field": "iban", "purpose": "payout"}, "actor"),
        ("/v1/vault/players/{p}/reveal", {"field": "iban", "purpose": "payout"}, "actor_role"),
        ("/v1/vault/players/{p}/export", {}, "actor"),
        ("/v1/vault/players/{p}/erasure", {"reason": "asked"}, "actor"),
    ],
)
async def test_a_body_naming_a_person_is_refused(
    api: Api, player: uuid.UUID, path: str, body: dict[str, Any], person: str
) -> None:
    """The machine API takes no person's name (decision 0021): the actor is the client."""
    named = {k: str(player) if v == "{p}" else v for k, v in body.items()} | {person: "alice"}
    response = await api.operator.post(path.format(p=player), named)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request")
    problems = response.json()["error"]["details"]["problems"]
    assert [(p["field"], p["type"]) for p in problems] == [(person, "extra_forbidden")]
    assert await factories.balance(api, player) == "100.00"
