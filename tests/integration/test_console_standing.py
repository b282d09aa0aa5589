"""A player's KYC level and exclusions from the console: what adds a protection (a lower KYC
level, a time-out, a self-exclusion) takes effect at once; a higher KYC level lowers what the
gate asks of the player, so a senior officer approves it (four-eyes)."""

import uuid
from collections.abc import AsyncIterator

import pytest

from compliance import kyc, rg
from core import sql
from core.uow import UnitOfWorkFactory
from tests import console_support, factories
from tests.conftest import Api, Clock
from tests.console_support import Browser


@pytest.fixture
async def caseworker(api: Api, clock: Clock) -> AsyncIterator[Browser]:
    clock.freeze()
    browser = Browser(api.app, clock)
    yield browser
    await browser.aclose()


@pytest.fixture
async def mlro(api: Api, clock: Clock) -> AsyncIterator[Browser]:
    browser = Browser(api.app, clock)
    yield browser
    await browser.aclose()


async def player_at(api: Api, uows: UnitOfWorkFactory, level: str) -> uuid.UUID:
    player = await factories.committed_player(uows, cash="100.00")
    if level != "unverified":
        answer = await api.operator.post(
            f"/v1/admin/players/{player}/kyc", {"level": level, "reason": "documents"}
        )
        assert answer.status_code == 200, answer.text
    return player


async def level_of(uows: UnitOfWorkFactory, player: uuid.UUID) -> str:
    async with uows() as uow:
        return (await kyc.standing(uow, player)).kyc_level


async def open_request(uows: UnitOfWorkFactory, player: uuid.UUID) -> str:
    async with uows() as uow:
        found = await sql.scalar(
            uow,
            "SELECT id FROM approval_requests WHERE player_id = %(p)s AND decided_at IS NULL",
            {"p": player},
        )
    assert found is not None
    return str(found)


async def test_a_higher_kyc_level_waits_for_a_senior_officer_and_names_both(
    api: Api, caseworker: Browser, mlro: Browser, uows: UnitOfWorkFactory
) -> None:
    player = await player_at(api, uows, "basic")
    page = f"/console/players/{player}"
    officer = await console_support.officer(uows, "officer")
    senior = await console_support.officer(uows, "senior_officer")
    await caseworker.sign_in(officer)
    shown = await caseworker.get(page)
    assert 'action="/console/players/' + str(player) + '/kyc"' in shown.text

    asked = await caseworker.submit(
        f"{page}/kyc", {"level": "verified", "reason": "passport checked by phone"}, of=page
    )
    assert asked.headers["location"] == "/console/approvals"
    assert await level_of(uows, player) == "basic"  # nothing lifted yet
    listed = await caseworker.get("/console/approvals")
    assert "Raise a player&#39;s KYC level: basic → verified" in listed.text
    request_id = await open_request(uows, player)

    own = await caseworker.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "me"}, of="/console/approvals"
    )
    assert own.status_code == 403
    colleague = Browser(api.app, caseworker.clock)
    try:
        await colleague.sign_in(await console_support.officer(uows, "officer"))
        not_senior = await colleague.submit(
            f"/console/approvals/{request_id}/approve", {"reason": "ok"}, of="/console/approvals"
        )
        assert not_senior.status_code == 403
        assert "Your role does not allow this." in not_senior.text
    finally:
        await colleague.aclose()
    assert await level_of(uows, player) == "basic"

    await mlro.sign_in(senior)
    approved = await mlro.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "seen the call notes"},
        of="/console/approvals",
    )  # fmt: skip
    assert approved.headers["location"] == "/console/approvals"
    assert await level_of(uows, player) == "verified"
    async with uows() as uow:
        set_by = await sql.scalar(
            uow,
            "SELECT set_by FROM kyc_levels WHERE player_id = %(p)s ORDER BY id DESC LIMIT 1",
            {"p": player},
        )
    assert set_by.startswith("officer:")
    assert " approved by officer:" in set_by


