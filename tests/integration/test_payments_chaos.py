"""Chaos through the PSP simulator: Pitwarden and the simulator serve each other over loopback
HTTP, the simulator misbehaves on command, and afterwards the books must hold.

After each scenario: money is conserved (every deposit credited once, every withdrawal held
once and then paid out or released once), no payment moved along anything but an edge of its
lifecycle or backwards, every transition is journaled, and the provider's own statement
reconciles with our ledger.
"""

import asyncio
import base64
import io
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.client import PitwardenClient
from app.main import create_app
from app.psp_sim import create_app as create_simulator
from compliance.vault.keys import LocalKeyFile
from core import clients
from core.payments import lifecycle, reconcile
from core.payments.routing import parse_config
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, ROOT
from tests.serving import free_socket, serving, url_of

pytestmark = pytest.mark.commits

SUFFIX = uuid.uuid4().hex[:6]
SWIFT, RAIL = f"swift{SUFFIX}", f"rail{SUFFIX}"  # names of their own: statements stay ours
SWIFT_SECRET = "whsec_" + base64.b64encode(b"chaos-swiftpay-secret-0123456789").decode()
RAIL_SECRET = "chaos-payrail-secret-0123456789"
# Where money may have moved, by what the lifecycle says: ledger transactions per payment.
TRANSACTIONS = {
    ("deposit", "initiated"): 0,
    ("deposit", "pending"): 0,
    ("deposit", "confirmed"): 1,
    ("deposit", "failed"): 0,
    ("deposit", "expired"): 0,
    ("withdrawal", "requested"): 1,
    ("withdrawal", "approved"): 1,
    ("withdrawal", "sent"): 1,
    ("withdrawal", "confirmed"): 2,
    ("withdrawal", "rejected"): 2,
    ("withdrawal", "failed"): 2,
}


def payments_config(sim: str) -> dict[str, Any]:
    def provider(name: str, contract: str, secret: str) -> dict[str, Any]:
        return {
            "name": name,
            "contract": contract,
            "base_url": f"{sim}/{name}",
            "api_key": f"key-{name}",
            "webhook_secrets": [secret],
            "timeout_s": 0.5,
        }

    return {
        "providers": [
            provider(SWIFT, "standard", SWIFT_SECRET),
            provider(RAIL, "payrail", RAIL_SECRET),
        ],
        "routes": [
            {"kind": "*", "country": "*", "currency": "*", "providers": [SWIFT, RAIL]},
            {"kind": "*", "country": "DE", "currency": "*", "providers": [RAIL, SWIFT]},
        ],
    }


