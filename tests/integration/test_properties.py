"""Random sequences of adjustments, bets, settles, rollbacks and re-deliveries keep the books.

Hypothesis drives the API from a worker thread; every call runs on the test's event loop.
After every step: the API's balances equal the model's, no wallet is negative, every ledger
transaction sums to zero, money is conserved, replays change nothing, and each account's
balance-at-now recomputed from postings equals its current balance.
"""

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import hypothesis
import sqlalchemy as sa
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from core import ledger
from core.models import Account, Balance, Posting
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api, make_api

T = TypeVar("T")
AMOUNTS = st.integers(min_value=1, max_value=5_000)  # minor units: 0.01 .. 50.00


def eur(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def call(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the test's event loop from Hypothesis' worker thread."""
    return asyncio.run_coroutine_threadsafe(coro, Books.loop).result(timeout=60)


class Books(RuleBasedStateMachine):
    """The model: each player's cash and bonus, each bet's sources, what adjustments let in."""

    bets = Bundle("bets")
    sent = Bundle("sent")
    # Set by the test: the units of work, the settings and the bridge to its event loop.
    uows: UnitOfWorkFactory
    app_settings: Settings
    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        super().__init__()
        self.api: Api = call(make_api(self.uows, self.app_settings))
        self.players = [call(self._new_player()) for _ in range(2)]
        # Both sources funded from the start, so that stakes often mix cash and bonus.
        self.cash = dict.fromkeys(self.players, 2000)
        self.bonus = dict.fromkeys(self.players, 3000)
        self.net_adjusted = 2 * 5000  # money the house let in by adjustments

    async def _new_player(self) -> uuid.UUID:
        async with self.uows() as uow:
            player_id = await factories.player(uow, cash="20.00", bonus="30.00")
            await uow.commit()
        return player_id

    def post(
        self, client: str, path: str, body: dict[str, Any], key: str | None = None
    ) -> httpx.Response:
        sender = self.api.provider if client == "provider" else self.api.operator
        return call(sender.post(path, body, idempotency_key=key))

    # -- rules --------------------------------------------------------------------------

    @rule(
        target=sent,
        player=st.integers(0, 1),
        minor=AMOUNTS,
        source=st.sampled_from(["cash", "bonus"]),
        credit=st.booleans(),
    )
    def adjust(self, player: int, minor: int, source: str, credit: bool) -> tuple[Any, ...]:
        player_id = self.players[player]
        held = (self.cash if source == "cash" else self.bonus)[player_id]
        body = {
            "player_id": str(player_id),
            "amount": eur(minor),
            "currency": "EUR",
            "direction": "credit" if credit else "debit",
            "source": source,
            "operator": "prop",
            "reason": "property test",
        }
        key = str(uuid.uuid4())
        response = self.post("operator", "/v1/admin/adjustments", body, key)
        if not credit and held < minor:
            assert response.status_code == 409, response.text
        else:
            assert response.status_code == 200, response.text
            book = self.cash if source == "cash" else self.bonus
            book[player_id] += minor if credit else -minor
            self.net_adjusted += minor if credit else -minor
        return ("operator", "/v1/admin/adjustments", body, key, response)

    @rule(target=bets, player=st.integers(0, 1), minor=AMOUNTS)
    def bet(self, player: int, minor: int) -> dict[str, Any]:
        player_id = self.players[player]
        body = factories.bet_body(player_id, eur(minor))
        response = self.post("provider", "/v1/wallet/bet", body)
        cash, bonus = self.cash[player_id], self.bonus[player_id]
        if cash + bonus < minor:
            assert response.json()["error"]["code"] == "insufficient_funds"
            return {"body": body, "status": "REFUSED"}
        assert response.status_code == 200, response.text
        from_cash = min(cash, minor)
        self.cash[player_id] -= from_cash
        self.bonus[player_id] -= minor - from_cash
        return {
            "body": body,
            "status": "OPEN",
            "stake": minor,
            "cash": from_cash,
            "bonus": minor - from_cash,
            "player": player_id,
        }

    @rule(bet=bets, choice=st.sampled_from(["lose", "push", "win"]), won=AMOUNTS)
    def settle(self, bet: dict[str, Any], choice: str, won: int) -> None:
        if bet["status"] in ("REFUSED", "TOMBSTONE"):  # never placed
            response = self.post(
                "provider", "/v1/wallet/win", factories.win_body(bet["body"], "1.00")
            )
            assert response.json()["error"]["code"] == "unknown_bet"
            return
        payout = {"lose": 0, "push": bet["stake"], "win": won}[choice]
        response = self.post(
            "provider", "/v1/wallet/win", factories.win_body(bet["body"], eur(payout))
        )
        if bet["status"] != "OPEN":
            assert response.json()["error"]["code"] == "bet_already_settled"
            return
        assert response.status_code == 200, response.text
        to_bonus = payout * bet["bonus"] // bet["stake"]  # the bonus share, rounded down
        self.cash[bet["player"]] += payout - to_bonus
        self.bonus[bet["player"]] += to_bonus
        bet["status"] = "LOSE" if payout == 0 else "PUSH" if payout == bet["stake"] else "WIN"
        assert response.json()["bet_status"] == bet["status"]

    @rule(bet=bets)
    def rollback(self, bet: dict[str, Any]) -> None:
        response = self.post(
            "provider", "/v1/wallet/rollback", factories.rollback_body(bet["body"])
        )
        if bet["status"] == "REFUSED":  # never placed: a tombstone, nothing moves
            assert response.json()["tombstone"] is True
            bet["status"] = "TOMBSTONE"
        elif bet["status"] == "OPEN":
            assert response.status_code == 200, response.text
            self.cash[bet["player"]] += bet["cash"]
            self.bonus[bet["player"]] += bet["bonus"]
            bet["status"] = "VOID"
        elif bet["status"] == "VOID":
            assert response.json()["error"]["code"] == "bet_already_rolled_back"
        elif bet["status"] == "TOMBSTONE":
            assert response.status_code == 200  # a second tombstone changes nothing
        else:
            assert response.json()["error"]["code"] == "rollback_after_settle"

    @rule(previous=sent)
    def redeliver_same_key(self, previous: tuple[Any, ...]) -> None:
        client, path, body, key, first = previous
        before = self.snapshot()
        again = self.post(client, path, body, key)
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert self.snapshot() == before

    @rule(previous=sent)
    def reuse_key_for_another_body(self, previous: tuple[Any, ...]) -> None:
        client, path, body, key, _ = previous
        before = self.snapshot()
        other = self.post(client, path, body | {"reason": "something else"}, key)
        assert (other.status_code, other.json()["error"]["code"]) == (
            422,
            "idempotency_key_reused",
        )
        assert self.snapshot() == before

    @rule(bet=consumes(bets))
    def redeliver_bet_under_new_key(self, bet: dict[str, Any]) -> None:
        if bet["status"] in ("REFUSED", "TOMBSTONE"):
            return
        before = self.snapshot()
        again = self.post("provider", "/v1/wallet/bet", bet["body"])
        assert again.status_code == 200, again.text
        assert self.snapshot() == before

    # -- invariants ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, int]:
        return call(self._balances())

    async def _balances(self) -> dict[str, int]:
        """Current balance of every account of this example, checked against its postings."""
        async with self.uows() as uow:
            codes = [f"player:{p}:{s}" for p in self.players for s in ("cash", "bonus")]
            codes.append(ledger.house_account_code("game_revenue", "EUR", self.api.provider_code))
            rows = (
                await uow.session.execute(
                    sa.select(
                        Account.id,
                        Account.code,
                        sa.select(sa.func.coalesce(sa.func.sum(Balance.balance), 0))
                        .where(Balance.account_id == Account.id)
                        .scalar_subquery(),
                        sa.select(sa.func.coalesce(sa.func.sum(Posting.amount), 0))
                        .where(Posting.account_id == Account.id, Posting.posted_at <= uow.now)
                        .scalar_subquery(),
                    ).where(Account.code.in_(codes))
                )
            ).all()
            for account_id, code, current, from_postings in rows:
                assert current == from_postings, code  # the trigger-kept balance is the postings'
                assert await ledger.balance_at(uow, account_id, uow.now) == current, code
        return dict.fromkeys(codes, 0) | {code: int(current) for _, code, current, _ in rows}

    @invariant()
    def books_agree(self) -> None:
        balances = self.snapshot()
        for player_id in self.players:
            assert balances[f"player:{player_id}:cash"] == self.cash[player_id]
            assert balances[f"player:{player_id}:bonus"] == self.bonus[player_id]
            assert self.cash[player_id] >= 0
            assert self.bonus[player_id] >= 0
        # conserved: what players and the game hold is exactly what adjustments let in
        assert sum(balances.values()) == self.net_adjusted

    @invariant()
    def every_transaction_balances(self) -> None:
        call(self._unbalanced_transactions())

    async def _unbalanced_transactions(self) -> None:
        async with self.uows() as uow:
            touched = sa.select(Posting.transaction_id).where(Posting.player_id.in_(self.players))
            unbalanced = (
                await uow.session.execute(
                    sa.select(Posting.transaction_id, Posting.currency)
                    .where(Posting.transaction_id.in_(touched))
                    .group_by(Posting.transaction_id, Posting.currency)
                    .having(sa.func.sum(Posting.amount) != 0)
                )
            ).all()
            assert unbalanced == []

    def teardown(self) -> None:
        call(self.api.http.aclose())


async def test_random_operation_sequences_keep_the_books(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    Books.uows, Books.app_settings = uows, settings
    Books.loop = asyncio.get_running_loop()
    await asyncio.to_thread(
        run_state_machine_as_test,
        Books,
        settings=hypothesis.settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
