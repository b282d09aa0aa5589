"""Limits, cooling-off, exclusions and usage, at their boundaries, through the operator API."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api, Clock

BASE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def limit(api: Api, player: uuid.UUID, kind: str, period: str, amount: str | None):
    return await api.operator.post(
        f"/v1/admin/players/{player}/limits",
        {"kind": kind, "period": period, "amount": amount},
    )


async def standing(api: Api, player: uuid.UUID, kind: str, period: str) -> dict[str, Any]:
    body = (await api.operator.get(f"/v1/admin/players/{player}/responsible-gambling")).json()
    found: dict[str, Any] = next(
        s for s in body["limits"] if (s["kind"], s["period"]) == (kind, period)
    )
    return found


async def test_a_decrease_is_at_once_an_increase_after_24_hours(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    first = await limit(api, player, "wager", "24h", "100.00")
    assert first.json()["immediate"] is True
    raised = await limit(api, player, "wager", "24h", "200.00")
    assert raised.json()["immediate"] is False
    assert datetime.fromisoformat(raised.json()["effective_at"]) == BASE + timedelta(hours=24)
    assert "in force on 2026-11-27T12:00:00" in raised.json()["message"]
    state = await standing(api, player, "wager", "24h")
    assert (state["in_force"], state["pending"]) == ("100.00", "200.00")
    clock.now = BASE + timedelta(hours=24) - timedelta(seconds=1)
    assert (await standing(api, player, "wager", "24h"))["in_force"] == "100.00"
    clock.now = BASE + timedelta(hours=24)
    assert (await standing(api, player, "wager", "24h"))["in_force"] == "200.00"


async def test_a_decrease_during_a_pending_increase_wins_and_removal_waits(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    await limit(api, player, "loss", "7d", "100.00")
    await limit(api, player, "loss", "7d", "300.00")  # pending
    clock.now = BASE + timedelta(hours=1)
    lowered = await limit(api, player, "loss", "7d", "50.00")
    assert lowered.json()["immediate"] is True
    clock.now = BASE + timedelta(hours=30)
    assert (await standing(api, player, "loss", "7d"))["in_force"] == "50.00"
    removed = await limit(api, player, "loss", "7d", None)
    assert removed.json()["immediate"] is False
    clock.now += timedelta(hours=24)
    assert (await standing(api, player, "loss", "7d"))["in_force"] is None


async def test_usage_counts_stakes_and_net_losses_inside_the_period(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    won = factories.bet_body(player, "10.00")
    lost = factories.bet_body(player, "20.00")
    voided = factories.bet_body(player, "40.00")
    for bet in (won, lost, voided):
        assert (await api.provider.post("/v1/wallet/bet", bet)).status_code == 200
    await api.provider.post("/v1/wallet/win", factories.win_body(won, "15.00"))
    await api.provider.post("/v1/wallet/rollback", factories.rollback_body(voided))
    clock.now = BASE + timedelta(hours=24) - timedelta(seconds=1)
    wager = await standing(api, player, "wager", "24h")
    loss = await standing(api, player, "loss", "24h")
    assert (wager["used"], loss["used"]) == ("30.00", "15.00")  # 10 + 20; 10 - 15 + 20
    clock.now = BASE + timedelta(hours=24)
    assert (await standing(api, player, "wager", "24h"))["used"] == "0.00"
    assert (await standing(api, player, "wager", "7d"))["used"] == "30.00"


async def test_exclusions_have_bounds_and_a_self_exclusion_cannot_be_shortened(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows)

    async def exclude(kind: str, until: datetime | None):
        return await api.operator.post(
            f"/v1/admin/players/{player}/exclusions",
            {
                "kind": kind,
                "until": until.isoformat() if until else None,
                "reason": "asked",
            },
        )

    assert (await exclude("time_out", BASE + timedelta(hours=23))).status_code == 422
    assert (await exclude("time_out", BASE + timedelta(weeks=6, seconds=1))).status_code == 422
    assert (await exclude("time_out", BASE + timedelta(hours=24))).status_code == 200
    too_short = await exclude("self_exclusion", BASE + timedelta(days=150))
    assert (too_short.status_code, too_short.json()["error"]["code"]) == (
        422,
        "invalid_exclusion",
    )
    assert (await exclude("self_exclusion", BASE + timedelta(days=200))).status_code == 200
    shorter = await exclude("self_exclusion", BASE + timedelta(days=190))
    assert (shorter.status_code, shorter.json()["error"]["code"]) == (
        409,
        "exclusion_cannot_be_shortened",
    )
    assert (await exclude("self_exclusion", None)).status_code == 200  # longer: indefinite
    body = (await api.operator.get(f"/v1/admin/players/{player}/responsible-gambling")).json()
    assert [e["kind"] for e in body["exclusions"]] == [
        "time_out",
        "self_exclusion",
        "self_exclusion",
    ]
    clock.now = BASE + timedelta(days=400)
    body = (await api.operator.get(f"/v1/admin/players/{player}/responsible-gambling")).json()
    assert [(e["kind"], e["ends_at"]) for e in body["exclusions"]] == [("self_exclusion", None)]


async def test_bad_limits_are_refused(api: Api, uows: UnitOfWorkFactory) -> None:
    player = await factories.committed_player(uows)
    decimals = await limit(api, player, "wager", "24h", "1.001")
    assert decimals.json()["error"]["code"] == "too_many_decimals"
    period = await limit(api, player, "wager", "1y", "10.00")
    assert period.status_code == 422
    unknown = await limit(api, uuid.uuid4(), "wager", "24h", "10.00")
    assert unknown.status_code == 404


async def test_an_operator_change_names_the_client_and_a_person_in_the_body_is_refused(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows)
    limits = f"/v1/admin/players/{player}/limits"
    exclusions = f"/v1/admin/players/{player}/exclusions"
    named_limit = await api.operator.post(
        limits, {"kind": "wager", "period": "24h", "amount": "10.00", "actor": "player"}
    )
    named_exclusion = await api.operator.post(
        exclusions, {"kind": "self_exclusion", "until": None, "reason": "x", "actor": "officer-7"}
    )
    for named in (named_limit, named_exclusion):
        assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    assert (await standing(api, player, "wager", "24h"))["in_force"] is None

    assert (await limit(api, player, "wager", "24h", "10.00")).status_code == 200
    excluded = await api.operator.post(
        exclusions, {"kind": "self_exclusion", "until": None, "reason": "asked by phone"}
    )
    assert excluded.status_code == 200, excluded.text
    async with uows() as uow:
        recorded = (
            await uow.session.execute(
                sa.text(
                    "SELECT set_by FROM rg_limits WHERE player_id = :p"
                    " UNION ALL SELECT set_by FROM rg_exclusions WHERE player_id = :p"
                    " UNION ALL SELECT envelope->'data'->>'actor' FROM journal_events"
                    " WHERE player_id = :p AND event LIKE 'rg.%'"
                ),
                {"p": player},
            )
        ).scalars()
        # The signed client acting for no person (decision 0021), never a typed-in name.
        assert set(recorded) == {f"client:{api.operator.client_id}"}