@dataclass
class World:
    uows: UnitOfWorkFactory
    operator: PitwardenClient
    provider: PitwardenClient
    control: httpx.AsyncClient

    async def sim(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.control.request(method, path, json=body)
        assert response.is_success, response.text
        return response.json() if "json" in response.headers["content-type"] else response.text

    async def fault(self, provider: str, **fault: Any) -> None:
        await self.sim("POST", f"/_control/{provider}/faults", fault)


@pytest.fixture(scope="module")
async def world(
    app_engine: AsyncEngine,
    vault_engine: AsyncEngine,
    vault_keys: LocalKeyFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    folder = tmp_path_factory.mktemp("chaos")
    sim_sock, app_sock = free_socket(), free_socket()
    raw = payments_config(url_of(sim_sock))
    config_file = folder / "payments.json"
    config_file.write_text(json.dumps(raw))
    uows = UnitOfWorkFactory(async_sessionmaker(app_engine, expire_on_commit=False))
    vault_uows = UnitOfWorkFactory(async_sessionmaker(vault_engine, expire_on_commit=False))
    settings = Settings(
        data_dir=ROOT / "var",
        player_token_key_file=folder / "player-token-key",
        client_secrets_key_file=folder / "client-secrets-key",
        payments_config=config_file,
    )
    app = create_app(
        settings=settings,
        uow_factory=uows,
        vault_uow_factory=vault_uows,
        vault_key_provider=vault_keys,
    )
    simulator = create_simulator(
        parse_config(raw, environ={}),
        callback_base=url_of(app_sock),
        retry_base_s=0.05,
        max_attempts=5,
    )
    async with uows() as uow:
        operator = await clients.register(
            uow,
            client_id=f"chaos-op-{SUFFIX}",
            role="operator",
            display_name="O",
            provider_code=None,
            sealer=app.state.client_secrets,
            ctx=CTX,
        )
        games = await clients.register(
            uow,
            client_id=f"chaos-games-{SUFFIX}",
            role="game_provider",
            display_name="G",
            provider_code=f"games{SUFFIX}",
            sealer=app.state.client_secrets,
            ctx=CTX,
        )
        await uow.commit()
    base = url_of(app_sock)
    async with (
        serving(app, app_sock),
        serving(simulator, sim_sock),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        httpx.AsyncClient(base_url=url_of(sim_sock), timeout=30) as control,
    ):
        yield World(
            uows,
            PitwardenClient(base, operator.client_id, operator.secret, http=http),
            PitwardenClient(base, games.client_id, games.secret, http=http),
            control,
        )


@pytest.fixture(autouse=True)
async def since(world: World) -> datetime:
    """A reset simulator, and when this test began."""
    await world.sim("POST", "/_control/reset")
    return datetime.now(UTC)


async def player(
    world: World, *, cash: str = "0", jurisdiction: str = "MT", verified: bool = False
) -> uuid.UUID:
    player_id = await factories.committed_player(world.uows, cash=cash, jurisdiction=jurisdiction)
    if verified:
        response = await world.operator.post(
            f"/v1/admin/players/{player_id}/kyc", {"level": "verified", "reason": "r"}
        )
        assert response.status_code == 200, response.text
    return player_id


async def deposit(world: World, player_id: uuid.UUID, amount: str) -> httpx.Response:
    body = {"player_id": str(player_id), "amount": amount, "currency": "EUR", "method": "card"}
    return await world.operator.post("/v1/payments/deposits", body)


async def withdraw(world: World, player_id: uuid.UUID, amount: str) -> httpx.Response:
    body = {
        "player_id": str(player_id),
        "amount": amount,
        "currency": "EUR",
        "method": "bank_transfer",
        "destination": "acct_tok_4242",
    }
    return await world.operator.post("/v1/payments/withdrawals", body)


async def states(world: World, ids: list[str]) -> dict[str, str]:
    async with world.uows() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT id::text, state FROM payments WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ids},
        )
        return dict(rows.all())


async def settle(world: World, ids: list[str], done: Callable[[str], bool]) -> dict[str, str]:
    """Fast-forward the simulator's deliveries until every payment is `done` (10 s at most)."""
    async with asyncio.timeout(10):
        while True:
            await world.sim("POST", "/_control/deliver")
            now = await states(world, ids)
            if all(done(state) for state in now.values()):
                return now
            await asyncio.sleep(0.05)


async def books_hold(world: World, ids: list[str]) -> None:
    """Money and history of these payments are as their lifecycles say, and journaled."""
    async with world.uows() as uow:
        payments = (
            await uow.session.execute(
                sa.text(
                    "SELECT p.id::text, p.kind, p.state, p.amount,"
                    " (SELECT count(*) FROM ledger_transactions t"
                    "  WHERE t.reference = 'payment:' || p.id) AS transactions,"
                    " (SELECT count(*) FROM journal_events j WHERE j.event = 'payment.moved'"
                    "  AND j.envelope->'data'->>'payment_id' = p.id::text) AS moved"
                    " FROM payments p WHERE p.id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": ids},
            )
        ).all()
        steps = (
            await uow.session.execute(
                sa.text(
                    "SELECT payment_id::text, from_state, to_state FROM payment_transitions"
                    " WHERE payment_id = ANY(CAST(:ids AS uuid[])) ORDER BY id"
                ),
                {"ids": ids},
            )
        ).all()
        unbalanced = await uow.session.scalar(
            sa.text(
                "SELECT count(*) FROM (SELECT transaction_id FROM postings p"
                " JOIN ledger_transactions t ON t.id = p.transaction_id"
                " WHERE t.reference = ANY(:refs)"
                " GROUP BY transaction_id, currency HAVING sum(amount) <> 0) u"
            ),
            {"refs": [f"payment:{i}" for i in ids]},
        )
    assert len(payments) == len(ids)
    assert unbalanced == 0
    by_payment: dict[str, list[tuple[str | None, str]]] = {}
    for payment_id, before, after in steps:
        by_payment.setdefault(payment_id, []).append((before, after))
    for payment_id, kind, state, _, transactions, moved in payments:
        assert transactions == TRANSACTIONS[kind, state], (payment_id, kind, state)
        path = by_payment[payment_id]
        assert path[0] == (None, lifecycle.begin(kind).to_state)
        for (_, reached), (before, after) in itertools.pairwise(path):
            assert before == reached  # a chain, no gaps
            assert isinstance(lifecycle.step(kind, before, after), lifecycle.Moved)
        assert path[-1][1] == state
        assert moved == len(path) - 1  # every step journaled once


