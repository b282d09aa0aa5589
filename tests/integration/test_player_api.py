"""The player's own API: tokens minted by an operator, every way a token is refused, and what
a player can see and change, always only their own."""

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given
from hypothesis.errors import Unsatisfiable
from joserfc import jwt
from joserfc.jwk import OKPKey
from schemathesis import GenerationMode

from compliance.helplines import contacts_for
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from policies import decisions, registry
from tests import factories
from tests.conftest import CTX, ROOT, Api, Clock

BASE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHIPPED = "2026-11-v1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings, with a player token key of this test's own."""
    return Settings(
        data_dir=ROOT / "var",
        player_token_key_file=tmp_path / "secrets" / "player-token-key",
        client_secrets_key_file=tmp_path / "secrets" / "client-secrets-key",
    )


async def mint(api: Api, player: uuid.UUID) -> str:
    response = await api.operator.post(f"/v1/admin/players/{player}/session", {})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def standing(api: Api, token: str) -> httpx.Response:
    return await api.http.get("/v1/me/responsible-gambling", headers=bearer(token))


async def change(
    api: Api, token: str, path: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = bearer(token) | {"Idempotency-Key": key or str(uuid.uuid4())}
    return await api.http.post(f"/v1/me/{path}", json=body, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "==")),
        json.loads(base64.urlsafe_b64decode(payload + "==")),
    )


def claims(player: uuid.UUID, at: datetime, **changes: object) -> dict[str, object]:
    now = int(at.timestamp())
    issued = {
        "iss": "pitwarden",
        "aud": "pitwarden-player",
        "sub": str(player),
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    return {k: v for k, v in (issued | changes).items() if v is not None}


def our_key(settings: Settings) -> OKPKey:
    assert settings.player_token_key_file is not None
    return OKPKey.import_key(json.loads(settings.player_token_key_file.read_text()))


def signed(key: OKPKey, body: dict[str, object]) -> str:
    return jwt.encode({"alg": "Ed25519"}, body, key, algorithms=["Ed25519"])


def hand_made(alg: str, body: dict[str, object], secret: bytes | None) -> str:
    """A token no JOSE library would make for us: alg none, or HMAC under a chosen secret."""
    signing_input = (
        f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(body).encode())}"
    )
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    return (
        response.status_code,
        response.json()["error"]["code"],
        response.headers.get("WWW-Authenticate", ""),
    )


INVALID = (401, "invalid_token", 'Bearer realm="pitwarden", error="invalid_token"')


async def test_an_operator_mints_a_15_minute_token_for_one_player(
    api: Api, uows: UnitOfWorkFactory, clock: Clock, settings: Settings
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="50.00")
    response = await api.operator.post(f"/v1/admin/players/{player}/session", {})
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert datetime.fromisoformat(response.json()["expires_at"]) == BASE + timedelta(minutes=15)
    header, body = unverified(token)
    assert header["alg"] == "Ed25519"
    assert (body["sub"], body["aud"], body["iss"]) == (str(player), "pitwarden-player", "pitwarden")
    assert body["exp"] - body["iat"] == 900
    assert body["nbf"] == body["iat"] == int(BASE.timestamp())

    mine = await standing(api, token)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["player_id"], mine.json()["currency"]) == (str(player), "EUR")

    key_file = settings.player_token_key_file
    assert key_file is not None
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    async with uows() as uow:
        issued = (
            await uow.session.execute(
                sa.text(
                    "SELECT envelope FROM journal_events WHERE event = 'player.token_issued'"
                    " AND player_id = :p"
                ),
                {"p": player},
            )
        ).scalar_one()
    assert issued["data"]["token_id"] == body["jti"]
    assert token not in json.dumps(issued)  # the journal never holds the token itself
    assert issued["actor"] == f"client:{api.operator.client_id}"  # a machine, for no person

    unknown = await api.operator.post(f"/v1/admin/players/{uuid.uuid4()}/session", {})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_player")
    provider = await api.provider.post(f"/v1/admin/players/{player}/session", {})
    assert (provider.status_code, provider.json()["error"]["code"]) == (403, "forbidden")


