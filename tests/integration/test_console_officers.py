"""Officers' accounts kept by an administrator in the console: create, change a role, disable
and enable, reset a lost sign-in. Each change ends the officer's sessions; nobody changes their
own account; every change needs a fresh second factor and is journaled."""

import re
import uuid
from collections.abc import AsyncIterator

import pytest

from core import sql
from core.uow import UnitOfWorkFactory
from tests import console_support
from tests.conftest import Api, Clock
from tests.console_support import Browser, Officer

PASSWORD = re.compile(r'<code class="secret">([^<]+)</code>')


@pytest.fixture
async def administrator(uows: UnitOfWorkFactory) -> Officer:
    return await console_support.officer(uows, "administrator")


@pytest.fixture
async def admin(api: Api, clock: Clock, administrator: Officer) -> AsyncIterator[Browser]:
    clock.freeze()
    browser = Browser(api.app, clock)
    await browser.sign_in(administrator)
    yield browser
    await browser.aclose()


@pytest.fixture
async def other(api: Api, clock: Clock) -> AsyncIterator[Browser]:
    browser = Browser(api.app, clock)
    yield browser
    await browser.aclose()


async def officer_id(uows: UnitOfWorkFactory, username: str) -> str:
    async with uows() as uow:
        found = await sql.scalar(
            uow, "SELECT id FROM officers WHERE username = %(u)s", {"u": username}
        )
    assert found is not None
    return str(found)


async def events(uows: UnitOfWorkFactory, event: str, officer: str) -> list[dict[str, object]]:
    async with uows() as uow:
        rows = await sql.all_rows(
            uow,
            "SELECT envelope->'data' AS data FROM journal_events WHERE event = %(e)s"
            " AND envelope->'data'->>'officer_id' = %(o)s ORDER BY id",
            {"e": event, "o": officer},
        )
    return [row["data"] for row in rows]


async def signed_out(browser: Browser) -> bool:
    answer = await browser.get("/console")
    return answer.status_code == 303 and answer.headers["location"].startswith("/console/sign-in")


async def test_an_administrator_creates_an_officer_who_then_signs_in_with_the_shown_password(
    admin: Browser, other: Browser, uows: UnitOfWorkFactory
) -> None:
    listed = await admin.get("/console/officers")
    assert listed.status_code == 200
    assert "New officer" in listed.text
    username = f"maria.borg.{uuid.uuid4().hex[:6]}"
    made = await admin.submit(
        "/console/officers",
        {"username": username, "display_name": "Maria Borg", "role": "officer"},
        of="/console/officers",
    )
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    shown = PASSWORD.search(made.text)
    assert shown
    maria = Officer(username, shown.group(1), "officer")
    enrolled = await other.sign_in(maria)  # the first sign-in sets up TOTP
    assert "recovery codes" in enrolled.text.lower()
    assert "Maria Borg" in (await admin.get("/console/officers")).text
    again = await admin.submit(
        "/console/officers",
        {"username": username, "display_name": "Another", "role": "dpo"},
        of="/console/officers",
    )
    assert again.status_code == 409


async def test_a_new_role_ends_the_officers_sessions_and_applies_at_their_next_sign_in(
    admin: Browser, other: Browser, uows: UnitOfWorkFactory
) -> None:
    caseworker = await console_support.officer(uows, "officer")
    await other.sign_in(caseworker)
    assert 'href="/console/activity"' not in (await other.get("/console")).text
    ident = await officer_id(uows, caseworker.username)
    changed = await admin.submit(
        f"/console/officers/{ident}/role", {"role": "auditor"}, of="/console/officers"
    )
    assert changed.headers["location"] == "/console/officers"
    assert await signed_out(other)
    await other.sign_in(caseworker)
    menu = (await other.get("/console")).text
    assert 'href="/console/activity"' in menu  # the auditor's page, not the officer's
    (recorded,) = await events(uows, "console.officer_role_changed", ident)
    assert (recorded["from"], recorded["to"], recorded["sessions_ended"]) == (
        "officer",
        "auditor",
        1,
    )
    same = await admin.submit(
        f"/console/officers/{ident}/role", {"role": "auditor"}, of="/console/officers"
    )
    assert same.status_code == 422
    unknown = await admin.submit(
        f"/console/officers/{ident}/role", {"role": "owner"}, of="/console/officers"
    )
    assert unknown.status_code == 422