async def cash(world: World, player_id: uuid.UUID) -> int:
    async with world.uows() as uow:
        return int(
            await uow.session.scalar(
                sa.text(
                    "SELECT b.balance FROM accounts a JOIN balances b ON b.account_id = a.id"
                    " WHERE a.player_id = :p AND a.kind = 'player_cash'"
                ),
                {"p": player_id},
            )
        )


async def reconciled(world: World, provider: str, since: datetime) -> reconcile.Report:
    """The simulator's statement (reset with each test) against our ledger since `since`."""
    statement = await world.sim("GET", f"/_control/{provider}/statement.csv")
    lines = list(reconcile.read_statement(io.StringIO(statement, newline="")))
    async with world.uows() as uow:
        return await reconcile.against_ledger(
            uow, provider=provider, statement=lines, period=reconcile.Period(start=since)
        )


async def test_duplicated_delayed_reordered_and_forged_webhooks_credit_each_deposit_once(
    world: World, since: datetime
) -> None:
    # Three deposits a provider, two webhooks each (pending, confirmed): the faults queue up and
    # each takes the next webhooks in turn, so every one of the six is tampered with.
    for provider in (SWIFT, RAIL):
        await world.fault(provider, on="webhook", mode="duplicate", count=2, times=3)
        await world.fault(provider, on="webhook", mode="reorder", count=2)
        await world.fault(provider, on="webhook", mode="forge", count=1)
        await world.fault(provider, on="webhook", mode="delay", count=1, delay_s=0.3)
    players = [await player(world, jurisdiction=j) for j in ("MT", "MT", "DE", "DE", "MT", "DE")]
    amounts = ["10.00", "20.00", "30.00", "40.00", "50.00", "60.00"]
    opened = [await deposit(world, p, a) for p, a in zip(players, amounts, strict=True)]
    assert [r.status_code for r in opened] == [200] * 6, [r.text for r in opened]
    ids = [r.json()["payment_id"] for r in opened]
    assert {r.json()["provider"] for r in opened} == {SWIFT, RAIL}

    final = await settle(world, ids, lambda state: state == "confirmed")
    assert set(final.values()) == {"confirmed"}
    assert [await cash(world, p) for p in players] == [1000, 2000, 3000, 4000, 5000, 6000]
    await books_hold(world, ids)

    deliveries = (await world.sim("GET", "/_control/deliveries"))["deliveries"]
    ours = [d for d in deliveries if d["payment_id"] in ids]
    forged = [d for d in ours if d["forged"]]
    assert forged
    assert all(d["status"] == 401 for d in forged)
    genuine = [d for d in ours if not d["forged"]]
    assert len(genuine) > 2 * len(ids)  # duplicates arrived, and changed nothing
    async with world.uows() as uow:
        refused = await uow.session.scalar(
            sa.text(
                "SELECT count(*) FROM journal_events WHERE event = 'security.webhook_refused'"
                " AND envelope->'data'->>'provider' = ANY(:providers)"
            ),
            {"providers": [SWIFT, RAIL]},
        )
    assert refused >= len(forged)
    for provider in (SWIFT, RAIL):
        report = await reconciled(world, provider, since)
        assert report.ok, report.as_dict()


