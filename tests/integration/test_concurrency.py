"""Concurrent requests against real commits: one effect per business action, no deadlocks.

Every test creates its own provider, operator and players, and commits for real; requests go
through the signed HTTP API in-process, concurrently with asyncio.gather (the app's pool has
30 + 30 connections, so a hundred requests also queue for connections).
"""

import asyncio
import json
import random
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.signing import signed_headers
from core import ledger
from core.models import Account, Bet, JournalEvent, LedgerTransaction, Posting
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api

pytestmark = pytest.mark.commits

SHARED_HOUSE = (
    ledger.house_account_code("manual_adjustment", "EUR"),
    ledger.house_account_code("bonus_liability", "EUR"),
)


def eur(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def error_code(response: httpx.Response) -> str | None:
    error = response.json().get("error")
    return error["code"] if error else None


async def balances(uows: UnitOfWorkFactory, codes: list[str]) -> dict[str, int]:
    """Current balances by account code; an account not opened yet holds zero."""
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.select(Account.code, Account.id).where(Account.code.in_(codes))
        )
        ids = dict(rows.all())
        return {code: await ledger.balance(uow, ids[code]) if code in ids else 0 for code in codes}


async def count(uows: UnitOfWorkFactory, statement: sa.Select[Any]) -> int:
    async with uows() as uow:
        return int(await uow.session.scalar(statement) or 0)


def stake_transactions(player_id: uuid.UUID) -> sa.Select[Any]:
    return (
        sa.select(sa.func.count())
        .select_from(LedgerTransaction)
        .where(LedgerTransaction.player_id == player_id, LedgerTransaction.kind == "stake")
    )


