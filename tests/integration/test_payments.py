"""Deposits and withdrawals through the API: the gate, the holds, the ledger, and webhooks
acted on once, never backwards, never on a forged signature."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from compliance.vault.keys import LocalKeyFile
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, RULESET, Api, Clock, make_api
from tests.payments_support import (
    OTHER_SECRET,
    SECRET,
    FakeProvider,
    declined,
    journal,
    send_webhook,
    timeout,
    use_fake_providers,
)

# On the packaged KYT list as 0x...dEaD: EVM addresses match in any case.
DENIED_ADDRESS = "0x000000000000000000000000000000000000dead"


async def deposit(
    api: Api, player: uuid.UUID, amount: str, *, idempotency_key: str | None = None
) -> httpx.Response:
    body = {"player_id": str(player), "amount": amount, "currency": "EUR", "method": "card"}
    return await api.operator.post("/v1/payments/deposits", body, idempotency_key=idempotency_key)


async def withdraw(
    api: Api,
    player: uuid.UUID,
    amount: str,
    *,
    method: str = "bank_transfer",
    destination: str | None = "acct_tok_4242",
    key: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "player_id": str(player),
        "amount": amount,
        "currency": "EUR",
        "method": method,
    }
    if destination is not None:
        body["destination"] = destination
    return await api.operator.post("/v1/payments/withdrawals", body, idempotency_key=key)


async def officer(api: Api, player: uuid.UUID, what: str, body: dict[str, Any]) -> None:
    response = await api.operator.post(
        f"/v1/admin/players/{player}/{what}", body | {"reason": "checked"}
    )
    assert response.status_code == 200, response.text


async def verified_player(uows: UnitOfWorkFactory, api: Api, cash: str) -> uuid.UUID:
    player = await factories.committed_player(uows, cash=cash)
    await officer(api, player, "kyc", {"level": "verified"})
    return player


async def held(uows: UnitOfWorkFactory, player: uuid.UUID) -> int:
    async with uows() as uow:
        return int(
            await uow.session.scalar(
                sa.text(
                    "SELECT b.balance FROM accounts a JOIN balances b ON b.account_id = a.id"
                    " WHERE a.player_id = :p AND a.kind = 'player_held'"
                ),
                {"p": player},
            )
        )


async def clearing(uows: UnitOfWorkFactory, provider: str) -> int:
    async with uows() as uow:
        total = await uow.session.scalar(
            sa.text(
                "SELECT sum(b.balance) FROM accounts a JOIN balances b ON b.account_id = a.id"
                " WHERE a.code = :code"
            ),
            {"code": f"house:psp_clearing:{provider}:EUR"},
        )
        return int(total or 0)


async def detail(api: Api, payment_id: str) -> dict[str, Any]:
    response = await api.operator.get(f"/v1/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def now(clock: Clock) -> datetime:
    return clock()


async def test_a_deposit_is_credited_once_when_the_provider_confirms_it(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await factories.committed_player(uows, cash="10.00")
    payment = ok(await deposit(api, player, "50.00"))
    assert payment["state"] == "initiated"
    assert payment["provider"] == "fastpay"
    assert payment["redirect_url"].startswith("https://fastpay.example/pay/")
    assert fastpay.orders[uuid.UUID(payment["payment_id"])].amount.decimal_string == "50.00"
    assert await factories.balance(api, player) == "10.00"  # nothing before the money is there

    pending = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "pending", at=now(clock)))
    )
    assert (pending["outcome"], pending["state"]) == ("moved", "pending")
    signed = fastpay.webhook(payment, "confirmed", at=now(clock))
    confirmed = ok(await send_webhook(api, "fastpay", signed))
    assert (confirmed["outcome"], confirmed["state"], confirmed["replayed"]) == (
        "moved",
        "confirmed",
        False,
    )
    assert await factories.balance(api, player) == "60.00"
    assert await clearing(uows, "fastpay") == -5000

    # The same delivery again, the same news under a new message id, and late or wrong news.
    again = ok(await send_webhook(api, "fastpay", signed))
    assert (again["outcome"], again["replayed"]) == ("moved", True)
    # The same id over another (genuinely signed) body: never taken for a replay of the first.
    reused = fastpay.webhook(payment, "failed", at=now(clock), message_id=signed[0]["webhook-id"])
    clash = await send_webhook(api, "fastpay", reused)
    assert clash.status_code == 409, clash.text
    assert clash.json()["error"]["code"] == "webhook_id_reused"
    async with uows() as uow:
        flagged = await uow.session.scalar(
            sa.text(
                "SELECT count(*) FROM journal_events WHERE event = 'security.webhook_id_reused'"
                " AND envelope->'data'->>'webhook_id' = :id"
            ),
            {"id": signed[0]["webhook-id"]},
        )
    assert flagged == 1
    duplicate = fastpay.webhook(payment, "confirmed", at=now(clock))
    assert ok(await send_webhook(api, "fastpay", duplicate))["outcome"] == "ignored"
    late = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "pending", at=now(clock)))
    )
    assert (late["outcome"], late["detail"], late["state"]) == ("ignored", "stale", "confirmed")
    failed = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "failed", at=now(clock)))
    )
    assert (failed["outcome"], failed["detail"], failed["state"]) == (
        "refused",
        "contradicts_state",
        "confirmed",
    )
    assert await factories.balance(api, player) == "60.00"
    assert await clearing(uows, "fastpay") == -5000

    steps = (await detail(api, payment["payment_id"]))["transitions"]
    assert [(s["from_state"], s["to_state"], s["cause"]) for s in steps] == [
        (None, "initiated", "request"),
        ("initiated", "pending", "webhook"),
        ("pending", "confirmed", "webhook"),
    ]
    assert steps[2]["ledger_transaction_id"] is not None
    moved = await journal(uows, "payment.moved", payment["payment_id"])
    assert [(m["from"], m["to"], m["money_effect"]) for m in moved] == [
        ("initiated", "pending", "none"),
        ("pending", "confirmed", "credit_player"),
    ]
    ignored = await journal(uows, "payment.event_ignored", payment["payment_id"])
    assert [i["reason"] for i in ignored] == ["duplicate", "stale"]
    refused = await journal(uows, "payment.webhook_refused", payment["payment_id"])
    assert [r["problem"] for r in refused] == ["contradicts_state"]


async def test_a_forged_or_stale_webhook_is_refused_and_changes_nothing(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await factories.committed_player(uows)
    payment = ok(await deposit(api, player, "20.00"))
    forged = fastpay.webhook(payment, "confirmed", at=now(clock), secret=OTHER_SECRET)
    old = fastpay.webhook(payment, "confirmed", at=now(clock) - timedelta(seconds=301))
    future = fastpay.webhook(payment, "confirmed", at=now(clock) + timedelta(seconds=301))
    for signed, reason in (
        (forged, "no_valid_signature"),
        (old, "timestamp_too_old"),
        (future, "timestamp_in_future"),
    ):
        response = await send_webhook(api, "fastpay", signed)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "webhook_signature_refused"
        assert response.json()["error"]["details"]["reason"] == reason
    assert await factories.balance(api, player) == "0.00"
    assert (await detail(api, payment["payment_id"]))["state"] == "initiated"
    async with uows() as uow:
        reasons = (
            await uow.session.scalars(
                sa.text(
                    "SELECT envelope->'data'->>'reason' FROM journal_events"
                    " WHERE event = 'security.webhook_refused' ORDER BY id DESC LIMIT 3"
                )
            )
        ).all()
    assert sorted(reasons) == ["no_valid_signature", "timestamp_in_future", "timestamp_too_old"]
    # Within the tolerance, both ways, the genuine webhook acts.
    just = fastpay.webhook(payment, "confirmed", at=now(clock) + timedelta(seconds=299))
    assert ok(await send_webhook(api, "fastpay", just))["outcome"] == "moved"
    assert await factories.balance(api, player) == "20.00"


async def test_webhooks_that_do_not_fit_the_payment_are_refused(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, slowpay = use_fake_providers(api)
    player = await factories.committed_player(uows)
    payment = ok(await deposit(api, player, "20.00"))
    wrong_amount = fastpay.webhook(payment, "confirmed", at=now(clock), amount="200.00")
    assert ok(await send_webhook(api, "fastpay", wrong_amount))["detail"] == "amount_mismatch"
    other = slowpay.webhook(payment, "confirmed", at=now(clock))  # not the provider that has it
    answer_other = ok(await send_webhook(api, "slowpay", other))
    assert answer_other["detail"] == "other_provider", answer_other
    unknown = dict(payment) | {"payment_id": str(uuid.uuid4())}
    answer = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(unknown, "confirmed", at=now(clock)))
    )
    assert answer["outcome"] == "unknown_payment"
    withdrawal_event = dict(payment) | {"kind": "withdrawal"}
    sent = fastpay.webhook(withdrawal_event, "sent", at=now(clock))
    assert ok(await send_webhook(api, "fastpay", sent))["outcome"] == "refused"
    assert await factories.balance(api, player) == "0.00"
    response = await send_webhook(
        api, "nopay", fastpay.webhook(payment, "confirmed", at=now(clock))
    )
    assert response.status_code == 404


async def test_deposits_pass_the_gate_and_count_towards_limits_while_in_flight(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await factories.committed_player(uows)
    limited = await api.operator.post(
        f"/v1/admin/players/{player}/limits",
        {"kind": "deposit", "period": "24h", "amount": "100.00"},
    )
    assert limited.status_code == 200, limited.text
    first = ok(await deposit(api, player, "60.00"))  # initiated, not yet confirmed
    refused = await deposit(api, player, "40.01", idempotency_key="second-deposit")
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "deposit_limit_24h"
    assert error["details"]["policy_version"] == RULESET
    assert error["details"]["help"]  # responsible gambling: where to find help
    again = await deposit(api, player, "40.01", idempotency_key="second-deposit")
    assert again.json() == refused.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ok(await deposit(api, player, "40.00"))["state"] == "initiated"  # lands on the limit
    standing = ok(await api.operator.get(f"/v1/admin/players/{player}/responsible-gambling"))
    deposits = next(s for s in standing["limits"] if (s["kind"], s["period"]) == ("deposit", "24h"))
    assert (deposits["in_force"], deposits["used"]) == ("100.00", "100.00")
    # A deposit that expires gives its room back.
    expired = fastpay.webhook(first, "expired", at=now(clock))
    assert ok(await send_webhook(api, "fastpay", expired))["state"] == "expired"
    assert ok(await deposit(api, player, "60.00"))["state"] == "initiated"
    async with uows() as uow:
        count = await uow.session.scalar(
            sa.text("SELECT count(*) FROM payments WHERE player_id = :p"), {"p": player}
        )
    assert count == 3  # the refused one opened nothing


async def test_a_self_excluded_player_cannot_deposit(api: Api, uows: UnitOfWorkFactory) -> None:
    use_fake_providers(api)
    player = await factories.committed_player(uows)
    excluded = await api.operator.post(
        f"/v1/admin/players/{player}/exclusions",
        {"kind": "self_exclusion", "until": None, "reason": "asked"},
    )
    assert excluded.status_code == 200, excluded.text
    response = await deposit(api, player, "10.00")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "self_excluded"


async def test_a_withdrawal_holds_its_amount_and_pays_out_once(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    _, _ = use_fake_providers(api)
    player = await verified_player(uows, api, "100.00")
    payment = ok(await withdraw(api, player, "30.00"))
    # Routed fastpay first; approved at once (under the review threshold) and sent.
    assert (payment["state"], payment["needs_review"], payment["provider"]) == (
        "sent",
        False,
        "fastpay",
    )
    assert await factories.balance(api, player) == "70.00"
    assert await held(uows, player) == 3000
    # The hold cannot be withdrawn or staked again.
    too_much = await withdraw(api, player, "70.01")
    assert too_much.status_code == 409
    assert too_much.json()["error"]["code"] == "insufficient_funds"

    fastpay: FakeProvider = api.app.state.cashier.adapters["fastpay"]
    paid = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "confirmed", at=now(clock)))
    )
    assert paid["state"] == "confirmed"
    assert await held(uows, player) == 0
    assert await clearing(uows, "fastpay") == 3000
    # A confirmed withdrawal never comes back into play.
    failed = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "failed", at=now(clock)))
    )
    assert (failed["outcome"], failed["state"]) == ("refused", "confirmed")
    assert await factories.balance(api, player) == "70.00"
    steps = (await detail(api, payment["payment_id"]))["transitions"]
    assert [(s["to_state"], s["ledger_transaction_id"] is not None) for s in steps] == [
        ("requested", True),
        ("approved", False),
        ("sent", False),
        ("confirmed", True),
    ]


async def test_a_failed_withdrawal_releases_its_hold(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await verified_player(uows, api, "100.00")
    payment = ok(await withdraw(api, player, "40.00"))
    failed = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "failed", at=now(clock)))
    )
    assert failed["state"] == "failed"
    assert await factories.balance(api, player) == "100.00"
    assert await held(uows, player) == 0
    late = ok(
        await send_webhook(api, "fastpay", fastpay.webhook(payment, "confirmed", at=now(clock)))
    )
    assert (late["outcome"], late["state"]) == ("refused", "failed")
    assert await factories.balance(api, player) == "100.00"


async def test_withdrawals_need_verified_kyc_no_aml_hold_and_a_clean_address(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    use_fake_providers(api)
    player = await factories.committed_player(uows, cash="100.00")
    unverified = await withdraw(api, player, "10.00")
    assert unverified.status_code == 403
    assert unverified.json()["error"]["code"] == "kyc_required"
    await officer(api, player, "kyc", {"level": "verified"})
    await officer(api, player, "aml-hold", {"on_hold": True})
    held_up = await withdraw(api, player, "10.00")
    assert held_up.json()["error"]["code"] == "aml_hold"
    await officer(api, player, "aml-hold", {"on_hold": False})
    listed = await withdraw(
        api,
        player,
        "10.00",
        method="crypto",
        destination=DENIED_ADDRESS,
    )
    assert listed.status_code == 403, listed.text
    error = listed.json()["error"]
    assert error["code"] == "destination_denied"
    assert error["details"]["category"] == "aml"
    async with uows() as uow:
        facts = await uow.session.scalar(
            sa.text("SELECT facts FROM policy_decisions WHERE id = :id"),
            {"id": uuid.UUID(error["details"]["decision_id"])},
        )
    assert facts["destination_denied"] is True
    assert str(facts["kyt_list"]).startswith("sha256:")
    assert await factories.balance(api, player) == "100.00"
    assert await held(uows, player) == 0
    clean = ok(
        await withdraw(
            api,
            player,
            "10.00",
            method="crypto",
            destination="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        )
    )
    assert clean["state"] == "sent"
    no_address = await withdraw(api, player, "10.00", method="crypto", destination=None)
    assert no_address.status_code == 422


async def test_a_large_withdrawal_waits_for_a_review(api: Api, uows: UnitOfWorkFactory) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await verified_player(uows, api, "7000.00")
    large = ok(await withdraw(api, player, "2000.00"))  # the default threshold, EUR 2,000
    assert (large["state"], large["needs_review"], large["provider"]) == ("requested", True, None)
    assert uuid.UUID(large["payment_id"]) not in fastpay.orders
    assert await held(uows, player) == 200000
    small = ok(await withdraw(api, player, "1999.99"))
    assert (small["state"], small["needs_review"]) == ("sent", False)
    queue = await api.operator.get(
        f"/v1/admin/payments?state=requested&needs_review=true&player_id={player}"
    )
    assert queue.status_code == 200, queue.text
    assert [p["payment_id"] for p in queue.json()] == [large["payment_id"]]

    review = f"/v1/admin/payments/{large['payment_id']}/review"
    approved = ok(await api.operator.post(review, {"approve": True, "reason": "ok"}))
    assert (approved["state"], approved["provider"]) == ("sent", "fastpay")
    twice = await api.operator.post(review, {"approve": False, "reason": "r"})
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_reviewed"

    third = ok(await withdraw(api, player, "1000.01"))
    assert third["state"] == "sent"
    another = ok(await withdraw(api, player, "2000.00"))
    named = await api.operator.post(
        f"/v1/admin/payments/{another['payment_id']}/review",
        {"approve": True, "officer": "officer-9", "reason": "ok"},
    )
    assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    refused = ok(
        await api.operator.post(
            f"/v1/admin/payments/{another['payment_id']}/review",
            {"approve": False, "reason": "source of funds unclear"},
        )
    )
    assert refused["state"] == "rejected"
    # 7000 - 2000 - 1999.99 - 1000.01 sent; the rejected 2000 back in cash.
    assert await factories.balance(api, player) == "2000.00"
    assert await held(uows, player) == 200000 + 199999 + 100001
    reviewed = await journal(uows, "payment.reviewed", another["payment_id"])
    # The reviewer on record is the signed client, acting for no person (decision 0021).
    assert reviewed[0]["officer"] == f"client:{api.operator.client_id}"
    assert reviewed[0]["approved"] is False


async def test_a_decline_fails_the_payment_and_a_declined_withdrawal_is_released(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    fastpay, slowpay = use_fake_providers(api)
    player = await verified_player(uows, api, "100.00")
    fastpay.fail_next = [declined("fastpay"), declined("fastpay")]
    card = ok(await deposit(api, player, "10.00"))
    assert (card["state"], card["provider"]) == ("failed", None)
    payout = ok(await withdraw(api, player, "10.00"))
    assert payout["state"] == "failed"
    assert await factories.balance(api, player) == "100.00"
    assert not slowpay.orders  # a decline is not sent around to the next provider
    attempts = (await detail(api, payout["payment_id"]))["attempts"]
    assert [(a["provider"], a["outcome"], a["status"]) for a in attempts] == [
        ("fastpay", "declined", 402)
    ]


async def test_failover_sends_the_same_payment_to_the_next_provider_only_when_safe(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, slowpay = use_fake_providers(api)
    player = await verified_player(uows, api, "100.00")
    # fastpay times out and never saw it: slowpay takes it.
    fastpay.fail_next = [timeout("fastpay")]
    moved = ok(await deposit(api, player, "10.00"))
    assert moved["provider"] == "slowpay"
    tries = (await detail(api, moved["payment_id"]))["attempts"]
    assert [(a["provider"], a["outcome"]) for a in tries] == [
        ("fastpay", "timeout"),
        ("slowpay", "accepted"),
    ]
    # fastpay took it, then timed out: adopted there, never sent to slowpay.
    fastpay.fail_next = [timeout("fastpay")]
    fastpay.executes_before_failing = True
    adopted = ok(await withdraw(api, player, "10.00"))
    assert (adopted["provider"], adopted["state"]) == ("fastpay", "sent")
    assert uuid.UUID(adopted["payment_id"]) not in slowpay.orders
    # fastpay cannot even say: a payout waits for it rather than risk paying twice.
    fastpay.executes_before_failing = False
    fastpay.fail_next = [timeout("fastpay")]
    fastpay.lookup_fails = True
    doubt = await withdraw(api, player, "10.00", key="payout-in-doubt")
    assert doubt.status_code == 503, doubt.text
    assert doubt.json()["error"]["code"] == "payout_in_doubt"
    assert doubt.headers["Retry-After"] == "30"
    payment_id = doubt.json()["error"]["details"]["payment_id"]
    assert (await detail(api, payment_id))["state"] == "approved"
    assert uuid.UUID(payment_id) not in slowpay.orders
    assert await held(uows, player) == 2000  # the adopted payout and this one
    fastpay.lookup_fails = False
    resent = ok(await withdraw(api, player, "10.00", key="payout-in-doubt"))  # the client retries
    assert (resent["payment_id"], resent["state"], resent["provider"]) == (
        payment_id,
        "sent",
        "fastpay",
    )
    assert resent["payment_id"] == payment_id
    # A deposit in doubt goes on: a double deposit is found and refunded, never lost.
    fastpay.fail_next = [timeout("fastpay")]
    fastpay.lookup_fails = True
    onward = ok(await deposit(api, player, "5.00"))
    assert onward["provider"] == "slowpay"


async def test_an_event_ahead_of_its_payment_waits_for_the_provider_to_send_it_again(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await verified_player(uows, api, "100.00")
    payment = ok(await withdraw(api, player, "50.00"))
    # A payout confirmed before we know it was sent: not an answer we keep.
    fastpay.fail_next = [timeout("fastpay")]
    fastpay.lookup_fails = True
    doubt = await withdraw(api, player, "20.00", key="early")
    pending_id = doubt.json()["error"]["details"]["payment_id"]
    early_view = await detail(api, pending_id)
    signed = fastpay.webhook(early_view | {"payment_id": pending_id}, "confirmed", at=now(clock))
    early = await send_webhook(api, "fastpay", signed)
    assert early.status_code == 409, early.text
    assert early.json()["error"]["code"] == "illegal_payment_transition"
    assert early.headers["Retry-After"] == "30"
    fastpay.lookup_fails = False
    ok(await withdraw(api, player, "20.00", key="early"))  # now sent
    retried = ok(await send_webhook(api, "fastpay", signed))
    assert (retried["outcome"], retried["state"], retried["replayed"]) == (
        "moved",
        "confirmed",
        False,
    )
    assert payment["state"] == "sent"


async def test_deposits_left_on_the_payment_page_expire(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    use_fake_providers(api)
    player = await factories.committed_player(uows)
    old = ok(await deposit(api, player, "10.00"))
    clock.advance(minutes=50)
    recent = ok(await deposit(api, player, "10.00"))
    clock.advance(minutes=15)
    cashier = api.app.state.cashier
    assert await cashier.expire(older_than=timedelta(hours=1), ctx=CTX) >= 1
    assert (await detail(api, old["payment_id"]))["state"] == "expired"
    assert (await detail(api, recent["payment_id"]))["state"] == "initiated"
    steps = (await detail(api, old["payment_id"]))["transitions"]
    assert (steps[-1]["cause"], steps[-1]["actor"]) == ("timer", "expiry")


async def test_during_a_secret_rotation_both_secrets_sign_and_receipts_outlive_a_restart(
    api: Api,
    uows: UnitOfWorkFactory,
    clock: Clock,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> None:
    fastpay, _ = use_fake_providers(api, secrets=(SECRET, OTHER_SECRET))
    player = await factories.committed_player(uows)
    first = ok(await deposit(api, player, "10.00"))
    second = ok(await deposit(api, player, "20.00"))
    old = fastpay.webhook(first, "confirmed", at=now(clock), secret=SECRET)
    new = fastpay.webhook(second, "confirmed", at=now(clock), secret=OTHER_SECRET)
    assert ok(await send_webhook(api, "fastpay", old))["outcome"] == "moved"
    assert ok(await send_webhook(api, "fastpay", new))["outcome"] == "moved"
    assert await factories.balance(api, player) == "30.00"
    # Another server process (a restart): the replay store is in the database, not in memory.
    restarted = await make_api(uows, settings, vault_uows, vault_keys)
    try:
        use_fake_providers(restarted, secrets=(SECRET, OTHER_SECRET))
        again = ok(await send_webhook(restarted, "fastpay", old))
        assert (again["outcome"], again["replayed"]) == ("moved", True)
    finally:
        await restarted.http.aclose()
    assert await factories.balance(api, player) == "30.00"


async def test_players_see_their_own_payments_and_why_one_was_refused(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    use_fake_providers(api)
    player = await verified_player(uows, api, "100.00")
    other = await factories.committed_player(uows)
    paid_in = ok(await deposit(api, player, "10.00"))
    paid_out = ok(await withdraw(api, player, "30.00"))
    ok(await deposit(api, other, "5.00"))
    refused = await withdraw(api, player, "10.00", method="crypto", destination=DENIED_ADDRESS)
    assert refused.status_code == 403
    minted = ok(await api.operator.post(f"/v1/admin/players/{player}/session", {}))
    mine = await api.http.get(
        "/v1/me/payments", headers={"Authorization": f"Bearer {minted['token']}"}
    )
    assert mine.status_code == 200, mine.text
    assert [(p["payment_id"], p["state"]) for p in mine.json()] == [
        (paid_out["payment_id"], "sent"),
        (paid_in["payment_id"], "initiated"),
    ]
    why = await api.http.get(
        "/v1/me/decisions", headers={"Authorization": f"Bearer {minted['token']}"}
    )
    assert [(d["action"], d["reason_code"]) for d in why.json()["decisions"]] == [
        ("withdrawal", "destination_denied")
    ]
    assert (await api.http.get("/v1/me/payments")).status_code == 401
