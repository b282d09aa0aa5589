"""Single sign-on into the console in a real browser: Debian's Chromium, driven by Playwright,
against `pitwarden serve --demo` configured through its PITWARDEN_CONSOLE_OIDC_* settings, and
the real OpenID provider of tests/oidc (oidc-provider under Node), whose own login and consent
pages the officer fills in.

The console is reached at localhost and the provider at 127.0.0.1: two sites, as an
organisation's provider is another site than its console, so the browser keeps the console's
SameSite=Strict cookie back on the way from the provider to the callback (decision 0019 says
how the console goes on). Officers are created as an operator does, with `pitwarden officers
create NAME --role R --oidc-issuer URL --oidc-subject SUB`."""

import contextlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from app.console.sso import CALLBACK, NO_ACCOUNT, RETURN
from tests import chromium
from tests.chromium import PITWARDEN, ROOT, Demo
from tests.oidc_support import Provider, running_provider


@dataclass(frozen=True)
class Sso:
    """The console with single sign-on, and the provider it trusts."""

    url: str
    demo: Demo
    data_dir: Path
    provider: Provider

    def create_officer(self, username: str, *, role: str, name: str, subject: str) -> None:
        """`pitwarden officers create` for the provider's account `subject`, on the server's
        data directory (the CLI joins the server's embedded PostgreSQL)."""
        done = subprocess.run(  # noqa: S603 - our own console script, arguments we chose
            [
                str(PITWARDEN),
                "officers",
                "create",
                username,
                "--role",
                role,
                "--name",
                name,
                "--oidc-issuer",
                self.provider.issuer,
                "--oidc-subject",
                subject,
            ],
            env=os.environ | {"PITWARDEN_DATA_DIR": str(self.data_dir)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"officer={username} role={role}" in done.stdout
        assert "password=" not in done.stdout  # it signs in at the provider, never here


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sso]:
    port = chromium.free_port()
    url = f"http://localhost:{port}"
    with running_provider(
        tmp_path_factory.mktemp("oidc"), redirect_uris=[f"{url}{CALLBACK}"]
    ) as provider:
        data_dir = ROOT / "var" / f"e2e-sso-{uuid.uuid4().hex[:8]}"
        demo = chromium.start_demo(
            data_dir,
            port=port,
            env={
                "PITWARDEN_CONSOLE_OIDC_ISSUER": provider.issuer,
                "PITWARDEN_CONSOLE_OIDC_CLIENT_ID": provider.client_id,
                "PITWARDEN_CONSOLE_OIDC_CLIENT_SECRET": provider.client_secret,
                "PITWARDEN_CONSOLE_URL": url,
            },
        )
        try:
            yield Sso(url, demo, data_dir, provider)
        finally:
            chromium.stop_demo(demo)
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await chromium.launch(playwright)
        yield launched
        await launched.close()


@contextlib.asynccontextmanager
async def new_page(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    """A page in a fresh browser profile (its own cookies, at the console and the provider)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.set_default_timeout(chromium.WAIT_MS)
    # The provider's pages @import a web font from the internet, which this machine cannot reach.
    await context.route(re.compile(r"^https://fonts\.googleapis\.com/"), lambda r: r.abort())
    try:
        yield await context.new_page()
    finally:
        await context.close()


def heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


async def sign_in_at_the_provider(page: Page, sso: Sso, login: str) -> None:
    """From the console's sign-in page, through the provider's pages as an officer fills them in:
    the organisation's button, the provider's login (any password: its development login), its
    consent; the browser then goes back to the console."""
    await page.get_by_role("button", name="Sign in with your organisation").click()
    await expect(heading(page)).to_have_text("Sign-in")
    assert page.url.startswith(f"{sso.provider.issuer}/interaction/"), page.url
    await page.get_by_placeholder("Enter any login").fill(login)
    await page.get_by_placeholder("and password").fill("a password the provider checks")
    await page.get_by_role("button", name="Sign-in").click()
    await expect(heading(page)).to_have_text("Authorize")
    await expect(page.locator("body")).to_contain_text("email")  # what the console asks to see
    await page.get_by_role("button", name="Continue").click()


async def test_an_officer_signs_in_through_the_provider_and_the_session_says_so(
    browser: Browser, sso: Sso
) -> None:
    sso.create_officer("ada.lovelace", role="senior_officer", name="Ada Lovelace", subject="ada")
    async with new_page(browser) as page:
        await page.goto(f"{sso.url}/console")
        assert page.url == f"{sso.url}/console/sign-in"
        await sign_in_at_the_provider(page, sso, "ada")

        await expect(heading(page)).to_have_text("Welcome, Ada Lovelace")
        assert page.url == f"{sso.url}/console"
        await expect(page.locator("header .who")).to_have_text(
            re.compile(r"^\s*Ada Lovelace · senior officer\s*Sign out\s*$")
        )
        you = page.locator("section", has=page.get_by_role("heading", name="You"))
        await expect(you).to_contain_text("senior officer")
        await expect(you).to_contain_text("ada.lovelace")

        # This session is the provider's: the console's activity says how it began.
        await page.get_by_role("link", name="My sessions").click()
        this = page.locator("tbody tr", has_text="(this one)").locator("code")
        session = await this.inner_text()
        await page.get_by_role("link", name="Activity").click()
        await expect(heading(page)).to_have_text("Console activity")
        began = page.locator("tbody tr", has_text="console.signed_in").filter(has_text=session)
        await expect(began).to_have_count(1)
        await expect(began).to_contain_text("signed in (oidc)")
        await expect(began).to_contain_text("ada.lovelace (senior officer)")

        # Signing out ends the console's session (the provider keeps its own, as providers do).
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("status")).to_have_text("You are signed out.")
        await page.goto(f"{sso.url}/console")
        await expect(heading(page)).to_have_text("Sign in")


async def test_an_identity_that_is_no_officers_is_refused_and_gets_no_console(
    browser: Browser, sso: Sso
) -> None:
    """grace signs in at the provider, but no officer has her identity (issuer, subject)."""
    async with new_page(browser) as page:
        await page.goto(f"{sso.url}/console/sign-in")
        await sign_in_at_the_provider(page, sso, "grace")

        await expect(heading(page)).to_have_text("Sign in")
        await expect(page.get_by_role("alert")).to_have_text(NO_ACCOUNT)
        assert page.url.startswith(f"{sso.url}{RETURN}?"), page.url  # not the console
        await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
        await expect(page.locator("body")).not_to_contain_text("Welcome")
        await expect(page.locator("body")).not_to_contain_text("Grace Hopper")

        await page.reload()  # the same answer from the provider again: used up
        await expect(heading(page)).to_have_text("Sign in")
        await expect(page.get_by_role("alert")).to_have_count(0)
        await page.goto(f"{sso.url}/console")
        assert page.url == f"{sso.url}/console/sign-in"
