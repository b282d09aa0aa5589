"""The officers' console in a real browser: Debian's Chromium driven by Playwright against
`pitwarden serve --demo` (the session's expiry against the app served on loopback by uvicorn,
with a clock the test moves). axe-core, run inside the pages, finds nothing serious.

A demo officer enrols TOTP at their first sign-in and keeps it for the server's life, so each
test that must see the enrolment has a demo officer of its own: mlro (without JavaScript),
regulator (keyboard alone), auditor (axe); officer ends a session, dpo signs out, admin is
refused."""

import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from app.console.web import COOKIE
from app.main import create_app
from compliance.vault.keys import LocalKeyFile
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import chromium, console_support
from tests.chromium import ROOT, Demo
from tests.conftest import Clock
from tests.serving import free_socket, serving, url_of

PLAYER = "00000000-0000-4000-8000-000000000001"  # the demo's first player
BASE = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)  # a clock the test sets, never the calendar's


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    data_dir = ROOT / "var" / f"e2e-browser-{uuid.uuid4().hex[:8]}"
    started = chromium.start_demo(data_dir)
    yield started
    chromium.stop_demo(started)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await chromium.launch(playwright)
        yield launched
        await launched.close()


@contextlib.asynccontextmanager
async def new_page(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    """A page in a fresh browser profile (its own cookies), as on another computer."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.set_default_timeout(chromium.WAIT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


def heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


async def focus_ring(page: Page) -> str:
    """The outline of the focused element, as the browser draws it ("solid 3px ...")."""
    return str(
        await page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
                       return `${s.outlineStyle} ${s.outlineWidth} ${s.outlineColor}`; }"""
        )
    )


async def test_first_sign_in_enrols_totp_and_a_player_opens_without_javascript(
    browser: Browser, demo: Demo
) -> None:
    officer = demo.officers["mlro"]
    async with new_page(browser, java_script_enabled=False) as page:
        await page.goto(f"{demo.url}/console")
        assert page.url == f"{demo.url}/console/sign-in"
        await page.get_by_label("Name", exact=True).fill(officer.username)
        await page.get_by_label("Password", exact=True).fill(officer.password)
        await page.get_by_role("button", name="Continue").click()

        await expect(heading(page)).to_have_text("Set up your second factor")
        await expect(page.locator("figure.qr svg")).to_be_visible()
        officer.totp = await page.locator("code.secret").inner_text()
        await page.get_by_label("Code from the app").fill(chromium.code(officer))
        await page.get_by_role("button", name="Confirm").click()

        await expect(heading(page)).to_have_text("Your recovery codes")
        codes = await page.locator("ol.codes code").all_inner_texts()
        assert len(set(codes)) == 10
        await page.get_by_role("link", name="Continue to the console").click()

        await expect(heading(page)).to_have_text("Welcome, Marek Lind (MLRO)")
        await page.get_by_label("Player id").fill(PLAYER)
        await page.get_by_role("button", name="Open").click()
        await expect(heading(page)).to_have_text(f"Player {PLAYER}")
        money = page.locator("section", has=page.get_by_role("heading", name="Money"))
        await expect(money).to_contain_text(demo.cash[PLAYER])