async def test_every_bad_token_is_a_401_with_a_bearer_challenge_and_changes_nothing(
    api: Api, uows: UnitOfWorkFactory, clock: Clock, settings: Settings
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows)
    await mint(api, player)  # creates the key file
    key = our_key(settings)
    public = key.public_key
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem_public = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fresh = claims(player, BASE)

    missing = await api.http.get("/v1/me/responsible-gambling")
    assert refusal(missing) == (401, "missing_auth_header", 'Bearer realm="pitwarden"')
    basic = await api.http.get(
        "/v1/me/responsible-gambling", headers={"Authorization": "Basic cGxheWVyOnB3"}
    )
    assert refusal(basic)[:2] == INVALID[:2]

    forged = {
        "garbage": "not-a-jwt",
        "three garbage parts": "a.b.c",
        "wrong audience": signed(key, claims(player, BASE, aud="pitwarden-console")),
        "no audience": signed(key, claims(player, BASE, aud=None)),
        "wrong issuer": signed(key, claims(player, BASE, iss="someone-else")),
        "no expiry": signed(key, claims(player, BASE, exp=None)),
        "not a player id": signed(key, claims(player, BASE, sub="admin")),
        "not yet valid": signed(key, claims(player, BASE + timedelta(minutes=5))),
        "another key": signed(OKPKey.generate_key("Ed25519", private=True), fresh),
        "alg none": hand_made("none", fresh, None),
        "HS256, raw public key": hand_made("HS256", fresh, raw_public),
        "HS256, PEM public key": hand_made("HS256", fresh, pem_public),
        "HS256, JWK x": hand_made("HS256", fresh, str(key.as_dict()["x"]).encode()),
        "tampered payload": ".".join(
            [
                signed(key, fresh).split(".")[0],
                b64(json.dumps(claims(uuid.uuid4(), BASE)).encode()),
                signed(key, fresh).split(".")[2],
            ]
        ),
    }
    for name, token in forged.items():
        response = await standing(api, token)
        code, error, challenge = refusal(response)
        assert (code, error) == INVALID[:2], name
        assert challenge.startswith(INVALID[2]), name
        assert set(response.json()["error"]) == {"code", "message", "details"}, name

    # The same forgeries cannot change anything either.
    for name, token in forged.items():
        response = await change(
            api, token, "limits", {"kind": "wager", "period": "24h", "amount": "1.00"}
        )
        assert response.status_code == 401, name
    assert (await standing(api, signed(key, fresh))).json()["limits"][0]["in_force"] is None
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT count(*) FROM rg_limits WHERE player_id = :p"), {"p": player}
        )
        assert rows.scalar_one() == 0


async def test_a_token_expires_after_15_minutes_give_or_take_30_seconds(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows)
    token = await mint(api, player)
    clock.now = BASE + timedelta(minutes=15, seconds=29)
    assert (await standing(api, token)).status_code == 200
    clock.now = BASE + timedelta(minutes=15, seconds=30)
    expired = await standing(api, token)
    code, error, challenge = refusal(expired)
    assert (code, error) == (401, "token_expired")
    assert challenge.startswith(INVALID[2])
    assert (await standing(api, await mint(api, player))).status_code == 200  # a new one works


