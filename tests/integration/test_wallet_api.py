"""The seamless wallet as a game provider sees it: statuses, sources of funds, replays."""

import uuid
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from core import wallets
from core.models import Bet, JournalEvent, LedgerTransaction
from core.money import parse_amount
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, GATE, Api, Clock


async def test_bet_then_win_pays_back_in_proportion(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="6.00", bonus="4.00")
    bet = factories.bet_body(player_id, "10.00")
    placed = await api.provider.post("/v1/wallet/bet", bet)
    assert placed.status_code == 200, placed.text
    assert placed.json()["balance"] == "0.00"
    assert placed.json()["bet_status"] == "OPEN"

    won = await api.provider.post("/v1/wallet/win", factories.win_body(bet, "25.00"))
    assert won.status_code == 200, won.text
    assert won.json()["bet_status"] == "WIN"
    assert (won.json()["cash"], won.json()["bonus"]) == ("15.00", "10.00")


async def test_a_stake_takes_cash_first_then_bonus(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="6.00", bonus="10.00")
    placed = await api.provider.post("/v1/wallet/bet", factories.bet_body(player_id, "10.00"))
    assert (placed.json()["cash"], placed.json()["bonus"]) == ("0.00", "6.00")
    current = await factories.wallet(api, player_id)
    assert (current["balance"], current["cash"], current["bonus"]) == ("6.00", "0.00", "6.00")


async def test_lose_push_and_round_close(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="50.00")
    lost = factories.bet_body(player_id, "10.00")
    pushed = factories.bet_body(player_id, "5.00", round_id=lost["round_id"])
    for bet in (lost, pushed):
        assert (await api.provider.post("/v1/wallet/bet", bet)).status_code == 200
    lose = await api.provider.post("/v1/wallet/win", factories.win_body(lost, "0.00"))
    assert (lose.json()["bet_status"], lose.json()["ledger_transaction_id"]) == ("LOSE", None)
    push = await api.provider.post(
        "/v1/wallet/win", factories.win_body(pushed, "5.00", round_closed=True)
    )
    assert push.json()["bet_status"] == "PUSH"
    assert push.json()["balance"] == "40.00"

    late = await api.provider.post(
        "/v1/wallet/bet", factories.bet_body(player_id, "1.00", round_id=lost["round_id"])
    )
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "round_closed"
    assert (await factories.wallet(api, player_id))["balance"] == "40.00"


async def test_rollback_returns_the_stake_to_its_sources(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="3.00", bonus="20.00")
    bet = factories.bet_body(player_id, "10.00")
    await api.provider.post("/v1/wallet/bet", bet)
    rolled = await api.provider.post("/v1/wallet/rollback", factories.rollback_body(bet))
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["bet_status"] == "VOID"
    assert (rolled.json()["cash"], rolled.json()["bonus"]) == ("3.00", "20.00")

    again = await api.provider.post("/v1/wallet/rollback", factories.rollback_body(bet))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "bet_already_rolled_back"
    win = await api.provider.post("/v1/wallet/win", factories.win_body(bet, "5.00"))
    assert win.json()["error"]["code"] == "bet_already_settled"


async def test_rollback_after_settle_is_refused(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    bet = factories.bet_body(player_id)
    await api.provider.post("/v1/wallet/bet", bet)
    await api.provider.post("/v1/wallet/win", factories.win_body(bet, "30.00"))
    refused = await api.provider.post("/v1/wallet/rollback", factories.rollback_body(bet))
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "rollback_after_settle",
        "message": "the bet was settled as WIN: it cannot be rolled back",
        "details": {"bet_status": "WIN"},
    }
    assert (await factories.wallet(api, player_id))["balance"] == "120.00"