async def test_timeouts_fail_over_without_charging_twice(world: World, since: datetime) -> None:
    payer = await player(world, cash="500.00", verified=True)
    # A lost answer: the provider took it; asked, it says so: adopted, nowhere else.
    await world.fault(SWIFT, on="submit", mode="lost_answer", count=1)
    adopted = (await deposit(world, payer, "10.00")).json()
    # A request lost on the way, and an outage: never seen there, so the next one takes it.
    await world.fault(SWIFT, on="submit", mode="drop", count=1)
    dropped = (await deposit(world, payer, "20.00")).json()
    await world.fault(SWIFT, on="submit", mode="status", status=503, code="unavailable", count=1)
    outage = (await deposit(world, payer, "30.00")).json()
    assert [adopted["provider"], dropped["provider"], outage["provider"]] == [SWIFT, RAIL, RAIL]
    held_by = {
        name: {
            p["payment_id"]
            for p in (await world.sim("GET", f"/_control/{name}/payments"))["payments"]
        }
        for name in (SWIFT, RAIL)
    }
    assert adopted["payment_id"] in held_by[SWIFT] - held_by[RAIL]
    assert dropped["payment_id"] in held_by[RAIL] - held_by[SWIFT]
    assert outage["payment_id"] in held_by[RAIL] - held_by[SWIFT]

    # A payout whose provider neither answers nor can be asked waits for it, then resumes there.
    await world.fault(SWIFT, on="submit", mode="lost_answer", count=1)
    await world.fault(SWIFT, on="lookup", mode="drop", count=1)
    doubt = await withdraw(world, payer, "50.00")
    assert doubt.status_code == 503, doubt.text
    assert doubt.json()["error"]["code"] == "payout_in_doubt"
    payout_id = doubt.json()["error"]["details"]["payment_id"]
    resent = await world.operator.post(f"/v1/admin/payments/{payout_id}/submit", {})
    assert resent.status_code == 200, resent.text
    assert resent.json()["provider"] == SWIFT
    assert resent.json()["state"] in {"sent", "confirmed"}  # its webhooks may be quicker
    at_rail = (await world.sim("GET", f"/_control/{RAIL}/payments"))["payments"]
    assert payout_id not in {p["payment_id"] for p in at_rail}

    ids = [adopted["payment_id"], dropped["payment_id"], outage["payment_id"], payout_id]
    await settle(world, ids, lambda state: state == "confirmed")
    await books_hold(world, ids)
    assert await cash(world, payer) == 50000 + 6000 - 5000
    for provider in (SWIFT, RAIL):
        report = await reconciled(world, provider, since)
        assert report.ok, report.as_dict()


async def test_a_failed_payout_returns_the_hold_and_a_late_success_cannot_undo_it(
    world: World,
) -> None:
    payer = await player(world, cash="100.00", verified=True)
    await world.sim("POST", f"/_control/{SWIFT}/settlement", {"mode": "manual"})
    sent = (await withdraw(world, payer, "40.00")).json()
    assert sent["state"] == "sent"
    assert await cash(world, payer) == 6000
    await world.sim(
        "POST", f"/_control/{SWIFT}/payments/{sent['payment_id']}/settle", {"outcome": "failed"}
    )
    await settle(world, [sent["payment_id"]], lambda state: state == "failed")
    assert await cash(world, payer) == 10000
    await books_hold(world, [sent["payment_id"]])


async def test_a_withdrawal_racing_a_bet_for_the_same_funds(world: World) -> None:
    players = [await player(world, cash="100.00", verified=True) for _ in range(4)]

    async def race(player_id: uuid.UUID) -> list[int]:
        bet = factories.bet_body(player_id, "100.00")
        tasks: list[Awaitable[httpx.Response]] = [
            withdraw(world, player_id, "100.00"),
            world.provider.post("/v1/wallet/bet", bet),
        ]
        return [r.status_code for r in await asyncio.gather(*tasks)]

    outcomes = await asyncio.gather(*(race(p) for p in players))
    for codes in outcomes:
        assert sorted(codes) == [200, 409], codes  # one takes the money, the other is refused
    for player_id in players:
        assert await cash(world, player_id) == 0
    async with world.uows() as uow:
        ids = [
            str(i)
            for i in (
                await uow.session.scalars(
                    sa.text("SELECT id FROM payments WHERE player_id = ANY(:p)"), {"p": players}
                )
            ).all()
        ]
    await settle(world, ids, lambda state: lifecycle.is_terminal("withdrawal", state))  # type: ignore[arg-type]
    await books_hold(world, ids)


async def test_a_statement_that_disagrees_is_reported(world: World, tmp_path: Path) -> None:
    payer = await player(world)
    paid = (await deposit(world, payer, "25.00")).json()
    await settle(world, [paid["payment_id"]], lambda state: state == "confirmed")
    statement = await world.sim("GET", f"/_control/{SWIFT}/statement.csv")
    lines = list(
        reconcile.read_statement(io.StringIO(statement.replace("25.00", "52.00"), newline=""))
    )
    async with world.uows() as uow:
        report = await reconcile.against_ledger(uow, provider=SWIFT, statement=lines)
    assert not report.ok
    assert [item.ours.payment_id for item in report.mismatched if item.ours] == [
        uuid.UUID(paid["payment_id"])
    ]
    del tmp_path
