"""Single sign-on into the console through a real OpenID provider (tests/oidc): the identity
must be an officer's, a callback works once, a callback the browser sends without the cookie
goes on from a page of ours, and an SSO officer steps up at the provider."""

import dataclasses
import html
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest

from app.console import accounts, sso
from compliance.vault.keys import LocalKeyFile
from core import sql
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, Api, Clock, make_api
from tests.console_support import Browser
from tests.oidc_support import (
    Provider,
    oidc_provider_fixture,  # noqa: F401 - provides the fixture oidc_provider
    sign_in_at_provider,
)


@pytest.fixture
async def sso_api(
    uows: UnitOfWorkFactory,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    oidc_provider: Provider,
) -> AsyncIterator[Api]:
    configured = dataclasses.replace(
        settings,
        console_oidc_issuer=oidc_provider.issuer,
        console_oidc_client_id=oidc_provider.client_id,
        console_oidc_client_secret=oidc_provider.client_secret,
        console_url=oidc_provider.redirect_uri.removesuffix("/console/oidc/callback"),
    )
    made = await make_api(uows, configured, vault_uows, vault_keys)
    yield made
    await made.http.aclose()


async def sso_officer(uows: UnitOfWorkFactory, provider: Provider, sub: str) -> uuid.UUID:
    async with uows() as uow:
        officer = await accounts.create(
            uow,
            username=f"sso-{sub}-{uuid.uuid4().hex[:6]}",
            display_name=provider.account(sub).name,
            role="senior_officer",
            password=None,
            oidc=(provider.issuer, sub),
            ctx=CTX,
        )
        await uow.commit()
    return officer.id


async def through_the_provider(
    browser: Browser, provider: Provider, login: str, **form: str
) -> str:
    """Press "Sign in with your organisation", sign in at the provider; the callback's URL."""
    page = form.pop("page", "/console/sign-in")
    begun = await browser.submit("/console/sso", form, of=page)
    assert begun.status_code == 303, begun.text
    assert begun.headers["location"].startswith(provider.issuer)
    params = await sign_in_at_provider(provider, begun.headers["location"], login=login)
    return f"/console/oidc/callback?{urlencode(params)}"


async def test_an_officer_signs_in_at_the_provider_and_the_callback_works_once(
    sso_api: Api, uows: UnitOfWorkFactory, clock: Clock, oidc_provider: Provider
) -> None:
    await sso_officer(uows, oidc_provider, "ada")
    browser = Browser(sso_api.app, clock)
    try:
        assert "Sign in with your organisation" in (await browser.get("/console/sign-in")).text
        callback = await through_the_provider(browser, oidc_provider, "ada")
        landed = await browser.get(callback)
        assert landed.headers["location"] == "/console", landed.text
        assert "Ada Lovelace" in (await browser.get("/console")).text
        async with uows() as uow:
            factor = await sql.scalar(
                uow,
                "SELECT envelope->'data'->>'factor' FROM journal_events"
                " WHERE event = 'console.signed_in' ORDER BY id DESC LIMIT 1",
                {},
            )
        assert factor == "oidc"
    finally:
        await browser.aclose()

    replay = Browser(sso_api.app, clock)  # someone who copied the callback URL
    try:
        await replay.get("/console/sign-in")
        replayed = await replay.get(callback)
        assert replayed.headers["location"] == "/console/sign-in"  # nothing waits for it
        assert (await replay.get("/console")).headers["location"] == "/console/sign-in"
    finally:
        await replay.aclose()


async def test_a_callback_without_the_cookie_goes_on_from_a_page_of_this_site(
    sso_api: Api, uows: UnitOfWorkFactory, clock: Clock, oidc_provider: Provider
) -> None:
    """A browser keeps the SameSite=Strict cookie back when the provider's page, on another
    site, sends it to the callback (tests/e2e/test_console_browser_sso.py shows it in Chromium):
    the callback answers a page that goes on, from this site, with the same query, and the
    sign-in waiting in the session is still there when the cookie comes along."""
    await sso_officer(uows, oidc_provider, "ada")
    browser = Browser(sso_api.app, clock)
    from_the_provider = httpx.AsyncClient(  # the same browser, its cookie kept back
        transport=httpx.ASGITransport(app=sso_api.app), base_url="http://127.0.0.1"
    )
    try:
        callback = await through_the_provider(browser, oidc_provider, "ada")
        bounced = await from_the_provider.get(callback)
        assert bounced.status_code == 200, bounced.text
        assert "set-cookie" not in bounced.headers
        refresh = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', bounced.text)
        assert refresh, bounced.text
        onward = html.unescape(refresh.group(1))
        assert onward == callback.replace(sso.CALLBACK, sso.RETURN, 1)

        landed = await browser.get(onward)
        assert landed.headers["location"] == "/console", landed.text
        assert "Welcome, Ada Lovelace" in (await browser.get("/console")).text
        again = await browser.get(onward)  # used once, by whichever way it came
        assert again.headers["location"] == "/console/sign-in"
    finally:
        await from_the_provider.aclose()
        await browser.aclose()


async def test_an_identity_without_an_officer_is_refused(
    sso_api: Api, uows: UnitOfWorkFactory, clock: Clock, oidc_provider: Provider
) -> None:
    browser = Browser(sso_api.app, clock)
    try:
        callback = await through_the_provider(browser, oidc_provider, "grace")
        refused = await browser.get(callback)
        assert refused.status_code == 401
        assert "There is no console account for this identity." in refused.text
        assert (await browser.get("/console")).headers["location"] == "/console/sign-in"
        again = await browser.get(callback)  # the same callback twice: used up
        assert again.headers["location"] == "/console/sign-in"
    finally:
        await browser.aclose()


async def test_a_forged_state_is_refused(
    sso_api: Api, uows: UnitOfWorkFactory, clock: Clock, oidc_provider: Provider
) -> None:
    await sso_officer(uows, oidc_provider, "ada")
    browser = Browser(sso_api.app, clock)
    try:
        callback = await through_the_provider(browser, oidc_provider, "ada")
        forged = callback.replace("state=", "state=x", 1)
        refused = await browser.get(forged)
        assert refused.status_code == 401
        assert (await browser.get("/console")).headers["location"] == "/console/sign-in"
    finally:
        await browser.aclose()


async def test_an_sso_officer_steps_up_at_the_provider(
    sso_api: Api, uows: UnitOfWorkFactory, clock: Clock, oidc_provider: Provider
) -> None:
    await sso_officer(uows, oidc_provider, "ada")
    player = await factories.committed_player(uows)
    browser = Browser(sso_api.app, clock)
    try:
        await browser.get(await through_the_provider(browser, oidc_provider, "ada"))
        clock.advance(minutes=6)
        page = f"/console/players/{player}"
        stale = await browser.submit(
            f"{page}/reveal", {"field": "legal_name", "purpose": "kyc_review"}, of=page
        )
        step_up = stale.headers["location"]
        assert "Confirm with your organisation's sign-in" in (await browser.get(step_up)).text
        callback = await through_the_provider(
            browser, oidc_provider, "ada", page=step_up, next=page
        )
        back = await browser.get(callback)
        assert back.headers["location"] == page
        again = await browser.submit(
            f"{page}/reveal", {"field": "legal_name", "purpose": "kyc_review"}, of=page
        )
        assert again.status_code != 303  # stepped up: the console allows it (the vault decides)
    finally:
        await browser.aclose()
