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
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from app.console.web import COOKIE
from app.main import create_app
from compliance.vault import service as vault
from compliance.vault.keys import LocalKeyFile
from core import sql
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import chromium, console_support, factories
from tests.chromium import ROOT, Demo
from tests.conftest import CTX, Clock
from tests.serving import free_socket, serving, url_of

PLAYER = "00000000-0000-4000-8000-000000000001"  # the demo's first player


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
    assert findings == {page: [] for page in findings}


async def test_axe_finds_nothing_serious_or_critical_on_the_pages_each_role_works_in(
    browser: Browser, demo: Demo
) -> None:
    findings: dict[str, list[str]] = {}
    async with new_page(browser, bypass_csp=True) as page:
        await chromium.sign_in(page, demo.url, demo.officers["admin"])
        await page.goto(f"{demo.url}/console/players/{PLAYER}")
        await expect(heading(page)).to_have_text("Not allowed")
        findings["refused"] = await chromium.axe_findings(page)
        await page.goto(f"{demo.url}/console/officers")
        await expect(heading(page)).to_have_text("Officers")
        findings["officers"] = await chromium.axe_findings(page)
    async with new_page(browser, bypass_csp=True) as page:
        await chromium.sign_in(page, demo.url, demo.officers["dpo"])
        await page.goto(f"{demo.url}/console/players/{PLAYER}")
        await expect(page.get_by_role("button", name=re.compile("subject access"))).to_be_visible()
        findings["player, as the DPO"] = await chromium.axe_findings(page)
    async with new_page(browser, bypass_csp=True) as page:
        await chromium.sign_in(page, demo.url, demo.officers["officer"])
        await page.goto(f"{demo.url}/console/players/{PLAYER}")
        await expect(page.get_by_label("KYC level")).to_be_visible()
        findings["player, as an officer"] = await chromium.axe_findings(page)
        await page.goto(f"{demo.url}/console/approvals")
        findings["four-eyes"] = await chromium.axe_findings(page)
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
    clock.freeze()
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


async def personal_player(local: Local, vault_uows: UnitOfWorkFactory, keys: LocalKeyFile) -> str:
    player = await factories.committed_player(local.uows, cash="10.00")
    async with vault_uows() as uow:
        await vault.store(
            uow,
            player_id=player,
            data=vault.PersonalData(legal_name="Ilse Vella"),
            keys=keys,
            ctx=CTX,
        )
        await uow.commit()
    return str(player)


async def test_a_reveal_asks_for_the_second_factor_again_after_5_minutes(
    browser: Browser, local: Local, vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> None:
    player = await personal_player(local, vault_uows, vault_keys)
    officer = await console_support.officer(local.uows, "officer")
    async with new_page(browser) as page:
        await chromium.sign_in(page, local.url, officer, local.clock)
        local.clock.advance(minutes=6)
        await page.goto(f"{local.url}/console/players/{player}")
        await page.get_by_label("Purpose").select_option("kyc_review")
        await page.get_by_role("button", name="Reveal").click()
        await expect(heading(page)).to_have_text("Confirm it is you")
        local.clock.advance(seconds=30)  # the authenticator's next code
        await page.get_by_label("Code", exact=True).fill(chromium.code(officer, local.clock))
        await page.get_by_role("button", name="Confirm", exact=True).click()
        await expect(heading(page)).to_have_text(f"Player {player}")
        await page.get_by_label("Purpose").select_option("kyc_review")
        await page.get_by_role("button", name="Reveal").click()
        await expect(page.locator(".revealed")).to_have_text("Ilse Vella")


async def test_an_auditor_sees_the_player_but_no_reveal(
    browser: Browser, local: Local, vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> None:
    player = await personal_player(local, vault_uows, vault_keys)
    auditor = await console_support.officer(local.uows, "auditor")
    async with new_page(browser) as page:
        await chromium.sign_in(page, local.url, auditor, local.clock)
        await page.goto(f"{local.url}/console/players/{player}")
        await expect(heading(page)).to_have_text(f"Player {player}")
        await expect(page.get_by_role("button", name="Reveal")).to_have_count(0)
        refused = await page.request.post(  # the form the page does not offer, sent anyway
            f"{local.url}/console/players/{player}/reveal",
            form={
                "field": "legal_name",
                "purpose": "kyc_review",
                "csrf": await page.locator("input[name=csrf]").first.get_attribute("value") or "",
            },
        )
        assert refused.status == 403
        assert "Your role does not allow this." in await refused.text()


async def test_a_four_eyes_request_is_refused_to_its_author_and_approved_by_another(
    browser: Browser, local: Local
) -> None:
    first = await console_support.officer(local.uows, "senior_officer")
    second = await console_support.officer(local.uows, "senior_officer")
    async with new_page(browser) as alice, new_page(browser) as bob:
        await chromium.sign_in(alice, local.url, first, local.clock)
        await chromium.sign_in(bob, local.url, second, local.clock)
        await alice.goto(f"{local.url}/console/kill-switches")
        row = alice.get_by_role("row", name=re.compile("^deposit"))
        await row.get_by_label("Reason for deposit").fill("provider incident")
        await row.get_by_role("button", name="Switch off").click()
        await expect(row.get_by_role("cell").nth(0)).to_have_text("off")
        await row.get_by_label("Reason for deposit").fill("incident over")
        await row.get_by_role("button", name="Ask to switch on").click()
        await expect(heading(alice)).to_have_text("Four-eyes requests")
        await expect(alice.get_by_text("your request: another officer decides")).to_be_visible()
        await bob.goto(f"{local.url}/console/approvals")
        await bob.get_by_label("Reason for your decision").first.fill("checked")
        await bob.get_by_role("button", name="Approve").first.click()
        await expect(bob.get_by_text("approved by")).to_be_visible()
        await bob.goto(f"{local.url}/console/kill-switches")
        deposit = bob.get_by_role("row", name=re.compile("^deposit"))
        await expect(deposit.get_by_role("cell").nth(0)).to_have_text("on")


async def test_a_passkey_signs_in_with_chromiums_virtual_authenticator(
    browser: Browser, local: Local
) -> None:
    """WebAuthn needs a secure context and a domain for its RP ID: the page is on localhost."""
    site = local.url.replace("127.0.0.1", "localhost")
    officer = await console_support.officer(local.uows, "dpo")
    async with new_page(browser) as page:
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")
        await cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                }
            },
        )
        await chromium.sign_in(page, site, officer, local.clock)
        await page.goto(f"{site}/console/security")
        await page.get_by_label("Name of the new passkey").fill("Laptop")
        await page.get_by_role("button", name="Add a passkey").click()
        await expect(page.get_by_role("cell", name="Laptop")).to_be_visible()
        await page.goto(f"{site}/console/sessions")
        await page.get_by_role("button", name="Sign out").click()
        await expect(heading(page)).to_have_text("Sign in")
        await page.get_by_role("button", name="Sign in with a passkey").click()
        await expect(heading(page)).to_have_text(re.compile("^Welcome, "))
    async with local.uows() as uow:
        factor = await sql.scalar(
            uow,
            "SELECT envelope->'data'->>'factor' FROM journal_events"
            " WHERE event = 'console.signed_in' ORDER BY id DESC LIMIT 1",
            {},
        )
    assert factor == "passkey"
