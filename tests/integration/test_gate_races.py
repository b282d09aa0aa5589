"""The gate at its limits, under real commits: concurrent stakes cannot both slip under a limit.

Every test creates its own provider, operator and player, commits for real and fires its
requests through the signed HTTP API in-process with asyncio.gather, as test_concurrency.py does.
The decision is taken under the player's wallet lock, so stakes of one player are decided one
after the other, each on the usage the ones before it committed.
"""

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from core import ledger
from core.models import Bet, JournalEvent, LedgerTransaction
from core.uow import UnitOfWorkFactory
from policies.models import PolicyDecision
from tests import factories
from tests.conftest import Api

pytestmark = pytest.mark.commits
STREAM = 40


def error_code(response: httpx.Response) -> str | None:
    error = response.json().get("error")
    return error["code"] if error else None


async def set_limit(api: Api, player_id: uuid.UUID, kind: str, amount: str) -> None:
    response = await api.operator.post(
        f"/v1/admin/players/{player_id}/limits",
        {"kind": kind, "period": "24h", "amount": amount},
    )
    assert response.status_code == 200, response.text
    assert response.json()["immediate"] is True  # a first limit is in force at once


async def bet_decisions(uows: UnitOfWorkFactory, player_id: uuid.UUID) -> Counter[tuple[str, str]]:
    """The player's stored bet.place decisions, counted by (effect, reason code)."""
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.select(PolicyDecision.effect, PolicyDecision.reason_code).where(
                PolicyDecision.player_id == player_id, PolicyDecision.action == "bet.place"
            )
        )
        return Counter((effect, reason) for effect, reason in rows.all())


async def stakes(uows: UnitOfWorkFactory, player_id: uuid.UUID) -> list[int]:
    """The stake of every bet the player has on the books, in cents."""
    async with uows() as uow:
        rows = await uow.session.scalars(sa.select(Bet.stake).where(Bet.player_id == player_id))
        return sorted(rows.all())


async def stake_transactions(uows: UnitOfWorkFactory, player_id: uuid.UUID) -> int:
    async with uows() as uow:
        found = await uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.player_id == player_id, LedgerTransaction.kind == "stake")
        )
        return int(found or 0)


async def journal_count(uows: UnitOfWorkFactory, player_id: uuid.UUID, event: str) -> int:
    async with uows() as uow:
        found = await uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(JournalEvent)
            .where(JournalEvent.player_id == player_id, JournalEvent.event == event)
        )
        return int(found or 0)


async def revenue_balance(uows: UnitOfWorkFactory, api: Api) -> int:
    code = ledger.house_account_code("game_revenue", "EUR", api.provider_code)
    async with uows() as uow:
        account = await ledger.account_by_code(uow, code)
        return await ledger.balance(uow, account.id)