async def test_a_player_lowers_a_limit_at_once_and_raises_it_after_24_hours(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    token = await mint(api, player)
    first = await change(api, token, "limits", {"kind": "wager", "period": "24h", "amount": "100"})
    assert first.status_code == 200, first.text
    assert (first.json()["immediate"], first.json()["amount"]) == (True, "100.00")
    assert "in force now" in first.json()["message"]
    raised = await change(
        api, token, "limits", {"kind": "wager", "period": "24h", "amount": "200.00"}
    )
    assert raised.json()["immediate"] is False
    assert datetime.fromisoformat(raised.json()["effective_at"]) == BASE + timedelta(hours=24)
    assert "in force on 2026-11-27T12:00:00" in raised.json()["message"]

    wager = next(s for s in (await standing(api, token)).json()["limits"] if s["kind"] == "wager")
    assert (wager["in_force"], wager["pending"]) == ("100.00", "200.00")
    assert datetime.fromisoformat(wager["pending_from"]) == BASE + timedelta(hours=24)
    async with uows() as uow:
        set_by = await uow.session.execute(
            sa.text("SELECT DISTINCT set_by FROM rg_limits WHERE player_id = :p"), {"p": player}
        )
        assert set_by.scalars().all() == [f"player:{player}"]
        actors = await uow.session.execute(
            sa.text(
                "SELECT envelope->>'actor' FROM journal_events"
                " WHERE event = 'rg.limit_requested' AND player_id = :p"
            ),
            {"p": player},
        )
        assert actors.scalars().all() == [f"player:{player}"] * 2

    clock.now = BASE + timedelta(hours=24)
    later = await mint(api, player)  # the first token expired long ago
    wager = next(s for s in (await standing(api, later)).json()["limits"] if s["kind"] == "wager")
    assert (wager["in_force"], wager["pending"]) == ("200.00", None)


async def test_a_repeated_change_with_the_same_key_acts_once(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows)
    token = await mint(api, player)
    body = {"kind": "loss", "period": "7d", "amount": "30.00"}
    once = await change(api, token, "limits", body, key="limit-1")
    again = await change(api, token, "limits", body, key="limit-1")
    assert (again.status_code, again.content) == (once.status_code, once.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await change(api, token, "limits", body | {"amount": "10.00"}, key="limit-1")
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")
    no_key = await api.http.post("/v1/me/limits", json=body, headers=bearer(token))
    assert (no_key.status_code, no_key.json()["error"]["code"]) == (400, "idempotency_key_missing")
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT count(*) FROM rg_limits WHERE player_id = :p"), {"p": player}
        )
        assert rows.scalar_one() == 1


async def test_a_player_cannot_shorten_a_self_exclusion(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows)
    token = await mint(api, player)

    async def exclude(kind: str, until: datetime | None, key: str | None = None) -> httpx.Response:
        body = {"kind": kind, "until": until.isoformat() if until else None}
        return await change(api, token, "exclusions", body, key=key)

    too_short = await exclude("time_out", BASE + timedelta(hours=23))
    assert (too_short.status_code, too_short.json()["error"]["code"]) == (422, "invalid_exclusion")
    started = await exclude("self_exclusion", BASE + timedelta(days=200))
    assert started.status_code == 200, started.text
    assert datetime.fromisoformat(started.json()["ends_at"]) == BASE + timedelta(days=200)
    shorter = await exclude("self_exclusion", BASE + timedelta(days=190), key="shorter")
    assert (shorter.status_code, shorter.json()["error"]["code"]) == (
        409,
        "exclusion_cannot_be_shortened",
    )
    retried = await exclude("self_exclusion", BASE + timedelta(days=190), key="shorter")
    assert (retried.status_code, retried.headers["Idempotent-Replayed"]) == (409, "true")
    in_force = (await standing(api, token)).json()["exclusions"]
    assert [(e["kind"], datetime.fromisoformat(e["ends_at"])) for e in in_force] == [
        ("self_exclusion", BASE + timedelta(days=200))
    ]
    async with uows() as uow:
        reason = await uow.session.execute(
            sa.text("SELECT set_by, reason FROM rg_exclusions WHERE player_id = :p"),
            {"p": player},
        )
        assert reason.one() == (f"player:{player}", "asked by the player")


async def test_the_token_alone_decides_whose_data_a_player_sees_and_changes(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    alice = await factories.committed_player(uows)
    bob = await factories.committed_player(uows, currency="USD")
    alice_token, bob_token = await mint(api, alice), await mint(api, bob)
    body = {"kind": "deposit", "period": "30d", "amount": "75.00"}
    # The same Idempotency-Key from two players: two scopes, two effects, no replay.
    for token in (alice_token, bob_token):
        response = await change(api, token, "limits", body, key="same-key")
        assert response.status_code == 200, response.text
        assert "Idempotent-Replayed" not in response.headers
    smuggled = await change(api, alice_token, "limits", body | {"player_id": str(bob)})
    assert smuggled.status_code == 422
    await change(api, alice_token, "limits", {**body, "amount": "5.00"})

    seen = await api.http.get(
        f"/v1/me/responsible-gambling?player_id={bob}", headers=bearer(alice_token)
    )
    assert seen.json()["player_id"] == str(alice)
    deposit = {(s["kind"], s["period"]): s["in_force"] for s in seen.json()["limits"]}
    assert deposit["deposit", "30d"] == "5.00"
    bobs = (await standing(api, bob_token)).json()
    assert (bobs["player_id"], bobs["currency"]) == (str(bob), "USD")
    bob_deposit = {(s["kind"], s["period"]): s["in_force"] for s in bobs["limits"]}
    assert bob_deposit["deposit", "30d"] == "75.00"
    # An operator's signature is not a player token.
    signed_get = await api.operator.get("/v1/me/responsible-gambling")
    assert refusal(signed_get)[:2] == (401, "missing_auth_header")


async def test_decisions_list_only_my_refusals_newest_first_with_reason_and_help(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    async with uows() as uow:
        player = await factories.player(uow, jurisdiction="DE")
        other = await factories.player(uow, jurisdiction="DE")
        await registry.activate(
            uow, version=SHIPPED, jurisdiction="DE", actor="cco", reason="test", ctx=CTX
        )
        await uow.commit()

    async def decide(at: timedelta, who: uuid.UUID, **facts: object) -> uuid.UUID:
        clock.now = BASE + at
        async with uows() as uow:
            taken = await decisions.decide(
                uow,
                action="bet.place",
                jurisdiction="DE",
                facts=factories.policy_facts(**facts),
                player_id=who,
                ctx=CTX,
            )
            await uow.commit()
        return taken.id

    excluded = await decide(timedelta(minutes=1), player, self_excluded=True)
    await decide(timedelta(minutes=2), player)  # allowed: not listed
    underage = await decide(timedelta(minutes=3), player, age_years=17)
    await decide(timedelta(minutes=4), other, timed_out=True)  # someone else's

    clock.now = BASE + timedelta(minutes=5)
    token = await mint(api, player)
    listed = await api.http.get("/v1/me/decisions", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    found = listed.json()["decisions"]
    assert [d["decision_id"] for d in found] == [str(underage), str(excluded)]
    assert [(d["reason_code"], d["category"]) for d in found] == [
        ("underage", "kyc"),
        ("self_excluded", "responsible_gambling"),
    ]
    assert found[1]["reason"].startswith("Your account is self-excluded")
    assert found[1]["help"] == [c.as_json() for c in contacts_for("DE")]
    assert found[1]["help"][0]["url"] == "https://www.check-dein-spiel.de"
    assert found[0]["help"] == []
    assert {d["policy_version"] for d in found} == {SHIPPED}
    assert datetime.fromisoformat(found[1]["decided_at"]) == BASE + timedelta(minutes=1)
    assert all("facts" not in d and "rule_ids" not in d for d in found)

    newest = await api.http.get("/v1/me/decisions?limit=1", headers=bearer(token))
    assert [d["reason_code"] for d in newest.json()["decisions"]] == ["underage"]
    for bad in ("0", "101", "x"):
        response = await api.http.get(f"/v1/me/decisions?limit={bad}", headers=bearer(token))
        assert (response.status_code, response.json()["error"]["code"]) == (
            422,
            "invalid_request",
        )
    nobody = await api.http.get("/v1/me/decisions", headers=bearer(await mint(api, other)))
    assert [d["reason_code"] for d in nobody.json()["decisions"]] == ["timed_out"]


async def test_the_player_api_is_documented(api: Api) -> None:
    document = (await api.http.get("/openapi.json")).json()
    paths = document["paths"]
    for path, method in (
        ("/v1/me/responsible-gambling", "get"),
        ("/v1/me/limits", "post"),
        ("/v1/me/exclusions", "post"),
        ("/v1/me/decisions", "get"),
        ("/v1/me/payments", "get"),
    ):
        operation = paths[path][method]
        assert operation["tags"] == ["player"], path
        assert operation["description"], path
        assert {"200", "401"} <= set(operation["responses"]), path
        if "parameters" in operation or "requestBody" in operation:  # a call without inputs
            assert "422" in operation["responses"], path  # cannot be invalid
        assert operation["security"] == [{"PlayerToken": []}], path
    assert "/v1/admin/players/{player_id}/session" in paths
    scheme = document["components"]["securitySchemes"]["PlayerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


async def test_no_player_request_gets_a_server_error(api: Api, uows: UnitOfWorkFactory) -> None:
    """Schemathesis over the /v1/me operations, valid and invalid, each with a valid token."""
    loop = asyncio.get_running_loop()
    player = await factories.committed_player(uows, cash="20.00")
    token = await mint(api, player)
    schema = schemathesis.openapi.from_dict(api.app.openapi())
    operations = [
        op.ok() for op in schema.get_all_operations() if op.ok().path.startswith("/v1/me/")
    ]
    assert len(operations) == 5
    failures: list[str] = []

    async def send(case: Any) -> httpx.Response:
        if case.method.upper() == "GET":
            body = b""
        elif isinstance(case.body, bytes):  # negative cases may send bytes that are not JSON
            body = case.body
        else:
            body = json.dumps(case.body).encode()
        query = {k: v for k, v in (case.query or {}).items() if v is not None}
        return await api.http.request(
            case.method.upper(),
            case.formatted_path,
            params=query,
            content=body,
            headers=bearer(token)
            | {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
        )

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=30,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = asyncio.run_coroutine_threadsafe(send(case), loop).result(60)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.text}")
                elif response.status_code >= 400:
                    assert set(response.json()["error"]) == {"code", "message", "details"}
                    assert response.status_code != 401, response.text

            try:
                await asyncio.to_thread(fuzz)
            except Unsatisfiable:  # the GET without query has nothing to make invalid
                assert mode is GenerationMode.NEGATIVE
    assert failures == []
