"""Kill-switches: an operator stops a zone at once, with a reason, and it stays on record."""

import sqlalchemy as sa

from core.uow import UnitOfWork, UnitOfWorkFactory
from policies import killswitch
from tests.conftest import Api


async def zone_off(uow: UnitOfWork, action: str) -> bool:
    """Whether the zone of `action` stands switched off (what the gate reads as `zone_off`)."""
    state = (await killswitch.states(uow)).get(killswitch.ZONE_OF_ACTION[action])
    return bool(state and state.off)


async def test_a_zone_switched_off_and_on_again_is_on_record(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    off = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": "withdrawal", "off": True, "reason": "PSP outage"},
    )
    assert off.status_code == 200, off.text
    async with uows() as uow:
        assert await zone_off(uow, "withdrawal")
        assert not await zone_off(uow, "bet.place")
        assert not await zone_off(uow, "bet.settle")
    listed = (await api.operator.get("/v1/admin/kill-switches")).json()
    assert listed["zones"] == ["adjustment", "bet", "deposit", "settlement", "withdrawal"]
    withdrawal = next(s for s in listed["switches"] if s["zone"] == "withdrawal")
    assert (withdrawal["off"], withdrawal["reason"]) == (True, "PSP outage")
    # Switched by the signed client, acting for no person (decision 0021).
    assert withdrawal["set_by"] == f"client:{api.operator.client_id}"

    back = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": "withdrawal", "off": False, "reason": "PSP back"},
    )
    assert back.status_code == 200
    async with uows() as uow:
        assert not await zone_off(uow, "withdrawal")
        history = (
            await uow.session.execute(
                sa.text(
                    "SELECT envelope->'data'->>'reason', envelope->'data'->>'actor',"
                    " envelope->>'actor' FROM journal_events"
                    " WHERE event = 'policy.kill_switch' ORDER BY id DESC LIMIT 2"
                )
            )
        ).all()
        client = f"client:{api.operator.client_id}"
        assert [tuple(row) for row in history] == [
            ("PSP back", client, client),
            ("PSP outage", client, client),
        ]


async def test_a_switch_naming_a_person_is_refused_and_changes_nothing(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    named = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": "deposit", "off": True, "reason": "PSP outage", "actor": "cco-1"},
    )
    assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    assert [p["field"] for p in named.json()["error"]["details"]["problems"]] == ["actor"]
    async with uows() as uow:
        assert not await zone_off(uow, "deposit")


async def test_an_unknown_zone_or_no_reason_is_refused(api: Api) -> None:
    unknown = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": "casino", "off": True, "reason": "x"},
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_zone")
    blank = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": "bet", "off": True, "reason": "   "},
    )
    assert (blank.status_code, blank.json()["error"]["code"]) == (422, "reason_required")
    provider = await api.provider.get("/v1/admin/kill-switches")
    assert provider.status_code == 403
