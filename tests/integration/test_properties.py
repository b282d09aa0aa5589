"""Random sequences of adjustments, bets, settles, rollbacks and re-deliveries keep the books.

Hypothesis drives the signed HTTP API (real commits, so the deferred ledger triggers fire) from a
worker thread; every coroutine runs on the test's own event loop, where the session's engine
lives. Each example registers its own provider, operator and 2-3 EUR players, and keeps a model
of their cash, bonus, bets and rounds in plain ints.

After every step: the database's and the API's balances equal the model's; no player balance is
negative; every ledger transaction of the example has two or more postings summing to zero per
currency, and there are exactly as many as the model's money movements; money is conserved over
every account the example touched (its players, its provider's revenue account and the change of
the shared house accounts since the example began); each touched account's balance equals the
sum of its postings and its balance-at-now, and its balance-at-T for the instant T recorded after
the previous step equals the model as it stood then. Replays of any kind change nothing.
"""

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import hypothesis
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from compliance.vault.keys import LocalKeyFile
from core import ledger
from core.models import Account, LedgerTransaction, Posting
from core.settings import Settings
from core.uow import UnitOfWork, UnitOfWorkFactory
from tests import factories
from tests.conftest import Api, make_api

pytestmark = pytest.mark.commits

T = TypeVar("T")
Split = tuple[dict[str, int], dict[str, int]]  # exclusive balances, shared-house changes
AMOUNTS = st.integers(min_value=1, max_value=5_000)  # minor units: 0.01 .. 50.00
FUNDS = st.one_of(st.just(0), st.integers(min_value=1_000, max_value=20_000))
RARELY = st.integers(min_value=0, max_value=4).map(lambda n: n == 4)  # one time in five
PLAYER = st.integers(min_value=0, max_value=2)  # an index, taken modulo the players there are
SOURCES = ("cash", "bonus")
SHARED_HOUSE = {
    "cash": ledger.house_account_code("manual_adjustment", "EUR"),
    "bonus": ledger.house_account_code("bonus_liability", "EUR"),
}
PLACED = ("OPEN", "WIN", "LOSE", "PUSH", "VOID")
WALLET_PATHS = ("/v1/wallet/bet", "/v1/wallet/win", "/v1/wallet/rollback")


