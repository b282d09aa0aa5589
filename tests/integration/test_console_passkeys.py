"""Passkeys' refusals, as the console's endpoints answer them to a script (the ceremonies
themselves run in Chromium with a virtual authenticator: tests/e2e/test_console_browser.py)."""

import json
from collections.abc import AsyncIterator

import pytest

from core.uow import UnitOfWorkFactory
from tests import console_support
from tests.conftest import Api, Clock
from tests.console_support import Browser, csrf_of

FORGED = json.dumps(
    {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"},
    }
)


@pytest.fixture
async def browser(api: Api, clock: Clock) -> AsyncIterator[Browser]:
    made = Browser(api.app, clock)
    yield made
    await made.aclose()


async def test_sign_in_options_ask_for_user_verification_and_a_forged_answer_is_refused(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    page = await browser.get("/console/sign-in")
    assert 'data-passkey="sign-in"' in page.text
    options = await browser.http.post(
        "/console/passkeys/sign-in/options", data={"csrf": csrf_of(page)}
    )
    assert options.status_code == 200
    assert options.json()["userVerification"] == "required"
    assert options.json()["rpId"] == "127.0.0.1"
    forged = await browser.http.post(
        "/console/passkeys/sign-in", data={"csrf": csrf_of(page), "credential": FORGED}
    )
    assert forged.status_code == 401
    assert forged.json() == {"error": "This passkey did not sign you in."}
    again = await browser.http.post(  # the challenge went with the first answer
        "/console/passkeys/sign-in", data={"csrf": csrf_of(page), "credential": FORGED}
    )
    assert again.status_code == 401
    assert (await browser.get("/console")).headers["location"] == "/console/sign-in"
    no_csrf = await browser.http.post("/console/passkeys/sign-in", data={"credential": FORGED})
    assert no_csrf.status_code == 403


async def test_registering_needs_a_signed_in_officer_and_its_own_challenge(
    browser: Browser, uows: UnitOfWorkFactory
) -> None:
    refused = await browser.http.post("/console/passkeys/options", data={"csrf": "x"})
    assert refused.headers["location"] == "/console/sign-in"
    officer = await console_support.officer(uows, "officer")
    await browser.sign_in(officer)
    security = await browser.get("/console/security")
    assert "No passkey yet." in security.text
    csrf = csrf_of(security)
    no_ceremony = await browser.http.post(
        "/console/passkeys", data={"csrf": csrf, "credential": FORGED}
    )
    assert no_ceremony.status_code == 400
    options = await browser.http.post("/console/passkeys/options", data={"csrf": csrf})
    created = options.json()
    assert created["authenticatorSelection"]["residentKey"] == "required"
    assert created["authenticatorSelection"]["userVerification"] == "required"
    forged = await browser.http.post("/console/passkeys", data={"csrf": csrf, "credential": FORGED})
    assert forged.status_code == 400
    assert forged.json()["error"].startswith("The passkey was not accepted")