@pytest.mark.parametrize(
    ("kind", "reason_code"),
    [("wager", "wager_limit_24h"), ("loss", "loss_limit_24h")],
)
async def test_20_concurrent_stakes_of_5_against_a_24h_limit_of_50_accept_exactly_10(
    committed_api: Api, committed_uows: UnitOfWorkFactory, kind: str, reason_code: str
) -> None:
    """Cash for 40 stakes, room under the limit for 10: exactly 10 pass, whatever the order."""
    player_id = await factories.committed_player(committed_uows, cash="200.00")
    await set_limit(committed_api, player_id, kind, "50.00")

    responses = await asyncio.gather(
        *(
            committed_api.provider.post("/v1/wallet/bet", factories.bet_body(player_id, "5.00"))
            for _ in range(20)
        )
    )

    outcomes = Counter((r.status_code, error_code(r)) for r in responses)
    assert outcomes == {(200, None): 10, (403, reason_code): 10}, [r.text for r in responses]
    accepted = [r.json() for r in responses if r.status_code == 200]
    # Each accepted stake saw exactly what the one before it left: 195.00, 190.00, ... 150.00.
    assert sorted(a["balance"] for a in accepted) == [f"{150 + 5 * k}.00" for k in range(10)]
    refusals = [r.json()["error"]["details"] for r in responses if r.status_code == 403]
    assert {d["rule_ids"][0] for d in refusals} == {f"deny-bet-place-{kind}-limit-24h"}
    assert {d["category"] for d in refusals} == {"responsible_gambling"}
    assert all(d["help"] for d in refusals)  # RG refusals say where to find help
    refused_ids = {d["decision_id"] for d in refusals}
    assert len(refused_ids) == 10

    assert await stakes(committed_uows, player_id) == [500] * 10  # sum 50.00: on the limit
    assert await stake_transactions(committed_uows, player_id) == 10
    assert (await factories.wallet(committed_api, player_id))["balance"] == "150.00"
    assert await revenue_balance(committed_uows, committed_api) == 5_000
    assert await bet_decisions(committed_uows, player_id) == {
        ("allow", "ok"): 10,
        ("deny", reason_code): 10,
    }
    async with committed_uows() as uow:  # the refusals' ids are the stored denials
        denied = await uow.session.scalars(
            sa.select(PolicyDecision.id).where(
                PolicyDecision.player_id == player_id, PolicyDecision.effect == "deny"
            )
        )
        assert {str(i) for i in denied.all()} == refused_ids

    # The limit stays reached: one more stake, even of one cent, is refused.
    late = await committed_api.provider.post(
        "/v1/wallet/bet", factories.bet_body(player_id, "0.01")
    )
    assert (late.status_code, error_code(late)) == (403, reason_code)