def bets_of(player_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(Bet).where(Bet.player_id == player_id)


def unbalanced_transactions(players: list[uuid.UUID]) -> sa.Select[Any]:
    per_transaction = (
        sa.select(Posting.transaction_id)
        .join(LedgerTransaction, LedgerTransaction.id == Posting.transaction_id)
        .where(LedgerTransaction.player_id.in_(players))
        .group_by(Posting.transaction_id, Posting.currency)
        .having(sa.or_(sa.func.sum(Posting.amount) != 0, sa.func.count() < 2))
        .subquery()
    )
    return sa.select(sa.func.count()).select_from(per_transaction)


async def send_raw(api: Api, path: str, body: bytes, key: str) -> httpx.Response:
    """The same body bytes under one key, signed afresh (its own nonce) for every delivery."""
    provider = api.provider
    headers = signed_headers(
        client_id=provider.client_id, secret=provider.secret, method="POST", path=path, body=body
    ) | {"Idempotency-Key": key, "Content-Type": "application/json"}
    return await api.http.post(path, content=body, headers=headers)


async def test_100_concurrent_stakes_of_10_against_370_leave_exactly_0(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="370.00")
    responses = await asyncio.gather(
        *(
            committed_api.provider.post("/v1/wallet/bet", factories.bet_body(player_id, "10.00"))
            for _ in range(100)
        )
    )
    outcomes = Counter((r.status_code, error_code(r)) for r in responses)
    assert outcomes == {(200, None): 37, (409, "insufficient_funds"): 63}
    accepted = [r.json() for r in responses if r.status_code == 200]
    # Each accepted stake saw exactly what the one before it left: 360.00, 350.00, ... 0.00.
    assert sorted(a["balance"] for a in accepted) == sorted(eur(1000 * k) for k in range(37))
    assert len({a["ledger_transaction_id"] for a in accepted}) == 37
    refusals = [r.json()["error"]["details"] for r in responses if r.status_code == 409]
    assert {(d["needed"], d["available"]) for d in refusals} == {("10.00", "0.00")}

    assert (await factories.wallet(committed_api, player_id))["balance"] == "0.00"
    assert await count(committed_uows, bets_of(player_id)) == 37
    assert await count(committed_uows, stake_transactions(player_id)) == 37
    assert await count(committed_uows, unbalanced_transactions([player_id])) == 0
    revenue = ledger.house_account_code("game_revenue", "EUR", committed_api.provider_code)
    assert await balances(committed_uows, [revenue]) == {revenue: 37_000}


async def test_20_concurrent_identical_requests_under_one_key_have_one_effect(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="100.00")
    body = json.dumps(factories.bet_body(player_id, "10.00")).encode()
    key = f"one-key-{uuid.uuid4()}"
    responses = await asyncio.gather(
        *(send_raw(committed_api, "/v1/wallet/bet", body, key) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # identical bodies, byte for byte
    replayed = sorted(r.headers.get("Idempotent-Replayed", "no") for r in responses)
    assert replayed == ["no"] + ["true"] * 19
    answer = responses[0].json()
    assert (answer["bet_status"], answer["balance"]) == ("OPEN", "90.00")

    assert (await factories.wallet(committed_api, player_id))["balance"] == "90.00"
    assert await count(committed_uows, bets_of(player_id)) == 1
    assert await count(committed_uows, stake_transactions(player_id)) == 1
    placed = (
        sa.select(sa.func.count())
        .select_from(JournalEvent)
        .where(JournalEvent.player_id == player_id, JournalEvent.event == "bet.placed")
    )
    assert await count(committed_uows, placed) == 1


async def test_20_concurrent_identical_refusals_under_one_key_answer_alike(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="5.00")
    body = json.dumps(factories.bet_body(player_id, "10.00")).encode()
    key = f"one-key-{uuid.uuid4()}"
    responses = await asyncio.gather(
        *(send_raw(committed_api, "/v1/wallet/bet", body, key) for _ in range(20))
    )
    assert {(r.status_code, error_code(r)) for r in responses} == {(409, "insufficient_funds")}
    assert len({r.content for r in responses}) == 1
    replayed = sorted(r.headers.get("Idempotent-Replayed", "no") for r in responses)
    assert replayed == ["no"] + ["true"] * 19
    assert (await factories.wallet(committed_api, player_id))["balance"] == "5.00"
    assert await count(committed_uows, bets_of(player_id)) == 0


async def test_20_concurrent_deliveries_of_one_transaction_uuid_have_one_effect(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    """The provider retries one bet under fresh keys: the transaction_uuid makes it one bet."""
    player_id = await factories.committed_player(committed_uows, cash="100.00")
    bet = factories.bet_body(player_id, "10.00")
    responses = await asyncio.gather(
        *(committed_api.provider.post("/v1/wallet/bet", bet) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert len({r.json()["ledger_transaction_id"] for r in responses}) == 1
    assert {r.json()["transaction_uuid"] for r in responses} == {bet["transaction_uuid"]}
    assert (await factories.wallet(committed_api, player_id))["balance"] == "90.00"
    assert await count(committed_uows, bets_of(player_id)) == 1
    assert await count(committed_uows, stake_transactions(player_id)) == 1


async def test_opposite_directions_on_many_players_do_not_deadlock(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    """Stakes, payouts, refunds, credits and debits, cash and bonus, all interleaved.

    Each crosses the player's rows and the shared house rows in its own direction; none may
    deadlock (PostgreSQL's deadlock_detected would surface as a 500 or a 409
    concurrent_conflict), every one must succeed, and the money must add up.
    """
    revenue = ledger.house_account_code("game_revenue", "EUR", committed_api.provider_code)
    touched = [revenue, *SHARED_HOUSE]
    before = await balances(committed_uows, touched)
    players = [
        await factories.committed_player(committed_uows, cash="100.00", bonus="10.00")
        for _ in range(20)
    ]
    provider, operator = committed_api.provider, committed_api.operator
    calls: list[tuple[Any, str, dict[str, Any]]] = []
    for player_id in players:
        to_win, to_void = (factories.bet_body(player_id, "5.00") for _ in range(2))
        for standing in (to_win, to_void):  # standing open bets, settled in the melee
            assert (await provider.post("/v1/wallet/bet", standing)).status_code == 200
        calls += [
            (provider, "/v1/wallet/win", factories.win_body(to_win, "7.50")),
            (provider, "/v1/wallet/rollback", factories.rollback_body(to_void)),
        ]
        calls += [
            (provider, "/v1/wallet/bet", factories.bet_body(player_id, "1.00")) for _ in range(4)
        ]
        calls += [
            (
                operator,
                "/v1/admin/adjustments",
                {
                    "player_id": str(player_id),
                    "amount": amount,
                    "currency": "EUR",
                    "direction": direction,
                    "source": source,
                    "reason": "load",
                },
            )
            for direction, source, amount in (
                ("credit", "cash", "2.00"),
                ("debit", "cash", "2.00"),
                ("credit", "bonus", "3.00"),
                ("debit", "bonus", "1.00"),
            )
        ]
    random.Random(7).shuffle(calls)  # noqa: S311 - a reproducible interleaving, not a secret
    assert len(calls) == 200
    responses = await asyncio.gather(*(client.post(path, body) for client, path, body in calls))
    failures = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert failures == []

    for player_id in players:
        # cash: 100 - 5 - 5 + 7.50 (win) + 5 (refund) - 4 x 1 + 2 - 2; bonus: 10 + 3 - 1
        got = await factories.wallet(committed_api, player_id)
        assert (got["cash"], got["bonus"]) == ("98.50", "12.00")
    after = await balances(committed_uows, touched)
    assert after[revenue] - before[revenue] == 20 * 150  # stakes 14 - payout 7.50 - refund 5
    # Conserved over every touched account: players + revenue + shared house changes.
    held = 20 * (9_850 + 1_200)
    assert held + sum(after[c] - before[c] for c in touched) == 0
    assert await count(committed_uows, unbalanced_transactions(players)) == 0


async def test_a_refusal_stays_a_refusal_under_its_key(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(committed_uows, cash="5.00")
    bet = factories.bet_body(player_id, "10.00")
    key = f"poor-{uuid.uuid4()}"
    first = await committed_api.provider.post("/v1/wallet/bet", bet, idempotency_key=key)
    assert (first.status_code, error_code(first)) == (409, "insufficient_funds")
    top_up = {
        "player_id": str(player_id),
        "amount": "100.00",
        "currency": "EUR",
        "direction": "credit",
        "reason": "top-up",
    }
    assert (await committed_api.operator.post("/v1/admin/adjustments", top_up)).status_code == 200
    assert (await factories.wallet(committed_api, player_id))["balance"] == "105.00"

    again = await committed_api.provider.post("/v1/wallet/bet", bet, idempotency_key=key)
    assert (again.status_code, again.content) == (409, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await factories.wallet(committed_api, player_id))["balance"] == "105.00"
    assert await count(committed_uows, bets_of(player_id)) == 0
    assert await count(committed_uows, stake_transactions(player_id)) == 0


async def test_a_win_racing_a_rollback_of_the_same_bet_has_one_winner(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    players = [await factories.committed_player(committed_uows, cash="10.00") for _ in range(10)]
    bets = [factories.bet_body(player_id, "4.00") for player_id in players]
    for bet in bets:
        assert (await committed_api.provider.post("/v1/wallet/bet", bet)).status_code == 200
    races = await asyncio.gather(
        *(
            asyncio.gather(
                committed_api.provider.post("/v1/wallet/win", factories.win_body(bet, "9.00")),
                committed_api.provider.post("/v1/wallet/rollback", factories.rollback_body(bet)),
            )
            for bet in bets
        )
    )
    for player_id, (win, rollback) in zip(players, races, strict=True):
        outcome = (win.status_code, error_code(win), rollback.status_code, error_code(rollback))
        balance = (await factories.wallet(committed_api, player_id))["balance"]
        if win.status_code == 200:  # paid first: the rollback comes too late
            assert outcome == (200, None, 409, "rollback_after_settle")
            assert balance == "15.00"
        else:  # voided first: the win finds no open bet
            assert outcome == (409, "bet_already_settled", 200, None)
            assert balance == "10.00"
    assert await count(committed_uows, unbalanced_transactions(players)) == 0


async def test_a_bet_racing_its_own_rollback_ends_with_the_stake_home(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    """Rollback first: a tombstone, and the bet is refused. Bet first: it is voided."""
    players = [await factories.committed_player(committed_uows, cash="10.00") for _ in range(10)]
    bets = [factories.bet_body(player_id, "4.00") for player_id in players]
    races = await asyncio.gather(
        *(
            asyncio.gather(
                committed_api.provider.post("/v1/wallet/bet", bet),
                committed_api.provider.post("/v1/wallet/rollback", factories.rollback_body(bet)),
            )
            for bet in bets
        )
    )
    for player_id, (placed, rollback) in zip(players, races, strict=True):
        assert rollback.status_code == 200, rollback.text
        if placed.status_code == 200:  # the bet came first: the rollback voids it
            assert rollback.json()["tombstone"] is False
            assert rollback.json()["ledger_transaction_id"] is not None
            assert await count(committed_uows, bets_of(player_id)) == 1
        else:  # the rollback came first: a tombstone, and the late bet is refused
            assert (placed.status_code, error_code(placed)) == (409, "bet_rolled_back")
            assert rollback.json()["tombstone"] is True
            assert await count(committed_uows, bets_of(player_id)) == 0
        assert rollback.json()["bet_status"] == "VOID"
        assert (await factories.wallet(committed_api, player_id))["balance"] == "10.00"
    assert await count(committed_uows, unbalanced_transactions(players)) == 0


async def test_a_new_providers_first_stakes_arrive_all_at_once(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    """Its revenue account opens on first use, while twenty players stake concurrently."""
    players = [await factories.committed_player(committed_uows, cash="10.00") for _ in range(20)]
    revenue = ledger.house_account_code("game_revenue", "EUR", committed_api.provider_code)
    assert await balances(committed_uows, [revenue]) == {revenue: 0}  # not opened yet
    responses = await asyncio.gather(
        *(
            committed_api.provider.post("/v1/wallet/bet", factories.bet_body(p, "1.50"))
            for p in players
        )
    )
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert await balances(committed_uows, [revenue]) == {revenue: 20 * 150}
    async with committed_uows() as uow:
        opened = await uow.session.scalar(
            sa.select(sa.func.count()).select_from(Account).where(Account.code == revenue)
        )
    assert opened == 1


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
    codes = sorted((r.status_code, error_code(r)) for r in responses)
    assert codes[0] == (200, None)
    assert codes[1] in {(409, "round_mismatch"), (409, "concurrent_conflict")}
    balances_after = sorted(
        [(await factories.wallet(committed_api, p))["balance"] for p in (first, second)]
    )
    assert balances_after == ["10.00", "9.00"]
