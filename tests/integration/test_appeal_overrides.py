"""Overturned appeals and the gate (issue 15, slice 2): an override lifts exactly the refusal's
rules for the player and the action, for its period and uses; the decision that lets the money
move names it and its appeal; the refused decision still replays to a refusal; PostgreSQL keeps
the uses within the limit and the override within its period."""

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from compliance import appeals, jurisdictions, overrides
from core import sql
from core.journal import EventContext
from core.uow import UnitOfWorkFactory
from policies import decisions
from tests import console_support, factories
from tests.conftest import Api, Clock
from tests.payments_support import use_fake_providers

SETTINGS = jurisdictions.load()
OFFICER_CTX = EventContext(actor="officer:test", trace_id="test")


async def withdraw(api: Api, player: uuid.UUID, amount: str = "10.00") -> Any:
    body = {
        "player_id": str(player),
        "amount": amount,
        "currency": "EUR",
        "method": "bank_transfer",
        "destination": "acct_tok_4242",
    }
    return await api.operator.post("/v1/payments/withdrawals", body)


async def refused_withdrawal(api: Api, uows: UnitOfWorkFactory) -> tuple[uuid.UUID, uuid.UUID]:
    """An unverified player refused a withdrawal for KYC: (player, decision)."""
    use_fake_providers(api)
    player = await factories.committed_player(uows, cash="100.00")
    refused = await withdraw(api, player)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "kyc_required"
    return player, uuid.UUID(refused.json()["error"]["details"]["decision_id"])


async def filed(uows: UnitOfWorkFactory, player: uuid.UUID, decision: uuid.UUID) -> uuid.UUID:
    """An appeal of the refusal (its explanation's vault token stands in for a sealed text)."""
    async with uows() as uow:
        filing = await appeals.check_filing(
            uow, player_id=player, decision_id=decision, settings=SETTINGS
        )
        done = await appeals.file(
            uow, filing=filing, explanation_token=f"pii_{uuid.uuid4().hex}", document_tokens=[],
            settings=SETTINGS, notifier=appeals.Outbox(),
            ctx=EventContext(actor=f"player:{player}", trace_id="test"),
        )  # fmt: skip
        await uow.commit()
    return done.appeal_id


async def officer_id(uows: UnitOfWorkFactory) -> uuid.UUID:
    made = await console_support.officer(uows, "officer")
    async with uows() as uow:
        found = await sql.scalar(
            uow, "SELECT id FROM officers WHERE username = %(u)s", {"u": made.username}
        )
    assert isinstance(found, uuid.UUID)
    return found


async def overturn(
    uows: UnitOfWorkFactory, appeal: uuid.UUID, remedy: appeals.Remedy
) -> appeals.Decided:
    by = await officer_id(uows)
    async with uows() as uow:
        done = await appeals.decide(
            uow, appeal_id=appeal, outcome="overturned", reason_token=f"pii_{uuid.uuid4().hex}",
            officer_id=by, remedy=remedy, settings=SETTINGS, notifier=appeals.Outbox(),
            ctx=OFFICER_CTX,
        )  # fmt: skip
        await uow.commit()
    return done


async def events(uows: UnitOfWorkFactory, event: str, player: uuid.UUID) -> list[dict[str, Any]]:
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT envelope->'data' FROM journal_events WHERE event = :e AND player_id = :p"
                " ORDER BY id"
            ),
            {"e": event, "p": player},
        )
        return [row[0] for row in rows]


async def decision_of_payment(uows: UnitOfWorkFactory, payment_id: str) -> dict[str, Any]:
    async with uows() as uow:
        row = await sql.one(
            uow,
            "SELECT d.id, d.effect, d.facts, d.rule_ids FROM payments y"
            " JOIN policy_decisions d ON d.id = y.decision_id WHERE y.id = %(id)s",
            {"id": uuid.UUID(payment_id)},
        )
    assert row is not None
    return row


async def test_an_overturned_kyc_refusal_lets_one_withdrawal_through_and_names_the_appeal(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.freeze()
    player, refusal = await refused_withdrawal(api, uows)
    appeal = await filed(uows, player, refusal)
    done = await overturn(uows, appeal, appeals.Remedy("once"))
    assert done.override_id is not None

    passed = await withdraw(api, player)
    assert passed.status_code == 200, passed.text
    allowed = await decision_of_payment(uows, passed.json()["payment_id"])
    assert allowed["effect"] == "allow"
    assert allowed["facts"]["kyc_verified"] is False  # still unverified: the override lifted it
    assert allowed["facts"]["overridden_rules"] == " deny-withdrawal-kyc "
    assert str(done.override_id) in allowed["facts"]["overrides"]
    assert str(appeal) in allowed["facts"]["overrides"]
    used = await events(uows, "override.used", player)
    assert [(u["override_id"], u["appeal_id"], u["decision_id"], u["use"]) for u in used] == [
        (str(done.override_id), str(appeal), str(allowed["id"]), 1)
    ]
    assert [e["why"] for e in await events(uows, "override.expired", player)] == ["uses_spent"]
    granted = await events(uows, "override.granted", player)
    assert granted[0]["rule_ids"] == ["deny-withdrawal-kyc"]
    assert granted[0]["max_uses"] == 1

    again = await withdraw(api, player)  # one use only
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "kyc_required"

    async with uows() as uow:  # history is not rewritten: the refusal replays to a refusal
        replayed = await decisions.replay(uow, refusal)
    assert replayed.same
    assert replayed.now.effect == "deny"
    assert replayed.now.reason_code == "kyc_required"


async def test_an_override_lifts_only_its_own_rules(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.freeze()
    player, refusal = await refused_withdrawal(api, uows)
    appeal = await filed(uows, player, refusal)
    await overturn(uows, appeal, appeals.Remedy("period", 7))
    held = await api.operator.post(
        f"/v1/admin/players/{player}/aml-hold", {"on_hold": True, "reason": "source of funds"}
    )
    assert held.status_code == 200, held.text
    refused = await withdraw(api, player)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "aml_hold"  # the KYC rule is lifted, not this one
    assert await events(uows, "override.used", player) == []
    stake = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "1.00"))
    assert stake.status_code == 200, stake.text  # another action: the override plays no part
    assert await events(uows, "override.used", player) == []