async def test_a_settled_win_gives_loss_limit_room_back_but_not_wager_limit_room(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    """The two limits differ: a payout lowers the loss used, never the wager used."""
    loser = await factories.committed_player(committed_uows, cash="200.00")
    winner = await factories.committed_player(committed_uows, cash="200.00")
    await set_limit(committed_api, loser, "wager", "50.00")
    await set_limit(committed_api, winner, "loss", "50.00")
    provider = committed_api.provider
    for player_id in (loser, winner):
        placed = [factories.bet_body(player_id, "5.00") for _ in range(10)]
        for bet in placed:
            assert (await provider.post("/v1/wallet/bet", bet)).status_code == 200
        paid = await provider.post("/v1/wallet/win", factories.win_body(placed[0], "10.00"))
        assert paid.status_code == 200, paid.text

    responses = await asyncio.gather(
        *(
            provider.post("/v1/wallet/bet", factories.bet_body(player_id, "5.00"))
            for player_id in (loser, winner)
            for _ in range(5)
        )
    )
    on_wager_limit = Counter((r.status_code, error_code(r)) for r in responses[:5])
    on_loss_limit = Counter((r.status_code, error_code(r)) for r in responses[5:])
    assert on_wager_limit == {(403, "wager_limit_24h"): 5}
    # loss used: 10 x 5.00 - 10.00 paid = 40.00, so two more stakes of 5.00 fit under 50.00.
    assert on_loss_limit == {(200, None): 2, (403, "loss_limit_24h"): 3}
    assert (await factories.wallet(committed_api, winner))["balance"] == "150.00"


@dataclass(frozen=True)
class Sent:
    """A response, and when (event-loop monotonic time) its request went out and came back."""

    response: httpx.Response
    sent: float
    answered: float


async def timed(after_s: float, request: Callable[[], Awaitable[httpx.Response]]) -> Sent:
    if after_s:  # a burst goes out without yielding first: the order of the calls holds
        await asyncio.sleep(after_s)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    response = await request()
    return Sent(response, sent, loop.time())


@pytest.mark.parametrize("spacing_s", [0, 0.005], ids=["burst", "stream"])
async def test_a_time_out_set_during_a_burst_of_stakes_stops_every_later_stake(
    committed_api: Api, committed_uows: UnitOfWorkFactory, spacing_s: float
) -> None:
    """No stake placed at or after the time-out's start is accepted, and the books add up.

    burst: all requests at once, the time-out in the middle of them; stream: a stake every
    5 ms, the time-out sent while they flow.
    """
    player_id = await factories.committed_player(committed_uows, cash="500.00")
    until = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    provider, operator = committed_api.provider, committed_api.operator

    def stake() -> Awaitable[httpx.Response]:
        return provider.post("/v1/wallet/bet", factories.bet_body(player_id, "5.00"))

    def time_out() -> Awaitable[httpx.Response]:
        return operator.post(
            f"/v1/admin/players/{player_id}/exclusions",
            {"kind": "time_out", "until": until, "reason": "asked by phone"},
        )

    middle = STREAM // 2
    calls = [timed(spacing_s * i, stake) for i in range(STREAM)]
    calls.insert(middle, timed(spacing_s * middle, time_out))
    bets = await asyncio.gather(*calls)
    excluded = bets.pop(middle)
    assert excluded.response.status_code == 200, excluded.response.text
    starts_at = datetime.fromisoformat(excluded.response.json()["starts_at"])

    outcomes = Counter((b.response.status_code, error_code(b.response)) for b in bets)
    assert set(outcomes) <= {(200, None), (403, "timed_out")}, [b.response.text for b in bets]
    accepted, refused = outcomes[200, None], outcomes[403, "timed_out"]
    assert accepted + refused == STREAM
    # What the operator notices: once the time-out is confirmed, no stake passes.
    late = [b for b in bets if b.sent > excluded.answered]
    assert all(b.response.status_code == 403 for b in late)

    async with committed_uows() as uow:
        placed_at = (
            await uow.session.scalars(sa.select(Bet.placed_at).where(Bet.player_id == player_id))
        ).all()
    # What the player and a regulator check on the books: nothing staked at or after the
    # instant the time-out started.
    assert sorted(p for p in placed_at if p >= starts_at) == []
    assert len(placed_at) == accepted
    expected_decisions = {("allow", "ok"): accepted, ("deny", "timed_out"): refused}
    assert await bet_decisions(committed_uows, player_id) == +Counter(expected_decisions)
    assert await stake_transactions(committed_uows, player_id) == accepted
    assert await journal_count(committed_uows, player_id, "bet.placed") == accepted
    left = 50_000 - 500 * accepted
    wallet = await factories.wallet(committed_api, player_id)
    assert wallet["balance"] == f"{left // 100}.{left % 100:02d}"

    # The time-out stays in force: every stake after the melee is refused.
    after = await asyncio.gather(*(stake() for _ in range(5)))
    assert {(r.status_code, error_code(r)) for r in after} == {(403, "timed_out")}
    assert (await factories.wallet(committed_api, player_id))["balance"] == wallet["balance"]


async def test_linked_players_staking_at_once_cannot_pass_due_diligence_together(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    """Two unverified players linked (a shared email, say) count their stakes together towards
    the due-diligence threshold (EUR 2,000): 300.00 stakes fired from both at once pass six
    times in all (1,800.00), never seven, however they interleave."""
    first = await factories.committed_player(committed_uows, cash="5000.00")
    second = await factories.committed_player(committed_uows, cash="5000.00")
    linked = await committed_api.operator.post(
        f"/v1/admin/players/{first}/links",
        {"linked_player_id": str(second), "reason": "same household"},
    )
    assert linked.status_code == 200, linked.text

    responses = await asyncio.gather(
        *(
            committed_api.provider.post("/v1/wallet/bet", factories.bet_body(player, "300.00"))
            for _ in range(6)
            for player in (first, second)
        )
    )

    outcomes = Counter((r.status_code, error_code(r)) for r in responses)
    assert outcomes == {(200, None): 6, (403, "due_diligence_required"): 6}, outcomes
    staked = await stakes(committed_uows, first) + await stakes(committed_uows, second)
    assert sum(staked) == 180_000