async def test_rollback_of_an_unknown_bet_refuses_the_late_bet(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    bet = factories.bet_body(player_id)
    tombstone = await api.provider.post("/v1/wallet/rollback", factories.rollback_body(bet))
    assert tombstone.status_code == 200
    assert tombstone.json()["tombstone"] is True
    assert tombstone.json()["balance"] == "100.00"

    late = await api.provider.post("/v1/wallet/bet", bet)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "bet_rolled_back"
    assert (await factories.wallet(api, player_id))["balance"] == "100.00"


async def test_a_win_for_an_unknown_bet_is_refused(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    ghost = factories.bet_body(player_id)
    refused = await api.provider.post("/v1/wallet/win", factories.win_body(ghost, "50.00"))
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "unknown_bet"
    assert (await factories.wallet(api, player_id))["balance"] == "100.00"


async def test_same_key_same_body_replays_the_original_answer(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="15.00")
    bet = factories.bet_body(player_id, "10.00")
    first = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="k-1")
    second = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="k-1")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (await factories.wallet(api, player_id))["balance"] == "5.00"

    other = await api.provider.post(
        "/v1/wallet/bet", {**bet, "amount": "1.00"}, idempotency_key="k-1"
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_a_failure_is_replayed_as_a_failure(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="5.00")
    bet = factories.bet_body(player_id, "10.00")
    refused = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="poor")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "insufficient_funds"
    assert refused.json()["error"]["details"] == {
        "needed": "10.00",
        "available": "5.00",
        "currency": "EUR",
    }
    async with uows() as uow:  # the player tops up; the same request must not now succeed
        await wallets.adjust(
            uow,
            player_id=player_id,
            amount=parse_amount("50.00", "EUR"),
            source="cash",
            direction="credit",
            operator="t",
            reason="top-up",
            ctx=CTX,
            guard=GATE,
        )
        await uow.commit()
    replay = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="poor")
    assert (replay.status_code, replay.json()) == (409, refused.json())
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await factories.wallet(api, player_id))["balance"] == "55.00"


