"""A refusal that may lift (a zone switched off) is not an Idempotency-Key's final answer: it
says Retry-After, and the same request under the same key acts once the zone is back on. A
refusal that holds is still replayed byte for byte."""

import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api


async def switch(api: Api, zone: str, *, off: bool) -> None:
    response = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": zone, "off": off, "reason": "PSP incident" if off else "resolved"},
    )
    assert response.status_code == 200, response.text


async def decisions_of(uows: UnitOfWorkFactory, player_id: uuid.UUID) -> list[tuple[str, str]]:
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT action, effect || ':' || reason_code FROM policy_decisions"
                " WHERE player_id = :p AND action LIKE 'bet.%' ORDER BY decided_at, effect DESC"
            ),
            {"p": player_id},
        )
    return [(action, outcome) for action, outcome in rows]


def error_code(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body["error"]["code"])


async def test_a_win_refused_while_settlement_is_off_is_paid_on_retry_with_the_same_key(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="20.00")
    bet = factories.bet_body(player_id, "10.00")
    assert (await api.provider.post("/v1/wallet/bet", bet)).status_code == 200
    win = factories.win_body(bet, "25.00")

    await switch(api, "settlement", off=True)
    refused = await api.provider.post("/v1/wallet/win", win, idempotency_key="win-1")
    assert (refused.status_code, error_code(refused)) == (403, "zone_off")
    assert refused.headers["Retry-After"] == "30"
    assert "Idempotent-Replayed" not in refused.headers
    assert await factories.balance(api, player_id) == "10.00"

    again = await api.provider.post("/v1/wallet/win", win, idempotency_key="win-1")
    assert (again.status_code, error_code(again)) == (403, "zone_off")  # still off: acted again
    assert "Idempotent-Replayed" not in again.headers

    await switch(api, "settlement", off=False)
    paid = await api.provider.post("/v1/wallet/win", win, idempotency_key="win-1")
    assert paid.status_code == 200, paid.text
    assert "Idempotent-Replayed" not in paid.headers
    assert paid.json()["bet_status"] == "WIN"
    assert await factories.balance(api, player_id) == "35.00"

    replay = await api.provider.post("/v1/wallet/win", win, idempotency_key="win-1")
    assert (replay.status_code, replay.content) == (200, paid.content)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Retry-After" not in replay.headers
    assert await decisions_of(uows, player_id) == [
        ("bet.place", "allow:ok"),
        ("bet.settle", "deny:zone_off"),
        ("bet.settle", "deny:zone_off"),
        ("bet.settle", "allow:ok"),
    ]


async def test_insufficient_funds_is_still_the_keys_answer(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="5.00")
    bet = factories.bet_body(player_id, "10.00")
    refused = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="poor")
    assert (refused.status_code, error_code(refused)) == (409, "insufficient_funds")
    assert "Retry-After" not in refused.headers
    replay = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="poor")
    assert (replay.status_code, replay.content) == (409, refused.content)
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_a_self_excluded_players_refused_bet_is_replayed_byte_for_byte(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="50.00")
    excluded = await api.operator.post(
        f"/v1/admin/players/{player_id}/exclusions",
        {"kind": "self_exclusion", "until": None, "reason": "asked"},
    )
    assert excluded.status_code == 200, excluded.text
    bet = factories.bet_body(player_id, "10.00")
    refused = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="excluded")
    assert (refused.status_code, error_code(refused)) == (403, "self_excluded")
    assert "Retry-After" not in refused.headers
    replay = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="excluded")
    assert (replay.status_code, replay.content) == (403, refused.content)
    assert replay.headers["Idempotent-Replayed"] == "true"
    # Decided once: the replay is the stored answer, not a second decision.
    assert await decisions_of(uows, player_id) == [("bet.place", "deny:self_excluded")]
