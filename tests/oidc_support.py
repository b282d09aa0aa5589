"""A real OpenID provider for the console's sign-in tests, and an officer's browser to use it.

`running_provider` starts tests/oidc/provider.mjs (the npm package oidc-provider, under Node;
`make test` installs it with `npm ci --prefix tests/oidc`) on a free loopback port, waits for
its discovery document, and stops it; the `oidc_provider` fixture does so once per test module
(import `oidc_provider_fixture` into the test module to use it).
`sign_in_at_provider` plays the browser with httpx: from the authorization URL it follows the
provider's redirects and fills its login and consent forms, and returns the query parameters
of the redirect to our callback (nothing listens there: the browser's part ends at the redirect).
"""

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from app.console.oidc import OidcConfig

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc"
START_TIMEOUT_S = 20.0
CLIENT_ID = "pitwarden-console"
# Nothing listens on port 9 (discard): the callback is only ever read from the redirect.
REDIRECT_URI = "http://127.0.0.1:9/console/oidc/callback"


@dataclass(frozen=True, slots=True)
class Account:
    sub: str
    email: str
    name: str
    email_verified: bool = True


ACCOUNTS = (
    Account("ada", "ada.lovelace@pitwarden.test", "Ada Lovelace"),
    Account("grace", "grace.hopper@pitwarden.test", "Grace Hopper"),
    Account("alan", "alan.turing@pitwarden.test", "Alan Turing", email_verified=False),
)


@dataclass(frozen=True, slots=True)
class Provider:
    issuer: str
    port: int
    client_id: str
    client_secret: str
    redirect_uri: str
    accounts: tuple[Account, ...]
    signing_key: RSAKey  # the provider's own: tests sign ID tokens the client must still refuse
    log: Path

    def config(self, **overrides: Any) -> OidcConfig:
        """Our client's configuration for this provider."""
        settings: dict[str, Any] = {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
        }
        return OidcConfig(**(settings | overrides))

    def account(self, sub: str) -> Account:
        return next(account for account in self.accounts if account.sub == sub)


@contextlib.contextmanager
def running_provider(
    log_dir: Path, *, port: int = 0, client_secret: str | None = None, **config: Any
) -> Iterator[Provider]:
    """The provider on 127.0.0.1:`port` (0: a free one), stopped on leaving, signing with a new
    RSA key of ours (a restart rotates it). `config` goes to provider.mjs as it is."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            "the sign-in tests need Node.js and tests/oidc's packages: run `make test`, "
            "or `npm ci --prefix tests/oidc`"
        )
    secret = client_secret or secrets.token_urlsafe(32)
    signing_key = RSAKey.generate_key(
        2048, {"kid": f"provider-{secrets.token_hex(4)}", "use": "sig", "alg": "RS256"}
    )
    settings = {
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "redirect_uris": [REDIRECT_URI],
        "accounts": [
            {"sub": a.sub, "email": a.email, "name": a.name, "email_verified": a.email_verified}
            for a in ACCOUNTS
        ],
        "jwks": {"keys": [signing_key.as_dict(private=True)]},
        "exit_with_stdin": True,  # a pytest that dies takes the provider with it
    } | config
    log = log_dir / f"oidc-provider-{time.monotonic_ns()}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own script, arguments we built
            [node, str(PROVIDER_DIR / "provider.mjs"), str(port)],
            env=os.environ | {"OIDC_PROVIDER_CONFIG": json.dumps(settings)},  # not on `ps`
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        ready = _ready_line(process, log)
        provider = Provider(
            issuer=ready["issuer"],
            port=ready["port"],
            client_id=CLIENT_ID,
            client_secret=secret,
            redirect_uri=REDIRECT_URI,
            accounts=ACCOUNTS,
            signing_key=signing_key,
            log=log,
        )
        discovery = httpx.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=5)
        assert discovery.json()["issuer"] == provider.issuer, log.read_text()
        yield provider
    finally:
        _stop(process)


def _ready_line(process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
    line = process.stdout.readline() if readable else b""
    if not line:
        _stop(process)
        pytest.fail(f"the OpenID provider did not start:\n{log.read_text()}")
    ready: dict[str, Any] = json.loads(line)
    return ready


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="module", name="oidc_provider")
def oidc_provider_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """The provider for a test module: import this function, ask for `oidc_provider`."""
    with running_provider(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class Recorder(httpx.AsyncBaseTransport):
    """The real transport, noting the path of every request the client sends; `rewrite` maps a
    path to a change of the provider's JSON answer there (a provider gone bad, or a man in the
    middle)."""

    def __init__(self, paths: list[str], rewrite: Mapping[str, Rewrite] | None = None) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self._paths = paths
        self._rewrite = rewrite or {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._paths.append(request.url.path)
        response = await self._real.handle_async_request(request)
        change = self._rewrite.get(request.url.path)
        if change is None or response.status_code != httpx.codes.OK:
            return response
        await response.aread()
        return httpx.Response(200, json=change(json.loads(response.content)))

    async def aclose(self) -> None:
        await self._real.aclose()


def forging(forge: Callable[[str], str]) -> dict[str, Rewrite]:
    """A rewrite that replaces the ID token of the token endpoint's answer by `forge(it)`."""
    return {"/token": lambda answer: answer | {"id_token": forge(answer["id_token"])}}


class _Page(HTMLParser):
    """The first form of a page (action, method, fields) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict[str, str] | None = None
        self.fields: dict[str, str] = {}
        self.links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.form is None:
            self.form, self._in_form = attributes, True
        elif tag == "input" and self._in_form and "name" in attributes:
            self.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


async def sign_in_at_provider(
    provider: Provider,
    authorization_url: str,
    *,
    login: str,
    password: str = "any password will do",  # noqa: S107 - the development login takes any
    cancel: bool = False,
) -> dict[str, str]:
    """The officer's browser from the authorization URL to our callback: log in as `login`,
    agree to share the profile (or, with `cancel`, abort at the first page). Returns the
    callback's query parameters."""
    async with httpx.AsyncClient(timeout=10) as browser:
        request = browser.build_request("GET", authorization_url)
        for _ in range(16):
            response = await browser.send(request)
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(provider.redirect_uri):
                    return dict(parse_qsl(urlsplit(location).query))
                request = browser.build_request("GET", location)
                continue
            assert response.status_code == httpx.codes.OK, (response.status_code, response.text)
            request = _next_step(browser, response, login=login, password=password, cancel=cancel)
    raise AssertionError("the provider never sent the browser back to the console")


def _next_step(
    browser: httpx.AsyncClient,
    response: httpx.Response,
    *,
    login: str,
    password: str,
    cancel: bool,
) -> httpx.Request:
    page = _Page()
    page.feed(response.text)
    if cancel:
        abort = next(link for link in page.links if link.endswith("/abort"))
        return browser.build_request("GET", urljoin(str(response.url), abort))
    assert page.form is not None, response.text
    filled: Mapping[str, str] = page.fields | (
        {"login": login, "password": password} if "login" in page.fields else {}
    )
    action = urljoin(str(response.url), page.form.get("action", ""))
    return browser.build_request(page.form.get("method", "get").upper(), action, data=filled)