async def test_a_lower_kyc_level_takes_effect_at_once_and_an_auditor_has_no_such_form(
    api: Api, caseworker: Browser, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player = await player_at(api, uows, "verified")
    page = f"/console/players/{player}"
    await caseworker.sign_in(await console_support.officer(uows, "officer"))
    lowered = await caseworker.submit(
        f"{page}/kyc", {"level": "basic", "reason": "document expired"}, of=page
    )
    assert lowered.headers["location"] == page
    assert await level_of(uows, player) == "basic"
    assert "<dt>KYC level</dt><dd>basic</dd>" in (await caseworker.get(page)).text

    same = await caseworker.submit(f"{page}/kyc", {"level": "basic", "reason": "again"}, of=page)
    assert same.status_code == 422
    assert "is basic already" in same.text
    unknown = await caseworker.submit(f"{page}/kyc", {"level": "gold", "reason": "x"}, of=page)
    assert unknown.status_code == 422
    assert "levels are unverified, basic, verified" in unknown.text
    assert await level_of(uows, player) == "basic"

    auditor = Browser(api.app, clock)
    try:
        await auditor.sign_in(await console_support.officer(uows, "auditor"))
        seen = await auditor.get(page)
        assert seen.status_code == 200
        assert "/kyc" not in seen.text
        assert "/exclusion" not in seen.text
        refused = await auditor.submit(
            f"{page}/kyc", {"level": "unverified", "reason": "x"}, of=page
        )
        assert refused.status_code == 403
    finally:
        await auditor.aclose()
    assert await level_of(uows, player) == "basic"


async def test_an_approval_never_overrides_a_level_lowered_since_the_request(
    api: Api, caseworker: Browser, mlro: Browser, uows: UnitOfWorkFactory
) -> None:
    player = await player_at(api, uows, "basic")
    page = f"/console/players/{player}"
    await caseworker.sign_in(await console_support.officer(uows, "officer"))
    await caseworker.submit(f"{page}/kyc", {"level": "verified", "reason": "call"}, of=page)
    request_id = await open_request(uows, player)
    await caseworker.submit(
        f"{page}/kyc", {"level": "unverified", "reason": "forged document"}, of=page
    )
    await mlro.sign_in(await console_support.officer(uows, "senior_officer"))
    stale = await mlro.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "ok"}, of="/console/approvals"
    )
    assert stale.status_code == 409
    assert "has changed to unverified since the request" in stale.text
    assert await level_of(uows, player) == "unverified"
    assert await open_request(uows, player) == request_id  # still there, to reject


async def test_an_officer_excludes_a_player_who_then_cannot_bet_and_it_is_never_shortened(
    api: Api, caseworker: Browser, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player = await player_at(api, uows, "verified")
    page = f"/console/players/{player}"
    officer = await console_support.officer(uows, "officer")
    await caseworker.sign_in(officer)
    started = await caseworker.submit(
        f"{page}/exclusion", {"length": "self_exclusion", "reason": "asked on the phone"}, of=page
    )
    assert started.headers["location"] == page
    assert "self exclusion from" in (await caseworker.get(page)).text
    async with uows() as uow:
        (exclusion,) = await rg.exclusions_in_force(uow, player)
        set_by = await sql.scalar(
            uow, "SELECT set_by FROM rg_exclusions WHERE player_id = %(p)s", {"p": player}
        )
    assert (exclusion.kind, exclusion.ends_at) == ("self_exclusion", None)
    async with uows() as uow:
        officer_id = await sql.scalar(
            uow, "SELECT id FROM officers WHERE username = %(u)s", {"u": officer.username}
        )
    assert set_by == f"officer:{officer_id}"  # the signed-in person, not a typed name

    bet = await api.provider.post(
        "/v1/wallet/bet",
        factories.bet_body(player, amount="1.00"),
    )
    assert bet.status_code == 403, bet.text
    assert bet.json()["error"]["code"] == "self_excluded"

    shorter = await caseworker.submit(
        f"{page}/exclusion", {"length": "time_out_1w", "reason": "mistake"}, of=page
    )
    assert shorter.status_code == 409
    assert "cannot be shortened" in shorter.text
    wrong = await caseworker.submit(
        f"{page}/exclusion", {"length": "forever-ish", "reason": "x"}, of=page
    )
    assert wrong.status_code == 422
    async with uows() as uow:
        assert len(await rg.exclusions_in_force(uow, player)) == 1


async def test_starting_an_exclusion_asks_for_the_second_factor_again_after_5_minutes(
    api: Api, caseworker: Browser, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player = await player_at(api, uows, "verified")
    page = f"/console/players/{player}"
    await caseworker.sign_in(await console_support.officer(uows, "officer"))
    clock.advance(minutes=6)
    stale = await caseworker.submit(
        f"{page}/exclusion", {"length": "time_out_1d", "reason": "chat"}, of=page
    )
    assert stale.status_code == 303
    assert stale.headers["location"] == f"/console/step-up?next={page}"
    async with uows() as uow:
        assert await rg.exclusions_in_force(uow, player) == []