def eur(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def rfc3339(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


class TickingClock:
    """Wall time, but strictly increasing: every unit of work gets an instant of its own.

    Shared by all examples of the test, so that an instant recorded after a step lies after
    every posting written so far and before every posting written later.
    """

    def __init__(self) -> None:
        self.last = datetime.now(UTC)

    def __call__(self) -> datetime:
        self.last = max(datetime.now(UTC), self.last + timedelta(microseconds=1))
        return self.last


@dataclass(eq=False)
class BetRecord:
    """A bet as the model knows it; `status` is NOT_PLACED until the wallet accepts it."""

    body: dict[str, Any]
    player: uuid.UUID
    stake: int
    status: str = "NOT_PLACED"
    tombstoned: bool = False  # a rollback arrived while the bet was unknown
    cash: int = 0
    bonus: int = 0

    def __repr__(self) -> str:
        return f"<bet {self.body['bet_id']} {eur(self.stake)} {self.status}>"


@dataclass(eq=False)
class Sent:
    """A request as first answered: what a same-key replay must answer byte for byte."""

    client: str
    path: str
    body: dict[str, Any]
    key: str
    status: int
    content: bytes

    def __repr__(self) -> str:
        return f"<sent {self.path} {self.status} key={self.key[:8]}>"


@dataclass(eq=False)
class Done:
    """A wallet action that took effect, by its transaction_uuid."""

    path: str
    body: dict[str, Any]
    bet: BetRecord
    ledger_transaction_id: int | None
    tombstone: bool = False

    def __repr__(self) -> str:
        return f"<done {self.path} {self.body['transaction_uuid'][:8]}>"


@dataclass
class RoundState:
    player: uuid.UUID
    closed: bool = False


@dataclass
class Expected:
    """What the model holds at one instant: exclusive balances and shared-house deltas."""

    balances: dict[str, int]
    shared_delta: dict[str, int] = field(default_factory=dict)


class Bridge:
    """Set by the test: its event loop, the session's app engine, settings and the clock."""

    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    vault_engine: AsyncEngine
    vault_keys: LocalKeyFile
    settings: Settings
    clock: TickingClock


def call(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the test's event loop from Hypothesis' worker thread."""
    return asyncio.run_coroutine_threadsafe(coro, Bridge.loop).result(timeout=60)


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


class Books(RuleBasedStateMachine):
    bets = Bundle("bets")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Bridge.clock
        self.uows = UnitOfWorkFactory(
            async_sessionmaker(Bridge.engine, expire_on_commit=False), self.clock
        )
        vault_uows = UnitOfWorkFactory(
            async_sessionmaker(Bridge.vault_engine, expire_on_commit=False), self.clock
        )
        self.api: Api = call(make_api(self.uows, Bridge.settings, vault_uows, Bridge.vault_keys))
        self.revenue_code = ledger.house_account_code("game_revenue", "EUR", self.api.provider_code)
        self.players: list[uuid.UUID] = []
        self.cash: dict[uuid.UUID, int] = {}
        self.bonus: dict[uuid.UUID, int] = {}
        self.revenue = 0  # the provider's game revenue: stakes kept minus payouts and refunds
        self.adjusted = dict.fromkeys(SOURCES, 0)  # net credit by adjustments, per source
        self.movements = 0  # ledger transactions the example should have written
        self.rounds: dict[str, RoundState] = {}
        self.all_bets: list[BetRecord] = []  # the bundle's contents, for preconditions
        self.done: dict[str, Done] = {}
        self.sent: list[Sent] = []
        self.history: list[tuple[datetime, Expected]] = []
        self.ids: dict[str, int] = {}  # account ids by code, once the accounts exist
        self.wallet_checks = self.wallet_checks_before = 0
        # The shared house accounts as they stood before the example wrote anything.
        self.start = self.clock()
        self.baseline = call(self._shared_balances())

    # -- plumbing -----------------------------------------------------------------------

    def player(self, index: int) -> uuid.UUID:
        return self.players[index % len(self.players)]

    def send(
        self,
        client: str,
        path: str,
        body: dict[str, Any],
        key: str | None = None,
        *,
        remember: bool = True,
    ) -> httpx.Response:
        sender = self.api.provider if client == "provider" else self.api.operator
        key = key or str(uuid.uuid4())
        response = call(sender.post(path, body, idempotency_key=key))
        assert response.status_code < 500, response.text
        if remember:
            self.sent.append(Sent(client, path, body, key, response.status_code, response.content))
        return response

    def check_wallet(self, view: dict[str, Any], player: uuid.UUID) -> None:
        self.wallet_checks += 1
        cash, bonus = self.cash[player], self.bonus[player]
        assert (view["cash"], view["bonus"], view["balance"]) == (
            eur(cash),
            eur(bonus),
            eur(cash + bonus),
        ), (view, player)

    def expected(self) -> Expected:
        balances = {self.revenue_code: self.revenue}
        for player in self.players:
            balances[ledger.player_account_code(player, "cash")] = self.cash[player]
            balances[ledger.player_account_code(player, "bonus")] = self.bonus[player]
        return Expected(balances, {SHARED_HOUSE[s]: -self.adjusted[s] for s in SOURCES})

    # -- actions and what the model expects of them -------------------------------------

    def _adjust(self, player: uuid.UUID, minor: int, source: str, *, credit: bool) -> None:
        body = {
            "player_id": str(player),
            "amount": eur(minor),
            "currency": "EUR",
            "direction": "credit" if credit else "debit",
            "source": source,
            "reason": "property test",
        }
        response = self.send("operator", "/v1/admin/adjustments", body)
        book = self.cash if source == "cash" else self.bonus
        if not credit and book[player] < minor:
            refused(response, 409, "insufficient_funds")
            return
        assert response.status_code == 200, response.text
        book[player] += minor if credit else -minor
        self.adjusted[source] += minor if credit else -minor
        self.movements += 1
        self.check_wallet(response.json(), player)

    def _place(self, bet: BetRecord) -> None:
        """Deliver a bet the wallet has not accepted yet (first delivery or a retry)."""
        response = self.send("provider", "/v1/wallet/bet", bet.body)
        player, stake = bet.player, bet.stake
        round_ = self.rounds.get(bet.body["round_id"])
        if bet.tombstoned:
            refused(response, 409, "bet_rolled_back")
            return
        if round_ is not None and round_.closed:
            refused(response, 409, "round_closed")
            return
        if self.cash[player] + self.bonus[player] < stake:
            refused(response, 409, "insufficient_funds")
            return
        assert response.status_code == 200, response.text
        bet.cash = min(self.cash[player], stake)
        bet.bonus = stake - bet.cash
        bet.status = "OPEN"
        self.cash[player] -= bet.cash
        self.bonus[player] -= bet.bonus
        self.revenue += stake
        self.movements += 1
        self.rounds.setdefault(bet.body["round_id"], RoundState(player))
        got = response.json()
        assert (got["bet_status"], got["tombstone"]) == ("OPEN", False)
        assert got["ledger_transaction_id"] is not None
        self.check_wallet(got, player)
        self.done[bet.body["transaction_uuid"]] = Done(
            "/v1/wallet/bet", bet.body, bet, got["ledger_transaction_id"]
        )

    def _settle(self, bet: BetRecord, payout: int, *, close: bool) -> None:
        body = factories.win_body(bet.body, eur(payout), round_closed=close)
        response = self.send("provider", "/v1/wallet/win", body)
        if bet.status not in PLACED:
            refused(response, 404, "unknown_bet")
            return
        if bet.status != "OPEN":
            refused(response, 409, "bet_already_settled")
            return
        assert response.status_code == 200, response.text
        to_bonus = payout * bet.bonus // bet.stake  # the bonus share, rounded down
        self.cash[bet.player] += payout - to_bonus
        self.bonus[bet.player] += to_bonus
        self.revenue -= payout
        self.movements += 1 if payout else 0
        bet.status = "LOSE" if payout == 0 else "PUSH" if payout == bet.stake else "WIN"
        if close:
            self.rounds[bet.body["round_id"]].closed = True
        got = response.json()
        assert (got["bet_status"], got["tombstone"]) == (bet.status, False)
        assert (got["ledger_transaction_id"] is None) == (payout == 0)
        self.check_wallet(got, bet.player)
        self.done[body["transaction_uuid"]] = Done(
            "/v1/wallet/win", body, bet, got["ledger_transaction_id"]
        )

    def _rollback(self, bet: BetRecord) -> None:
        body = factories.rollback_body(bet.body)
        response = self.send("provider", "/v1/wallet/rollback", body)
        if bet.status == "VOID":
            refused(response, 409, "bet_already_rolled_back")
            return
        if bet.status in PLACED and bet.status != "OPEN":
            refused(response, 409, "rollback_after_settle")
            return
        assert response.status_code == 200, response.text
        got = response.json()
        if bet.status == "NOT_PLACED":  # unknown: a tombstone, nothing moves
            assert (got["tombstone"], got["bet_status"]) == (True, "VOID")
            assert got["ledger_transaction_id"] is None
            bet.tombstoned = True
        else:
            self.cash[bet.player] += bet.cash
            self.bonus[bet.player] += bet.bonus
            self.revenue -= bet.stake
            self.movements += 1
            bet.status = "VOID"
            assert (got["tombstone"], got["bet_status"]) == (False, "VOID")
            assert got["ledger_transaction_id"] is not None
        self.check_wallet(got, bet.player)
        self.done[body["transaction_uuid"]] = Done(
            "/v1/wallet/rollback", body, bet, got["ledger_transaction_id"], got["tombstone"]
        )

    def _expect_seen(self, response: httpx.Response, done: Done) -> None:
        """A transaction_uuid seen before answers its outcome again and moves nothing."""
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["transaction_uuid"] == done.body["transaction_uuid"]
        assert got["ledger_transaction_id"] == done.ledger_transaction_id
        assert got["tombstone"] is done.tombstone
        assert got["bet_status"] == ("VOID" if done.tombstone else done.bet.status)
        self.check_wallet(got, done.bet.player)

    # -- rules --------------------------------------------------------------------------

    @initialize(funds=st.lists(st.tuples(FUNDS, FUNDS), min_size=2, max_size=3))
    def open_wallets(self, funds: list[tuple[int, int]]) -> None:
        for cash, bonus in funds:
            response = self.send(
                "operator", "/v1/admin/players", {"currency": "EUR", "jurisdiction": "MT"}
            )
            assert response.status_code == 200, response.text
            player = uuid.UUID(response.json()["player_id"])
            self.players.append(player)
            self.cash[player] = self.bonus[player] = 0
            for source, minor in (("cash", cash), ("bonus", bonus)):
                if minor:
                    self._adjust(player, minor, source, credit=True)

    @rule(player=PLAYER, minor=AMOUNTS, source=st.sampled_from(SOURCES), credit=st.booleans())
    def adjust(self, player: int, minor: int, source: str, credit: bool) -> None:
        self._adjust(self.player(player), minor, source, credit=credit)

    @rule(
        target=bets,
        player=PLAYER,
        minor=AMOUNTS,
        size=st.sampled_from(["minor", "cash and more", "everything"]),
        rollback_first=RARELY,
    )
    def bet(self, player: int, minor: int, size: str, rollback_first: bool) -> BetRecord:
        """A new bet; now and then its rollback comes first, and the bet only later, if ever.

        The stake is `minor`, or all the cash and part of the bonus (cash first, then bonus),
        or the whole balance.
        """
        player_id = self.player(player)
        cash, bonus = self.cash[player_id], self.bonus[player_id]
        stake = {
            "minor": minor,
            "cash and more": cash + 1 + minor % max(bonus, 1),
            "everything": max(cash + bonus, 1),
        }[size]
        bet = BetRecord(factories.bet_body(player_id, eur(stake)), player_id, stake)
        if rollback_first:  # a rollback of an unknown bet: a tombstone, nothing moves
            before = self.state()
            self._rollback(bet)
            assert self.state()["balances"] == before["balances"]
        else:
            self._place(bet)
        self.all_bets.append(bet)
        return bet

    @rule(target=bets, prior=bets, minor=AMOUNTS)
    def bet_in_the_same_round(self, prior: BetRecord, minor: int) -> BetRecord:
        body = factories.bet_body(prior.player, eur(minor), round_id=prior.body["round_id"])
        bet = BetRecord(body, prior.player, minor)
        self._place(bet)
        self.all_bets.append(bet)
        return bet

    @precondition(lambda self: any(bet.status == "OPEN" for bet in self.all_bets))
    @rule(
        bet=bets.filter(lambda bet: bet.status == "OPEN"),
        outcome=st.sampled_from(["win", "lose", "push"]),
        won=AMOUNTS,
        close=st.booleans(),
    )
    def settle(self, bet: BetRecord, outcome: str, won: int, close: bool) -> None:
        """An open bet paid: a win, zero (lost) or the stake (push); perhaps closing the round."""
        self._settle(bet, {"lose": 0, "push": bet.stake, "win": won}[outcome], close=close)

    @precondition(lambda self: any(bet.status == "OPEN" for bet in self.all_bets))
    @rule(bet=bets.filter(lambda bet: bet.status == "OPEN"))
    def rollback(self, bet: BetRecord) -> None:
        """An open bet voided: its stake goes back to the sources that funded it."""
        self._rollback(bet)

    @rule(bet=bets, rollback=st.booleans(), payout=FUNDS)
    def settle_or_roll_back_any_bet(self, bet: BetRecord, rollback: bool, payout: int) -> None:
        """Whatever the bet's state: never placed, tombstoned, open, settled or voided."""
        if rollback:
            self._rollback(bet)
        else:
            self._settle(bet, payout, close=False)

    @rule(bet=bets)
    def deliver_bet_again(self, bet: BetRecord) -> None:
        """The same bet (same transaction_uuid) under a new Idempotency-Key."""
        done = self.done.get(bet.body["transaction_uuid"])
        if done is None:  # never accepted: nothing was remembered, so this is a new attempt
            self._place(bet)
            return
        before = self.state()
        self._expect_seen(self.send("provider", done.path, done.body), done)
        assert self.state() == before

    @precondition(lambda self: self.done)
    @rule(data=st.data(), change=st.sampled_from(["nothing", "request_uuid", "content", "kind"]))
    def deliver_action_again(self, data: st.DataObject, change: str) -> None:
        """An accepted bet, win or rollback again by its transaction_uuid, with a new key.

        Unchanged (or with a new request_uuid, a transport retry): the first outcome again.
        With other content, or for another kind of action: 409 transaction_uuid_reused.
        Either way nothing changes.
        """
        done = data.draw(st.sampled_from(list(self.done.values())[::-1]), label="action")
        before = self.state()
        if change in {"nothing", "request_uuid"}:
            body = done.body | (
                {"request_uuid": str(uuid.uuid4())} if change == "request_uuid" else {}
            )
            self._expect_seen(self.send("provider", done.path, body), done)
        else:
            path, body = self._other_action(data, done, change)
            refused(self.send("provider", path, body), 409, "transaction_uuid_reused")
        assert self.state() == before

    def _other_action(
        self, data: st.DataObject, done: Done, change: str
    ) -> tuple[str, dict[str, Any]]:
        txn = {"transaction_uuid": done.body["transaction_uuid"]}
        bet = done.bet.body
        path = done.path
        if change == "kind":
            path = data.draw(st.sampled_from([p for p in WALLET_PATHS if p != done.path]))
        if path == "/v1/wallet/bet":
            amount = done.bet.stake + (1 if change == "content" else 0)
            return path, factories.bet_body(done.bet.player, eur(amount), **txn)
        if path == "/v1/wallet/win":
            paid = int(done.body.get("amount", "0.00").replace(".", ""))
            return path, factories.win_body(bet, eur(paid + 1), **txn)
        return path, factories.rollback_body(bet, bet_id=f"b-{uuid.uuid4().hex[:12]}", **txn)

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), same_body=st.booleans())
    def replay_a_request(self, data: st.DataObject, same_body: bool) -> None:
        """A request again under its Idempotency-Key: nothing changes either way.

        Same body: the first answer, byte for byte, marked as replayed. Another body: 422.
        """
        first = data.draw(st.sampled_from(self.sent[::-1]), label="request")
        before = self.state()
        if same_body:
            again = self.send(first.client, first.path, first.body, first.key, remember=False)
            assert (again.status_code, again.content) == (first.status, first.content)
            assert again.headers.get("Idempotent-Replayed") == "true"
        else:
            other = first.body | (
                {"reason": "something else"}
                if first.path == "/v1/admin/adjustments"
                else {"jurisdiction": "IE"}
                if first.path == "/v1/admin/players"
                else {"request_uuid": str(uuid.uuid4())}
            )
            again = self.send(first.client, first.path, other, first.key, remember=False)
            refused(again, 422, "idempotency_key_reused")
            assert "Idempotent-Replayed" not in again.headers
        assert self.state() == before

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def the_books_agree(self) -> None:
        at = self.clock.last  # after every posting so far, before any later one
        expected = self.expected()
        # The instant recorded after the previous step still shows the books as they were then.
        earlier = self.history[-1] if self.history else None
        (current, shared), (then, shared_then) = call(
            self._check_database(earlier[0] if earlier else None)
        )
        assert current == expected.balances
        assert shared == expected.shared_delta
        assert all(current[c] >= 0 for c in current if c.startswith("player:"))
        # Conserved: every transaction sums to zero, so everything it touched sums to zero too.
        assert sum(current.values()) + sum(shared.values()) == 0
        if earlier:
            assert then == earlier[1].balances
            assert shared_then == earlier[1].shared_delta
            assert sum(then.values()) + sum(shared_then.values()) == 0  # conserved then too
            self._ask_the_api_at(*earlier)
        self.history.append((at, expected))
        if self.wallet_checks == self.wallet_checks_before:
            # No answer of this step reported a wallet: ask the API for one, in turn.
            player = self.players[len(self.history) % len(self.players)]
            body = {"request_uuid": str(uuid.uuid4()), "player_id": str(player)}
            response = call(self.api.provider.post("/v1/wallet/balance", body))
            assert response.status_code == 200, response.text
            self.check_wallet(response.json(), player)
        self.wallet_checks_before = self.wallet_checks

    def _ask_the_api_at(self, at: datetime, expected: Expected) -> None:
        """Every fifth step, one account's balance at an earlier instant through the API."""
        step = len(self.history)
        if step % 5:
            return
        codes = sorted(expected.balances)
        code = codes[step // 5 % len(codes)]
        response = call(
            self.api.operator.get(f"/v1/admin/accounts/{code}/balance?at={rfc3339(at)}")
        )
        if response.status_code == 404:  # the revenue account opens on the first bet
            assert code == self.revenue_code
            assert expected.balances[code] == 0
        else:
            assert response.status_code == 200, response.text
            assert response.json()["balance"] == eur(expected.balances[code])

    async def _accounts(self, uow: UnitOfWork) -> dict[str, int]:
        """Ids of the accounts the example touched (house accounts open on first use)."""
        codes = [*self.expected().balances, *SHARED_HOUSE.values()]
        missing = [code for code in codes if code not in self.ids]
        if missing:
            rows = await uow.session.execute(
                sa.select(Account.code, Account.id).where(Account.code.in_(missing))
            )
            self.ids |= dict(rows.all())
        return {code: self.ids[code] for code in codes if code in self.ids}

    async def _shared_balances(self) -> dict[str, int]:
        async with self.uows() as uow:
            ids = await self._accounts(uow)
            return {
                code: await ledger.balance(uow, ids[code]) if code in ids else 0
                for code in SHARED_HOUSE.values()
            }

    async def _check_database(self, earlier: datetime | None) -> tuple[Split, Split]:
        """Balances now and at the earlier instant; every touched account and transaction."""
        async with self.uows() as uow:
            now = uow.now
            ids = await self._accounts(uow)
            posted = dict(
                (
                    await uow.session.execute(
                        sa.select(Posting.account_id, sa.func.sum(Posting.amount))
                        .where(Posting.account_id.in_(ids.values()), Posting.posted_at <= now)
                        .group_by(Posting.account_id)
                    )
                ).all()
            )
            balances: dict[str, int] = {}
            balances_then: dict[str, int] = {}
            for code, account_id in ids.items():
                current = await ledger.balance(uow, account_id)
                assert current == posted.get(account_id, 0), code  # the sum of its postings
                assert await ledger.balance_at(uow, account_id, now) == current, code
                balances[code] = current
                if earlier:
                    balances_then[code] = await ledger.balance_at(uow, account_id, earlier)
            await self._check_transactions(uow, ids)
        return self._split(balances), self._split(balances_then)

    def _split(self, balances: dict[str, int]) -> Split:
        """Exclusive accounts' balances, and the shared house accounts' change since the start."""
        mine = {code: balances.get(code, 0) for code in self.expected().balances}
        shared = {
            code: balances.get(code, 0) - self.baseline[code] for code in SHARED_HOUSE.values()
        }
        return mine, shared

    async def _check_transactions(self, uow: UnitOfWork, ids: dict[str, int]) -> None:
        """Each transaction of the example: at least two postings, zero per currency."""
        mine = LedgerTransaction.player_id.in_(self.players)
        legs = (
            await uow.session.execute(
                sa.select(
                    LedgerTransaction.id,
                    Posting.currency,
                    sa.func.count(Posting.id),
                    sa.func.coalesce(sa.func.sum(Posting.amount), 0),
                )
                .select_from(LedgerTransaction)
                .outerjoin(Posting, Posting.transaction_id == LedgerTransaction.id)
                .where(mine)
                .group_by(LedgerTransaction.id, Posting.currency)
            )
        ).all()
        assert [leg for leg in legs if leg[2] < 2 or leg[3] != 0] == []
        assert len({leg[0] for leg in legs}) == self.movements  # no effect twice, none lost
        wallets = [i for code, i in ids.items() if code.startswith("player:")]
        stray = await uow.session.scalar(  # postings on the players' accounts outside those
            sa.select(sa.func.count())
            .select_from(Posting)
            .join(LedgerTransaction, LedgerTransaction.id == Posting.transaction_id)
            .where(Posting.account_id.in_(wallets), sa.not_(mine))
        )
        assert stray == 0

    def state(self) -> dict[str, Any]:
        """Everything a replay must leave alone."""
        return call(self._state())

    async def _state(self) -> dict[str, Any]:
        async with self.uows() as uow:
            ids = await self._accounts(uow)
            balances = (
                await uow.session.execute(
                    sa.text(
                        "SELECT account_id, sum(balance) FROM balances"
                        " WHERE account_id = ANY(:accounts) GROUP BY account_id ORDER BY 1"
                    ),
                    {"accounts": list(ids.values())},
                )
            ).all()
            counts = (
                await uow.session.execute(
                    sa.text(
                        "SELECT"
                        " (SELECT count(*) FROM ledger_transactions"
                        "  WHERE player_id = ANY(:players)),"
                        " (SELECT count(*) FROM postings WHERE account_id = ANY(:accounts)),"
                        " (SELECT count(*) FROM journal_events WHERE player_id = ANY(:players)),"
                        " (SELECT count(*) FROM wallet_transactions WHERE provider_code = :p),"
                        " (SELECT count(*) FROM bet_tombstones WHERE provider_code = :p),"
                        " (SELECT string_agg(status, ',' ORDER BY id) FROM rounds"
                        "  WHERE provider_code = :p),"
                        " (SELECT string_agg(status || ' ' || coalesce(payout, -1), ','"
                        "  ORDER BY id) FROM bets WHERE provider_code = :p)"
                    ),
                    {
                        "players": self.players,
                        "accounts": list(ids.values()),
                        "p": self.api.provider_code,
                    },
                )
            ).one()
        return {"balances": [tuple(row) for row in balances], "counts": tuple(counts)}

    def teardown(self) -> None:
        call(self.api.http.aclose())


async def test_random_operation_sequences_keep_the_books(
    app_engine: AsyncEngine,
    vault_engine: AsyncEngine,
    vault_keys: LocalKeyFile,
    settings: Settings,
) -> None:
    Bridge.loop = asyncio.get_running_loop()
    Bridge.engine, Bridge.settings, Bridge.clock = app_engine, settings, TickingClock()
    Bridge.vault_engine, Bridge.vault_keys = vault_engine, vault_keys
    # Hypothesis is synchronous: it runs in a worker thread while this loop serves its calls.
    await asyncio.to_thread(
        run_state_machine_as_test,
        Books,
        settings=hypothesis.settings(
            max_examples=35,
            stateful_step_count=30,
            deadline=None,
            report_multiple_bugs=False,  # shrinking replays whole machines: one bug at a time
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