async def test_a_disabled_officer_is_signed_out_and_refused_until_enabled(
    admin: Browser, other: Browser, uows: UnitOfWorkFactory
) -> None:
    caseworker = await console_support.officer(uows, "officer")
    await other.sign_in(caseworker)
    ident = await officer_id(uows, caseworker.username)
    await admin.submit(f"/console/officers/{ident}/disable", {}, of="/console/officers")
    assert await signed_out(other)
    refused = await other.submit(
        "/console/sign-in", {"username": caseworker.username, "password": caseworker.password}
    )
    assert refused.status_code != 303  # the same page as a wrong password
    assert "disabled" in (await admin.get("/console/officers")).text
    await admin.submit(f"/console/officers/{ident}/enable", {}, of="/console/officers")
    await other.sign_in(caseworker)
    assert (await other.get("/console")).status_code == 200


async def test_a_reset_sign_in_gives_a_new_password_and_a_new_second_factor(
    admin: Browser, other: Browser, uows: UnitOfWorkFactory
) -> None:
    lost = await console_support.officer(uows, "officer")
    await other.sign_in(lost)
    old_codes = lost.recovery_codes
    assert old_codes
    ident = await officer_id(uows, lost.username)
    reset = await admin.submit(f"/console/officers/{ident}/reset", {}, of="/console/officers")
    assert reset.status_code == 200, reset.text
    assert reset.headers["cache-control"] == "no-store"
    shown = PASSWORD.search(reset.text)
    assert shown
    assert await signed_out(other)
    old = await other.submit(
        "/console/sign-in", {"username": lost.username, "password": lost.password}
    )
    assert old.status_code != 303
    lost.password, lost.totp = shown.group(1), None
    enrolled = await other.sign_in(lost)  # enrols a new TOTP, new recovery codes
    assert "recovery codes" in enrolled.text.lower()
    assert set(lost.recovery_codes).isdisjoint(old_codes)
    (recorded,) = await events(uows, "console.officer_sign_in_reset", ident)
    assert (recorded["new_password"], recorded["sessions_ended"]) == (True, 1)


async def test_nobody_changes_their_own_account_and_a_change_needs_a_fresh_second_factor(
    admin: Browser, administrator: Officer, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    mine = await officer_id(uows, administrator.username)
    page = (await admin.get("/console/officers")).text
    assert "your account: another administrator changes it" in page
    own = await admin.submit(
        f"/console/officers/{mine}/role", {"role": "senior_officer"}, of="/console/officers"
    )
    assert own.status_code == 409
    assert "nobody changes their own account" in own.text
    async with uows() as uow:
        role = await sql.scalar(uow, "SELECT role FROM officers WHERE id = %(o)s", {"o": mine})
    assert role == "administrator"

    target = await console_support.officer(uows, "officer")
    ident = await officer_id(uows, target.username)
    clock.advance(minutes=5, seconds=1)
    stale = await admin.submit(f"/console/officers/{ident}/disable", {}, of="/console/officers")
    assert stale.status_code == 303
    assert stale.headers["location"] == "/console/step-up?next=/console/officers"
    async with uows() as uow:
        disabled = await sql.scalar(
            uow, "SELECT disabled_at FROM officers WHERE id = %(o)s", {"o": ident}
        )
    assert disabled is None


async def test_an_officer_sees_no_officers_page(
    api: Api, other: Browser, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.freeze()
    await other.sign_in(await console_support.officer(uows, "senior_officer"))
    assert 'href="/console/officers"' not in (await other.get("/console")).text
    refused = await other.get("/console/officers")
    assert refused.status_code == 403
    made = await other.submit(
        "/console/officers",
        {"username": "sneaky", "display_name": "S", "role": "administrator"},
        of="/console",
    )
    assert made.status_code == 403
    async with uows() as uow:
        assert await sql.scalar(uow, "SELECT 1 FROM officers WHERE username = 'sneaky'", {}) is None
