"""Concurrent requests against real commits: one effect per business action, no deadlocks."""

import asyncio
import json
import random
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from app.signing import signed_headers
from core.models import Bet, Posting
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api

pytestmark = pytest.mark.commits


async def test_100_concurrent_stakes_against_370(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="370.00")
    responses = await asyncio.gather(
        *(
            committed_api.provider.post("/v1/wallet/bet", factories.bet_body(player_id, "10.00"))
            for _ in range(100)
        )
    )
    outcomes = Counter((r.status_code, r.json().get("error", {}).get("code")) for r in responses)
    assert outcomes == {(200, None): 37, (409, "insufficient_funds"): 63}
    assert await factories.balance(committed_api, player_id) == "0.00"
    async with committed_uows() as uow:
        bets = await uow.session.scalar(
            sa.select(sa.func.count()).select_from(Bet).where(Bet.player_id == player_id)
        )
        postings = await uow.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Posting.amount), 0)).where(
                Posting.player_id == player_id
            )
        )
    assert bets == 37
    assert postings == 0  # every stake posting has its house counterpart


async def test_20_concurrent_identical_requests_have_one_effect(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="100.00")
    body = json.dumps(factories.bet_body(player_id, "10.00")).encode()
    provider = committed_api.provider

    async def send() -> tuple[int, bytes, str | None]:
        headers = signed_headers(
            client_id=provider.client_id,
            secret=provider.secret,
            method="POST",
            path="/v1/wallet/bet",
            body=body,
        ) | {"Idempotency-Key": "same-key", "Content-Type": "application/json"}
        response = await committed_api.http.post("/v1/wallet/bet", content=body, headers=headers)
        return response.status_code, response.content, response.headers.get("Idempotent-Replayed")

    results = await asyncio.gather(*(send() for _ in range(20)))
    assert {status for status, _, _ in results} == {200}
    assert len({content for _, content, _ in results}) == 1
    assert sorted(replayed or "no" for _, _, replayed in results) == ["no"] + ["true"] * 19
    assert await factories.balance(committed_api, player_id) == "90.00"
    async with committed_uows() as uow:
        count = await uow.session.scalar(
            sa.select(sa.func.count()).select_from(Bet).where(Bet.player_id == player_id)
        )
    assert count == 1


async def test_opposite_directions_on_many_players_do_not_deadlock(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    players = [await factories.committed_player(committed_uows, cash="100.00") for _ in range(20)]
    open_bets = []
    for player_id in players:  # a standing open bet per player, to win or roll back later
        bet = factories.bet_body(player_id, "5.00")
        assert (await committed_api.provider.post("/v1/wallet/bet", bet)).status_code == 200
        open_bets.append(bet)

    rng = random.Random(7)  # noqa: S311 - a reproducible shuffle, not a secret
    calls = []
    for player_id, bet in zip(players, open_bets, strict=True):
        settle = (
            ("/v1/wallet/win", factories.win_body(bet, "7.50"))
            if rng.random() < 0.5
            else ("/v1/wallet/rollback", factories.rollback_body(bet))
        )
        calls.append((committed_api.provider, *settle))
        calls += [
            (committed_api.provider, "/v1/wallet/bet", factories.bet_body(player_id, "1.00"))
            for _ in range(4)
        ]
        calls += [
            (
                committed_api.operator,
                "/v1/admin/adjustments",
                {
                    "player_id": str(player_id),
                    "amount": "2.00",
                    "currency": "EUR",
                    "direction": direction,
                    "operator": "ops",
                    "reason": "load",
                },
            )
            for direction in ("credit", "debit")
        ]
    rng.shuffle(calls)
    responses = await asyncio.gather(*(client.post(path, body) for client, path, body in calls))
    assert [r.status_code for r in responses] == [200] * len(calls), [
        r.text for r in responses if r.status_code != 200
    ]
    async with committed_uows() as uow:
        total = await uow.session.scalar(
            sa.select(sa.func.sum(Posting.amount)).where(Posting.player_id.in_(players))
        )
    assert total == 0  # every transaction of these players balanced against the house


async def test_a_refusal_stays_a_refusal_under_its_key(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="5.00")
    bet = factories.bet_body(player_id, "10.00")
    first = await committed_api.provider.post("/v1/wallet/bet", bet, idempotency_key="k-poor")
    assert first.status_code == 409
    top_up = {
        "player_id": str(player_id),
        "amount": "100.00",
        "currency": "EUR",
        "direction": "credit",
        "operator": "ops",
        "reason": "top-up",
    }
    assert (await committed_api.operator.post("/v1/admin/adjustments", top_up)).status_code == 200
    again = await committed_api.provider.post("/v1/wallet/bet", bet, idempotency_key="k-poor")
    assert (again.status_code, again.json()) == (409, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await factories.balance(committed_api, player_id) == "105.00"


async def test_two_players_racing_for_one_round_id_get_a_clear_answer(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    first, second = (
        await factories.committed_player(committed_uows, cash="10.00"),
        await factories.committed_player(committed_uows, cash="10.00"),
    )
    round_id = f"r-{uuid.uuid4().hex[:10]}"
    responses = await asyncio.gather(
        *(
            committed_api.provider.post(
                "/v1/wallet/bet", factories.bet_body(p, "1.00", round_id=round_id)
            )
            for p in (first, second)
        )
    )
    codes = sorted((r.status_code, r.json().get("error", {}).get("code")) for r in responses)
    assert codes[0] == (200, None)
    assert codes[1] in {(409, "round_mismatch"), (409, "concurrent_conflict")}