async def test_keyboard_alone_signs_in_and_shows_where_the_focus_is(
    browser: Browser, demo: Demo
) -> None:
    officer = demo.officers["regulator"]
    async with new_page(browser) as page:
        keys = page.keyboard
        await page.goto(f"{demo.url}/console/sign-in")
        await expect(page.get_by_label("Name", exact=True)).to_be_focused()
        await keys.type(officer.username)
        await keys.press("Tab")
        await expect(page.get_by_label("Password", exact=True)).to_be_focused()
        await keys.type(officer.password)
        await keys.press("Tab")
        await expect(page.get_by_role("button", name="Continue")).to_be_focused()
        assert re.match(r"solid [23]px ", await focus_ring(page))
        await keys.press("Enter")

        await expect(heading(page)).to_have_text("Set up your second factor")
        await expect(page.get_by_label("Code from the app")).to_be_focused()
        officer.totp = await page.locator("code.secret").inner_text()
        await keys.type(chromium.code(officer))
        await keys.press("Enter")

        await expect(heading(page)).to_have_text("Your recovery codes")
        onward = page.get_by_role("link", name="Continue to the console")
        for _ in range(5):  # the skip link, the brand, then the way on
            await keys.press("Tab")
            if await onward.evaluate("(link) => link === document.activeElement"):
                break
        await expect(onward).to_be_focused()
        assert re.match(r"solid [23]px ", await focus_ring(page))
        await keys.press("Enter")

        await expect(heading(page)).to_have_text("Welcome, Rui Costa (regulator)")
        await keys.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        await expect(skip).to_be_focused()
        box = await skip.bounding_box()
        assert box is not None
        assert box["x"] >= 0  # off-screen until focused, then in view
        await keys.press("Enter")
        await keys.press("Tab")  # the next stop is in the page's content, not the header
        await expect(page.get_by_label("Player id")).to_be_focused()


async def test_an_officer_ends_their_other_session_from_my_sessions(
    browser: Browser, demo: Demo
) -> None:
    officer = demo.officers["officer"]
    async with new_page(browser) as laptop, new_page(browser) as desk:
        await chromium.sign_in(laptop, demo.url, officer)
        await chromium.sign_in(desk, demo.url, officer)
        await desk.get_by_role("link", name="My sessions").click()
        rows = desk.locator("tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.filter(has_text="(this one)")).to_have_count(1)
        await rows.filter(has_not_text="(this one)").get_by_role("button", name="End").click()
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("(this one)")

        await laptop.reload()
        await expect(heading(laptop)).to_have_text("Sign in")
        await expect(laptop.get_by_role("status")).to_have_text(
            "This session was ended from another session."
        )
        await desk.get_by_role("link", name="Home").click()
        await expect(heading(desk)).to_have_text("Welcome, Olivia Okafor")


async def test_signing_out_ends_the_session_and_back_does_not_show_the_console(
    browser: Browser, demo: Demo
) -> None:
    officer = demo.officers["dpo"]
    async with new_page(browser) as page:
        await chromium.sign_in(page, demo.url, officer)
        home = await page.reload()
        kept = next(c["value"] for c in await page.context.cookies() if c["name"] == COOKIE)
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("status")).to_have_text("You are signed out.")

        await page.go_back()
        await expect(heading(page)).to_have_text("Sign in")
        await expect(page.locator("body")).not_to_contain_text("Welcome")
        await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
        assert home is not None
        assert home.headers.get("cache-control") == "no-store"  # nor kept on disk

        # the old token again, had someone copied it: the server ended the session
        await page.context.add_cookies(
            [{"name": COOKIE, "value": kept, "domain": "127.0.0.1", "path": "/console"}]
        )
        await page.goto(f"{demo.url}/console")
        await expect(heading(page)).to_have_text("Sign in")


async def test_an_administrator_is_refused_a_players_page(browser: Browser, demo: Demo) -> None:
    async with new_page(browser) as page:
        await chromium.sign_in(page, demo.url, demo.officers["admin"])
        await page.get_by_label("Player id").fill(PLAYER)
        await page.get_by_role("button", name="Open").click()
        await expect(heading(page)).to_have_text("Not allowed")
        await expect(page.get_by_role("alert")).to_have_text("Your role does not allow this.")
        await expect(page.locator("main")).not_to_contain_text(demo.cash[PLAYER])