async def test_business_ids_are_unique(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    bet = factories.bet_body(player_id, "10.00")
    first = await api.provider.post("/v1/wallet/bet", bet)
    # same transaction_uuid and content under a new key: the original outcome, no second debit
    again = await api.provider.post("/v1/wallet/bet", {**bet, "request_uuid": str(uuid.uuid4())})
    assert again.status_code == 200
    assert again.json()["ledger_transaction_id"] == first.json()["ledger_transaction_id"]
    assert again.json()["balance"] == "90.00"
    # same transaction_uuid, other content
    changed = await api.provider.post("/v1/wallet/bet", {**bet, "amount": "11.00"})
    assert (changed.status_code, changed.json()["error"]["code"]) == (
        409,
        "transaction_uuid_reused",
    )
    # same bet_id, new transaction
    reused = await api.provider.post(
        "/v1/wallet/bet", {**bet, "transaction_uuid": str(uuid.uuid4())}
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "bet_id_reused")
    assert (await factories.wallet(api, player_id))["balance"] == "90.00"


async def test_settle_is_idempotent(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    bet = factories.bet_body(player_id, "10.00")
    await api.provider.post("/v1/wallet/bet", bet)
    win = factories.win_body(bet, "20.00")
    first = await api.provider.post("/v1/wallet/win", win)
    repeat = await api.provider.post("/v1/wallet/win", {**win, "request_uuid": str(uuid.uuid4())})
    assert repeat.status_code == 200
    assert repeat.json()["ledger_transaction_id"] == first.json()["ledger_transaction_id"]
    assert repeat.json()["balance"] == "110.00"
    second_win = await api.provider.post("/v1/wallet/win", factories.win_body(bet, "20.00"))
    assert (second_win.status_code, second_win.json()["error"]["code"]) == (
        409,
        "bet_already_settled",
    )


async def test_a_foreign_currency_stake_fixes_its_rate(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    rate = {
        "base": "USD",
        "quote": "EUR",
        "rate": "0.9",
        "source": "test feed",
        "as_of": "2026-01-01T00:00:00Z",
    }
    assert (await api.operator.post("/v1/admin/fx-rates", rate)).status_code == 200
    bet = factories.bet_body(player_id, "10.00", currency="USD")
    placed = await api.provider.post("/v1/wallet/bet", bet)
    assert placed.status_code == 200, placed.text
    assert placed.json()["balance"] == "91.00"

    clock.advance(seconds=1)
    newer = rate | {"rate": "0.5", "as_of": "2026-02-01T00:00:00Z"}
    await api.operator.post("/v1/admin/fx-rates", newer)
    won = await api.provider.post("/v1/wallet/win", factories.win_body(bet, "20.00"))
    assert won.json()["balance"] == "109.00"  # paid at the stake's 0.9, not the newer 0.5
    wrong = await api.provider.post(
        "/v1/wallet/win", factories.win_body(bet, "1.00", currency="EUR")
    )
    assert wrong.json()["error"]["code"] in {"currency_mismatch", "bet_already_settled"}

    async with uows() as uow:
        stake_txn = (
            await uow.session.execute(
                sa.select(
                    LedgerTransaction.fx_rate,
                    LedgerTransaction.fx_source,
                    LedgerTransaction.original_amount,
                    LedgerTransaction.original_currency,
                ).where(LedgerTransaction.id == placed.json()["ledger_transaction_id"])
            )
        ).one()
    assert stake_txn.fx_rate is not None
    assert (stake_txn.fx_rate.normalize(), stake_txn.fx_source) == (Decimal("0.9"), "test feed")
    assert (stake_txn.original_amount, stake_txn.original_currency) == (1000, "USD")


async def test_every_change_is_journaled_and_a_refusal_is_not(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="10.00")
    bet = factories.bet_body(player_id, "10.00", session_id="s-1", geo="MT", device="ios")
    await api.provider.post("/v1/wallet/bet", bet)
    await api.provider.post("/v1/wallet/bet", factories.bet_body(player_id, "1.00"))  # refused
    async with uows() as uow:
        events = (
            await uow.session.scalars(
                sa.select(JournalEvent)
                .where(JournalEvent.player_id == player_id)
                .order_by(JournalEvent.id)
            )
        ).all()
        bets = (await uow.session.scalars(sa.select(Bet).where(Bet.player_id == player_id))).all()
        envelopes = [(e.event, e.envelope) for e in events]
    assert [event for event, _ in envelopes] == [
        "player.registered",
        "policy.decided",  # the funding adjustment passed the gate
        "ledger.posted",
        "wallet.adjusted",
        "policy.decided",  # and so did the stake
        "ledger.posted",
        "round.opened",
        "bet.placed",
    ]
    posted = envelopes[5][1]["data"]
    assert posted["kind"] == "stake"
    assert sorted((p["account"], p["amount"]) for p in posted["postings"]) == sorted(
        [
            (f"player:{player_id}:cash", "-10.00"),
            (f"house:game_revenue:{api.provider_code}:EUR", "10.00"),
        ]
    )
    placed = envelopes[-1][1]
    assert placed["amount"] == "10.00"
    assert placed["currency"] == "EUR"
    assert (placed["session_id"], placed["geo"], placed["device"]) == ("s-1", "MT", "ios")
    assert placed["data"]["bet_id"] == bet["bet_id"]
    assert placed["data"]["decision_id"] == envelopes[4][1]["data"]["decision_id"]
    assert envelopes[4][1]["data"]["effect"] == "allow"
    assert placed["schema_ver"] == 1
    assert placed["contract_ver"] == "1.0"
    assert placed["ts"].endswith("Z")
    assert len(bets) == 1


async def test_balance_at_a_past_instant(api: Api, uows: UnitOfWorkFactory, clock: Clock) -> None:
    player_id = await factories.committed_player(uows, cash="100.00")
    before_bet = clock()
    clock.advance(minutes=5)
    await api.provider.post("/v1/wallet/bet", factories.bet_body(player_id, "30.00"))
    code = f"player:{player_id}:cash"
    then = await api.operator.get(
        f"/v1/admin/accounts/{code}/balance?at={before_bet.isoformat().replace('+00:00', 'Z')}"
    )
    now = await api.operator.get(f"/v1/admin/accounts/{code}/balance")
    assert then.status_code == 200, then.text
    assert then.json()["balance"] == "100.00"
    assert now.json()["balance"] == "70.00"
    earlier = await api.operator.get(
        f"/v1/admin/accounts/{code}/balance?at="
        f"{(before_bet - timedelta(days=1)).isoformat().replace('+00:00', 'Z')}"
    )
    assert earlier.json()["balance"] == "0.00"


async def test_an_adjustment_is_corrected_by_a_linked_reversal(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    async with uows() as uow:
        player_id = await factories.player(uow)
        await uow.commit()
    credit = {
        "player_id": str(player_id),
        "amount": "40.00",
        "currency": "EUR",
        "direction": "credit",
        "source": "bonus",
        "reason": "welcome bonus",
    }
    done = await api.operator.post("/v1/admin/adjustments", credit)
    assert done.status_code == 200, done.text
    assert (done.json()["bonus"], done.json()["balance"]) == ("40.00", "40.00")
    txn = done.json()["ledger_transaction_id"]

    path = f"/v1/admin/adjustments/{txn}/reversal"
    named = await api.operator.post(path, {"operator": "bob", "reason": "granted twice"})
    assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    reversal = {"reason": "granted twice by mistake"}
    reversed_ = await api.operator.post(path, reversal)
    assert reversed_.status_code == 200, reversed_.text
    assert reversed_.json()["balance"] == "0.00"
    again = await api.operator.post(path, reversal)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_reversed")
    async with uows() as uow:
        link = await uow.session.scalar(
            sa.select(LedgerTransaction.reverses_id).where(
                LedgerTransaction.id == reversed_.json()["ledger_transaction_id"]
            )
        )
        operators = (
            await uow.session.execute(
                sa.select(LedgerTransaction.operator)
                .where(LedgerTransaction.player_id == player_id)
                .order_by(LedgerTransaction.id)
            )
        ).scalars()
        adjusted = (
            await uow.session.execute(
                sa.text(
                    "SELECT envelope->'data'->>'operator' FROM journal_events"
                    " WHERE player_id = :p AND event LIKE 'wallet.adjust%' ORDER BY id"
                ),
                {"p": player_id},
            )
        ).scalars()
    assert link == txn
    # The adjustment and its correction name the signed client: no person (decision 0021).
    client = f"client:{api.operator.client_id}"
    assert list(operators) == [client, client]
    assert list(adjusted) == [client, client]
    unknown = await api.operator.post("/v1/admin/adjustments/999999999/reversal", reversal)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_adjustment")


async def test_a_debit_adjustment_cannot_overdraw(api: Api, uows: UnitOfWorkFactory) -> None:
    player_id = await factories.committed_player(uows, cash="5.00")
    debit = {
        "player_id": str(player_id),
        "amount": "5.01",
        "currency": "EUR",
        "direction": "debit",
        "reason": "chargeback",
    }
    refused = await api.operator.post("/v1/admin/adjustments", debit)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "insufficient_funds")
    allowed = await api.operator.post("/v1/admin/adjustments", debit | {"amount": "5.00"})
    assert allowed.json()["balance"] == "0.00"


async def test_a_round_id_owned_by_another_player_is_a_conflict_not_a_crash(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    first, second = (
        await factories.committed_player(uows, cash="100.00"),
        await factories.committed_player(uows, cash="100.00"),
    )
    bet = factories.bet_body(first)
    assert (await api.provider.post("/v1/wallet/bet", bet)).status_code == 200
    other = factories.bet_body(second, round_id=bet["round_id"])
    refused = await api.provider.post("/v1/wallet/bet", other)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "round_mismatch")
    assert (await factories.wallet(api, second))["balance"] == "100.00"
