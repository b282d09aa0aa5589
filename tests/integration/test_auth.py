"""Signed requests: who may call, within which window, and only once."""

import json
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa

from app.main import create_app
from app.runtime import client_secrets
from app.signing import signed_headers
from compliance.vault.keys import LocalKeyFile
from core import clients
from core.errors import InvalidRequest
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, Api

PATH = "/v1/wallet/bet"


@pytest.fixture
async def player(uows: UnitOfWorkFactory) -> uuid.UUID:
    return await factories.committed_player(uows, cash="100.00")


def signed(
    api: Api,
    body: bytes,
    *,
    path: str = PATH,
    secret: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    return signed_headers(
        client_id=api.provider.client_id,
        secret=secret or api.provider.secret,
        method="POST",
        path=path,
        body=body,
        timestamp=timestamp,
        nonce=nonce,
    ) | {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}


def bet(player_id: uuid.UUID) -> bytes:
    return json.dumps(factories.bet_body(player_id)).encode()


@pytest.mark.parametrize(
    "header", ["X-Client-Id", "X-Request-Timestamp", "X-Request-Nonce", "X-Signature"]
)
async def test_each_signature_header_is_required(api: Api, player: uuid.UUID, header: str) -> None:
    body = bet(player)
    headers = signed(api, body)
    del headers[header]
    response = await api.http.post(PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "missing_auth_header",
        "message": f"the {header} header is required",
        "details": {"header": header},
    }
    assert await factories.balance(api, player) == "100.00"


async def test_a_wrong_secret_is_refused(api: Api, player: uuid.UUID) -> None:
    body = bet(player)
    response = await api.http.post(PATH, content=body, headers=signed(api, body, secret="guess"))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "bad_signature")
    assert await factories.balance(api, player) == "100.00"


async def test_a_body_changed_after_signing_is_refused(api: Api, player: uuid.UUID) -> None:
    body = bet(player)
    headers = signed(api, body)
    tampered = body.replace(b'"10.00"', b'"99.00"')
    response = await api.http.post(PATH, content=tampered, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "bad_signature")
    assert await factories.balance(api, player) == "100.00"


async def test_a_signature_for_another_path_is_refused(api: Api, player: uuid.UUID) -> None:
    body = bet(player)
    response = await api.http.post(
        PATH, content=body, headers=signed(api, body, path="/v1/wallet/win")
    )
    assert (response.status_code, response.json()["error"]["code"]) == (401, "bad_signature")


async def test_an_unknown_client_is_refused_like_a_bad_signature(
    api: Api, player: uuid.UUID
) -> None:
    body = bet(player)
    headers = signed(api, body) | {"X-Client-Id": "nobody"}
    response = await api.http.post(PATH, content=body, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "bad_signature")


# A second may tick between signing and checking, which takes a second off a timestamp's lead
# into the future: 301 s ahead could arrive as 300 and pass. 302 ahead is 301 or 302 when checked.
@pytest.mark.parametrize(
    ("skew", "accepted"), [(-301, False), (302, False), (-299, True), (299, True)]
)
async def test_the_timestamp_window_is_300_seconds_both_ways(
    api: Api, player: uuid.UUID, skew: int, accepted: bool
) -> None:
    body = bet(player)
    headers = signed(api, body, timestamp=int(time.time()) + skew)
    response = await api.http.post(PATH, content=body, headers=headers)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert (response.status_code, response.json()["error"]["code"]) == (
            401,
            "timestamp_out_of_window",
        )
        assert await factories.balance(api, player) == "100.00"


@pytest.mark.parametrize("nonce", ["short", "has space in it!!", "x" * 65])
async def test_a_malformed_nonce_is_refused(api: Api, player: uuid.UUID, nonce: str) -> None:
    body = bet(player)
    response = await api.http.post(PATH, content=body, headers=signed(api, body, nonce=nonce))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "bad_nonce")


async def test_a_replayed_request_is_refused_and_changes_nothing(
    api: Api, player: uuid.UUID
) -> None:
    body = bet(player)
    headers = signed(api, body)
    first = await api.http.post(PATH, content=body, headers=headers)
    assert first.status_code == 200
    replay = await api.http.post(PATH, content=body, headers=headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (401, "nonce_reused")
    assert await factories.balance(api, player) == "90.00"


async def test_nonces_are_remembered_across_a_restart(
    api: Api,
    player: uuid.UUID,
    uows: UnitOfWorkFactory,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> None:
    body = bet(player)
    headers = signed(api, body)
    assert (await api.http.post(PATH, content=body, headers=headers)).status_code == 200
    restarted = create_app(
        settings=settings,
        uow_factory=uows,
        vault_uow_factory=vault_uows,
        vault_key_provider=vault_keys,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=restarted), base_url="http://test"
    ) as http:
        replay = await http.post(PATH, content=body, headers=headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (401, "nonce_reused")
    assert await factories.balance(api, player) == "90.00"


async def test_roles_keep_to_their_own_api(api: Api, player: uuid.UUID) -> None:
    adjustment = {
        "player_id": str(player),
        "amount": "5.00",
        "currency": "EUR",
        "direction": "credit",
        "reason": "free money",
    }
    as_provider = await api.provider.post("/v1/admin/adjustments", adjustment)
    assert (as_provider.status_code, as_provider.json()["error"]["code"]) == (403, "forbidden")
    as_operator = await api.operator.post("/v1/wallet/bet", factories.bet_body(player))
    assert (as_operator.status_code, as_operator.json()["error"]["code"]) == (403, "forbidden")
    assert await factories.balance(api, player) == "100.00"


@pytest.mark.parametrize("client_id", ["player:00000000-0000-4000-8000-000000000001", "", "a b"])
async def test_a_client_id_that_could_pass_for_a_player_scope_is_refused(
    uows: UnitOfWorkFactory, settings: Settings, client_id: str
) -> None:
    async with uows() as uow:
        with pytest.raises(InvalidRequest) as refused:
            await clients.register(
                uow,
                client_id=client_id,
                role="operator",
                display_name="x",
                provider_code=None,
                sealer=client_secrets(settings),
                ctx=CTX,
            )
    assert refused.value.code == "invalid_client_id"
    with pytest.raises(sa.exc.IntegrityError, match="ck_api_clients_client_id"):
        async with uows() as uow:  # and the database refuses it from any other path
            await uow.session.execute(
                sa.text(
                    "INSERT INTO api_clients (client_id, role, display_name, secret_sealed,"
                    " active, created_at) VALUES (:c, 'operator', 'x', 's', true, now())"
                ),
                {"c": client_id or "player:x"},
            )