async def test_axe_finds_nothing_serious_or_critical_on_the_main_pages(
    browser: Browser, demo: Demo
) -> None:
    officer = demo.officers["auditor"]
    findings: dict[str, list[str]] = {}
    async with new_page(browser, bypass_csp=True) as page:
        await page.goto(f"{demo.url}/console/sign-in")
        findings["sign-in"] = await chromium.axe_findings(page)
        await page.get_by_label("Name", exact=True).fill(officer.username)
        await page.get_by_label("Password", exact=True).fill("not the password")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("alert")).to_be_visible()
        findings["sign-in refused"] = await chromium.axe_findings(page)
        await page.get_by_label("Name", exact=True).fill(officer.username)
        await page.get_by_label("Password", exact=True).fill(officer.password)
        await page.get_by_role("button", name="Continue").click()
        await expect(heading(page)).to_have_text("Set up your second factor")
        findings["enrol"] = await chromium.axe_findings(page)
        officer.totp = await page.locator("code.secret").inner_text()
        await page.get_by_label("Code from the app").fill(chromium.code(officer))
        await page.get_by_role("button", name="Confirm").click()
        await expect(heading(page)).to_have_text("Your recovery codes")
        findings["recovery codes"] = await chromium.axe_findings(page)
        await page.get_by_role("link", name="Continue to the console").click()
        await expect(heading(page)).to_have_text(re.compile("^Welcome"))
        findings["home"] = await chromium.axe_findings(page)
        await page.goto(f"{demo.url}/console/players/{PLAYER}")
        await expect(heading(page)).to_have_text(f"Player {PLAYER}")
        findings["player"] = await chromium.axe_findings(page)
        await page.goto(f"{demo.url}/console/sessions")
        findings["my sessions"] = await chromium.axe_findings(page)
        await page.goto(f"{demo.url}/console/step-up?next=/console")
        await expect(heading(page)).to_have_text("Confirm it is you")
        findings["step-up"] = await chromium.axe_findings(page)
    async with new_page(browser, bypass_csp=True) as page:
        await page.goto(f"{demo.url}/console/sign-in")
        await page.get_by_label("Name", exact=True).fill(officer.username)
        await page.get_by_label("Password", exact=True).fill(officer.password)
        await page.get_by_role("button", name="Continue").click()
        await expect(heading(page)).to_have_text("Second factor")
        findings["second factor"] = await chromium.axe_findings(page)
    async with new_page(browser, bypass_csp=True) as page:
        await chromium.sign_in(page, demo.url, demo.officers["admin"])
        await page.goto(f"{demo.url}/console/players/{PLAYER}")
        await expect(heading(page)).to_have_text("Not allowed")
        findings["refused"] = await chromium.axe_findings(page)
    assert findings == {page: [] for page in findings}


@dataclass
class Local:
    """The app in this process, served on loopback, its clock in the test's hand."""

    url: str
    clock: Clock
    uows: UnitOfWorkFactory


@pytest.fixture
async def local(
    clock: Clock,
    committed_uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    settings: Settings,
) -> AsyncIterator[Local]:
    """For what a real server's clock cannot show in a test's time: an expiry, a step-up."""
    clock.now = BASE
    app = create_app(
        settings=replace(settings, payments_config=None, audit_in_server=False),
        uow_factory=committed_uows,
        vault_uow_factory=vault_uows,
        vault_key_provider=vault_keys,
    )
    sock = free_socket()
    async with serving(app, sock):
        yield Local(url_of(sock), clock, committed_uows)


async def test_an_idle_session_ends_after_15_minutes_of_the_servers_clock(
    browser: Browser, local: Local
) -> None:
    officer = await console_support.officer(local.uows, "officer")
    async with new_page(browser) as page:
        await chromium.sign_in(page, local.url, officer, local.clock)
        local.clock.advance(minutes=14, seconds=59)
        await page.reload()
        await expect(heading(page)).to_have_text("Welcome, Test officer")
        local.clock.advance(minutes=15)
        await page.reload()
        await expect(heading(page)).to_have_text("Sign in")
        await expect(page.get_by_role("status")).to_have_text(
            "Your session ended after 15 minutes without activity. Sign in again."
        )
        assert page.url == f"{local.url}/console/sign-in?ended=idle_timeout"