async def test_a_period_override_is_used_until_it_ends_and_the_sweep_journals_its_end(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.freeze()
    player, refusal = await refused_withdrawal(api, uows)
    appeal = await filed(uows, player, refusal)
    done = await overturn(uows, appeal, appeals.Remedy("period", 2))
    for _ in range(3):
        passed = await withdraw(api, player, "1.00")
        assert passed.status_code == 200, passed.text
    assert [u["use"] for u in await events(uows, "override.used", player)] == [1, 2, 3]

    clock.advance(days=2)
    later = await withdraw(api, player, "1.00")
    assert later.status_code == 403
    assert later.json()["error"]["code"] == "kyc_required"
    async with uows() as uow:
        ended = await overrides.expire_due(uow, ctx=OFFICER_CTX)
        await uow.commit()
    assert ended >= 1
    expired = await events(uows, "override.expired", player)
    assert expired == [
        {"override_id": str(done.override_id), "appeal_id": str(appeal), "why": "period_ended"}
    ]
    async with uows() as uow:  # once
        await overrides.expire_due(uow, ctx=OFFICER_CTX)
        await uow.commit()
    assert len(await events(uows, "override.expired", player)) == 1


async def test_the_cooling_off_of_a_raised_limit_ends_on_an_overturn(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.freeze()
    player = await factories.committed_player(uows, cash="100.00")
    path = f"/v1/admin/players/{player}/limits"
    first = {"kind": "wager", "period": "24h", "amount": "2.00"}
    assert (await api.operator.post(path, first)).status_code == 200
    raised = await api.operator.post(path, first | {"amount": "50.00"})
    assert raised.json()["immediate"] is False
    stake = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "5.00"))
    assert stake.json()["error"]["code"] == "wager_limit_24h"
    refusal = uuid.UUID(stake.json()["error"]["details"]["decision_id"])
    appeal = await filed(uows, player, refusal)
    async with uows() as uow:
        found = await appeals.refusal_of(
            uow, player_id=player, decision_id=refusal, settings=SETTINGS
        )
    with pytest.raises(appeals.InvalidRequest, match="KYC"):
        appeals.checked_remedy("kyc_verified", None, found)
    await overturn(uows, appeal, appeals.checked_remedy("cooling_off_ends", None, found))
    stake = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "5.00"))
    assert stake.status_code == 200, stake.text
    over = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "46.00"))
    assert over.json()["error"]["code"] == "wager_limit_24h"  # the new limit holds


async def test_postgresql_keeps_uses_within_the_limit_and_the_period(
    api: Api, uows: UnitOfWorkFactory, clock: Clock, app_engine: AsyncEngine
) -> None:
    clock.freeze()
    player, refusal = await refused_withdrawal(api, uows)
    appeal = await filed(uows, player, refusal)
    done = await overturn(uows, appeal, appeals.Remedy("once"))
    passed = await withdraw(api, player)
    allowed = await decision_of_payment(uows, passed.json()["payment_id"])

    async def refused(statement: str, **params: object) -> str:
        async with uows() as uow:
            with pytest.raises(sa.exc.DBAPIError) as caught:
                await uow.session.execute(sa.text(statement), params)
        return str(caught.value.orig)

    second = "INSERT INTO override_uses (override_id, n, decision_id, at) VALUES (:o, 2, :d, now())"
    assert "use 2 of at most 1" in await refused(second, o=done.override_id, d=allowed["id"])
    assert "permission denied" in await refused(
        "UPDATE overrides SET max_uses = 5 WHERE id = :o", o=done.override_id
    )
    assert "permission denied" in await refused(
        "DELETE FROM override_uses WHERE override_id = :o", o=done.override_id
    )
    not_overturned = (
        "INSERT INTO overrides (id, player_id, appeal_id, decision_id, action, rule_ids,"
        " granted_at, expires_at, granted_by) VALUES (gen_random_uuid(), :p, :a, :d,"
        " 'withdrawal', ARRAY['deny-withdrawal-aml-hold'], now(), now() + interval '1 day', 'x')"
    )
    assert "did not refuse" in await refused(
        not_overturned.replace(":a", "(SELECT id FROM appeals WHERE id = :a)"),
        p=player, a=appeal, d=refusal,
    )  # fmt: skip
    early = (
        "INSERT INTO override_expiries (override_id, at, why) VALUES (:o, now(), 'period_ended')"
    )
    assert "not over" in await refused(early, o=done.override_id)
