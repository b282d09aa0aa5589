"""The officers' console as an officer meets it: sign-in with a password and always a second
factor, sessions held by the server, CSRF on every form, throttled guessing, roles decided by
the console ruleset and recorded."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from app.console import demo
from app.console.models import ROLES
from compliance.vault.keys import LocalKeyFile
from core import sql
from core.uow import UnitOfWorkFactory
from tests import console_support, factories
from tests.conftest import CONSOLE_RULESET, Api, Clock
from tests.console_support import Browser


@pytest.fixture
async def browser(api: Api, clock: Clock) -> AsyncIterator[Browser]:
    clock.freeze()
    made = Browser(api.app, clock)
    yield made
    await made.aclose()


async def events(uows: UnitOfWorkFactory, name: str) -> list[dict[str, object]]:
    async with uows() as uow:
        rows = await sql.all_rows(
            uow,
            "SELECT envelope FROM journal_events WHERE event = %(e)s ORDER BY id",
            {"e": name},
        )
    return [row["envelope"] for row in rows]


async def test_first_sign_in_enrols_totp_then_the_console_opens(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "officer")
    assert (await browser.get("/console")).headers["location"] == "/console/sign-in"
    codes = await browser.sign_in(officer)
    assert "Your recovery codes" in codes.text
    assert len(officer.recovery_codes) == 10
    home = await browser.get("/console")
    assert home.status_code == 200
    assert "Welcome, Test officer" in home.text
    assert home.headers["cache-control"] == "no-store"
    signed_in = (await events(uows, "console.signed_in"))[-1]
    assert signed_in["data"]["role"] == "officer"  # type: ignore[index]
    assert signed_in["actor"].startswith("officer:")  # type: ignore[union-attr]

    # the second time: password, then a TOTP code (no enrolment)
    other = Browser(browser.http._transport.app, browser.clock)  # type: ignore[attr-defined]
    try:
        answer = await other.submit(
            "/console/sign-in", {"username": officer.username, "password": officer.password}
        )
        assert answer.headers["location"] == "/console/second-factor"
        wrong = await other.submit("/console/second-factor", {"code": "000000"})
        assert wrong.status_code == 401
        assert "That code is not right" in wrong.text
        right = await other.submit("/console/second-factor", {"code": other.code(officer)})
        assert right.headers["location"] == "/console"
        assert (await other.get("/console")).status_code == 200
    finally:
        await other.aclose()


async def test_a_recovery_code_signs_in_once(
    api: Api, browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "auditor")
    await browser.sign_in(officer)
    code = officer.recovery_codes[0]
    for attempt, expected in ((1, "/console"), (2, None)):
        again = Browser(api.app, browser.clock)
        try:
            await again.submit(
                "/console/sign-in", {"username": officer.username, "password": officer.password}
            )
            answer = await again.submit("/console/second-factor", {"code": code})
            if expected:
                assert answer.headers["location"] == expected, attempt
            else:
                assert answer.status_code == 401, attempt  # used up
        finally:
            await again.aclose()


async def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "officer")
    wrong = await browser.submit(
        "/console/sign-in", {"username": officer.username, "password": "not-the-password"}
    )
    unknown = await browser.submit(
        "/console/sign-in", {"username": "nobody-here", "password": "not-the-password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "The name or the password is not right." in wrong.text
    assert _without_csrf(wrong.text) == _without_csrf(unknown.text)
    failed = await events(uows, "console.sign_in_failed")
    assert [e["data"]["factor"] for e in failed[-2:]] == ["password", "password"]  # type: ignore[index]
    assert (await browser.get("/console")).headers["location"] == "/console/sign-in"


def _without_csrf(text: str) -> str:
    return console_support._CSRF.sub("", text)


async def test_guessing_is_throttled_per_name_with_back_off(
    browser: Browser, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    officer = await console_support.officer(uows, "officer")
    guess = {"username": officer.username, "password": "wrong-guess-123"}
    for _ in range(5):
        assert (await browser.submit("/console/sign-in", guess)).status_code == 401
    right = {"username": officer.username, "password": officer.password}
    locked = await browser.submit("/console/sign-in", right)
    assert locked.status_code == 429
    until = clock() + timedelta(minutes=1)
    assert f"Too many failed attempts: try again after {until:%H:%M} UTC." in locked.text
    unknown = {"username": "ghost-account", "password": "x" * 12}
    for _ in range(5):
        await browser.submit("/console/sign-in", unknown)
    assert (await browser.submit("/console/sign-in", unknown)).status_code == 429  # no tell
    failures = await events(uows, "console.sign_in_failed")
    assert failures[-1]["data"]["locked_until"] is not None  # type: ignore[index]

    clock.advance(minutes=1, seconds=1)
    assert (await browser.submit("/console/sign-in", right)).status_code == 303


async def test_forms_without_this_sessions_csrf_token_do_nothing(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "officer")
    await browser.sign_in(officer)
    for token in ({}, {"csrf": "forged"}):
        refused = await browser.http.post("/console/sign-out", data=token)
        assert refused.status_code == 403
        assert "Nothing was done" in refused.text
    assert (await browser.get("/console")).status_code == 200  # still signed in
    assert len(await events(uows, "security.csrf_refused")) >= 2
    cookieless = Browser(browser.http._transport.app, browser.clock)  # type: ignore[attr-defined]
    try:
        login = {"username": officer.username, "password": officer.password, "csrf": "x"}
        assert (await cookieless.http.post("/console/sign-in", data=login)).status_code == 403
    finally:
        await cookieless.aclose()


async def test_sign_out_ends_the_session_on_the_server(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "dpo")
    await browser.sign_in(officer)
    token = browser.http.cookies["pitwarden_console"]
    out = await browser.submit("/console/sign-out", {}, of="/console")
    assert out.headers["location"] == "/console/sign-in?ended=signed_out"
    browser.http.cookies.set("pitwarden_console", token, domain="127.0.0.1", path="/console")
    assert (await browser.get("/console")).headers["location"].startswith("/console/sign-in")
    ended = (await events(uows, "console.session_ended"))[-1]
    assert ended["data"]["reason"] == "signed_out"  # type: ignore[index]


async def test_idle_and_absolute_timeouts(
    browser: Browser, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    officer = await console_support.officer(uows, "officer")
    await browser.sign_in(officer)
    clock.advance(minutes=14, seconds=59)
    assert (await browser.get("/console")).status_code == 200
    clock.advance(minutes=15)
    idle = await browser.get("/console")
    assert idle.headers["location"] == "/console/sign-in?ended=idle_timeout"
    assert "without activity" in (await browser.get(idle.headers["location"])).text

    await browser.sign_in(officer)
    for _ in range(47):  # busy all day, never idle: still over after 8 hours
        clock.advance(minutes=10)
        assert (await browser.get("/console")).status_code == 200
    clock.advance(minutes=10)
    assert (await browser.get("/console")).headers["location"] == (
        "/console/sign-in?ended=absolute_timeout"
    )


async def test_an_officer_sees_and_ends_their_other_sessions(
    api: Api, browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "officer")
    await browser.sign_in(officer)
    laptop = Browser(api.app, browser.clock)
    try:
        await laptop.submit(
            "/console/sign-in", {"username": officer.username, "password": officer.password}
        )
        await laptop.submit("/console/second-factor", {"code": laptop.code(officer)})
        listed = await browser.get("/console/sessions")
        assert listed.text.count('/end"') == 1  # the other one; this one has no End button
        ref = listed.text.split('action="/console/sessions/')[1].split("/end")[0]
        ended = await browser.submit(f"/console/sessions/{ref}/end", {}, of="/console/sessions")
        assert ended.headers["location"] == "/console/sessions"
        assert (await laptop.get("/console")).headers["location"] == (
            "/console/sign-in?ended=ended_by_officer"
        )
        assert (await browser.get("/console")).status_code == 200
    finally:
        await laptop.aclose()


async def test_the_session_token_changes_at_sign_in(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    officer = await console_support.officer(uows, "officer")
    await browser.get("/console/sign-in")
    before = browser.http.cookies["pitwarden_console"]
    await browser.sign_in(officer)
    assert browser.http.cookies["pitwarden_console"] != before
    fixated = Browser(browser.http._transport.app, browser.clock)  # type: ignore[attr-defined]
    try:
        fixated.http.cookies.set("pitwarden_console", before, domain="127.0.0.1", path="/console")
        assert (await fixated.get("/console")).headers["location"] == "/console/sign-in"
    finally:
        await fixated.aclose()


async def test_the_cookie_is_httponly_strict_and_secure_off_loopback(
    api: Api, clock: Clock
) -> None:
    for host, secure in (("http://127.0.0.1", False), ("https://console.casino.example", True)):
        visitor = Browser(api.app, clock, host=host)
        try:
            cookie = (await visitor.get("/console/sign-in")).headers["set-cookie"]
        finally:
            await visitor.aclose()
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert ("Secure" in cookie) is secure, cookie


async def test_roles_are_decided_by_the_console_ruleset_and_recorded(
    api: Api, browser: Browser, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="42.50")
    admin = await console_support.officer(uows, "administrator")
    await browser.sign_in(admin)
    refused = await browser.get(f"/console/players/{player}")
    assert refused.status_code == 403
    assert "Your role does not allow this." in refused.text
    async with uows() as uow:
        decision = await sql.one(
            uow,
            "SELECT action, effect, reason_code, version, facts, player_id FROM policy_decisions"
            " WHERE player_id = %(p)s AND action LIKE 'console.%%'"  # the clock stands still:
            " ORDER BY decided_at DESC LIMIT 1",  # the funding's decision has the same instant
            {"p": player},
        )
    assert decision is not None
    assert (decision["action"], decision["effect"], decision["reason_code"]) == (
        "console.player.view",
        "deny",
        "role_not_allowed",
    )
    assert decision["version"] == CONSOLE_RULESET
    assert decision["facts"]["role"] == "administrator"
    acted = (await events(uows, "console.action"))[-1]
    assert acted["data"]["role"] == "administrator"  # type: ignore[index]
    assert acted["session_id"] == acted["data"]["session"]  # type: ignore[index]

    officer = await console_support.officer(uows, "officer")
    colleague = Browser(api.app, browser.clock)
    try:
        await colleague.sign_in(officer)
        shown = await colleague.get(f"/console/players/{player}")
        assert shown.status_code == 200, shown.text
        assert "42.50 EUR" in shown.text
        missing = await colleague.get("/console/players/00000000-0000-4000-8000-00000000dead")
        assert missing.status_code == 404
    finally:
        await colleague.aclose()


async def test_a_page_without_a_session_leads_to_sign_in(browser: Browser) -> None:
    for path in ("/console", "/console/sessions", "/console/players/x", "/console/step-up"):
        answer = await browser.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/sign-in")


def test_the_demo_officers_cover_every_role() -> None:
    assert sorted(role for _, _, role in demo.OFFICERS) == sorted(ROLES)


async def test_a_reveal_needs_the_role_the_second_factor_within_5_minutes_and_a_purpose(
    api: Api,
    browser: Browser,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    clock: Clock,
) -> None:
    player = await console_support.player_with_personal_data(uows, vault_uows, vault_keys)
    officer = await console_support.officer(uows, "officer")
    await browser.sign_in(officer)
    page = f"/console/players/{player}"
    shown = await browser.get(page)
    assert "Ilse Vella" not in shown.text  # masked
    assert "Reveal" in shown.text
    ask = {"field": "legal_name", "purpose": "kyc_review"}
    revealed = await browser.submit(f"{page}/reveal", ask, of=page)
    assert revealed.status_code == 200, revealed.text
    assert "Ilse Vella" in revealed.text  # the second factor was given at sign-in, 0 s ago
    assert revealed.headers["cache-control"] == "no-store"

    clock.advance(minutes=5, seconds=1)
    stale = await browser.submit(f"{page}/reveal", ask, of=page)
    assert stale.status_code == 303
    assert stale.headers["location"] == f"/console/step-up?next={page}"
    step_up = await browser.get(stale.headers["location"])
    assert "Confirm it is you" in step_up.text
    wrong = await browser.submit(
        "/console/step-up", {"code": "123456", "next": page}, of=stale.headers["location"]
    )
    assert wrong.status_code == 401
    clock.advance(seconds=30)  # the next TOTP period: the code the officer's app shows now
    back = await browser.submit(
        "/console/step-up",
        {"code": browser.code(officer), "next": page},
        of=stale.headers["location"],
    )
    assert back.headers["location"] == page
    again = await browser.submit(f"{page}/reveal", ask, of=page)
    assert "Ilse Vella" in again.text

    async with uows() as uow:
        kinds = await sql.all_rows(
            uow,
            "SELECT event, envelope->'data'->>'reason_code' AS reason FROM journal_events"
            " WHERE player_id = %(p)s AND event IN ('console.action', 'vault.field_revealed')"
            " ORDER BY id",
            {"p": player},
        )
    reveals = [(k["event"], k["reason"]) for k in kinds if k["event"] == "vault.field_revealed"]
    assert len(reveals) == 2
    refusals = [k["reason"] for k in kinds if k["event"] == "console.action"]
    assert "step_up_required" in refusals


async def test_an_auditor_is_refused_a_reveal_and_a_dpo_a_purpose_not_theirs(
    api: Api,
    browser: Browser,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> None:
    player = await console_support.player_with_personal_data(uows, vault_uows, vault_keys)
    page = f"/console/players/{player}"
    auditor = await console_support.officer(uows, "auditor")
    await browser.sign_in(auditor)
    shown = await browser.get(page)
    assert shown.status_code == 200
    assert ">Reveal<" not in shown.text  # no purpose to state: no form
    refused = await browser.submit(
        f"{page}/reveal", {"field": "legal_name", "purpose": "kyc_review"}, of=page
    )
    assert refused.status_code == 403
    assert "Your role does not allow this." in refused.text

    dpo = await console_support.officer(uows, "dpo")
    other = Browser(api.app, browser.clock)
    try:
        await other.sign_in(dpo)
        not_theirs = await other.submit(
            f"{page}/reveal", {"field": "legal_name", "purpose": "kyc_review"}, of=page
        )
        assert not_theirs.status_code == 403
        assert "Not revealed" in not_theirs.text
        assert "Ilse Vella" not in not_theirs.text
        dsar = await other.submit(f"{page}/reveal", {"field": "email", "purpose": "dsar"}, of=page)
        assert "ilse@example.org" in dsar.text
    finally:
        await other.aclose()
