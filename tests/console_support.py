"""A browser for the console without a browser: httpx with a cookie jar, on a loopback host
(where the console's cookie is not Secure, as with `make run`), reading forms as a person would
fill them in. Playwright drives a real Chromium in tests/e2e."""

import re
import secrets
import uuid
from dataclasses import dataclass

import httpx
import pyotp
from fastapi import FastAPI

from app.console import accounts
from compliance.vault import service as vault
from compliance.vault.keys import LocalKeyFile
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, Clock

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_KEY = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')
_CODES = re.compile(r"<li><code>([0-9a-f]{8}-[0-9a-f]{8})</code></li>")


@dataclass
class Officer:
    username: str
    password: str
    role: str
    totp: str | None = None
    recovery_codes: tuple[str, ...] = ()


async def officer(uows: UnitOfWorkFactory, role: str) -> Officer:
    username = f"{role.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    async with uows() as uow:
        await accounts.create(
            uow,
            username=username,
            display_name=f"Test {role}",
            role=role,
            password=password,
            ctx=CTX,
        )
        await uow.commit()
    return Officer(username, password, role)


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


class Browser:
    def __init__(self, app: FastAPI, clock: Clock, host: str = "http://127.0.0.1") -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url=host,
            follow_redirects=False,
        )
        self.clock = clock

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)

    async def submit(
        self, path: str, form: dict[str, str], *, of: str | None = None
    ) -> httpx.Response:
        """POST a form the way the page `of` (default: `path`) would, with its CSRF token."""
        page = await self.http.get(of or path)
        return await self.http.post(path, data={"csrf": csrf_of(page), **form})

    def code(self, officer: Officer) -> str:
        assert officer.totp is not None
        return pyotp.TOTP(officer.totp).at(self.clock())

    async def sign_in(self, officer: Officer) -> httpx.Response:
        """Password, then the second factor (enrolling TOTP at the first sign-in)."""
        answer = await self.submit(
            "/console/sign-in", {"username": officer.username, "password": officer.password}
        )
        assert answer.status_code == 303, answer.text
        if answer.headers["location"] == "/console/enrolling":
            enrol = await self.http.get("/console/enrolling")
            key = _KEY.search(enrol.text)
            assert key, enrol.text
            officer.totp = key.group(1)
            done = await self.http.post(
                "/console/enrolling", data={"csrf": csrf_of(enrol), "code": self.code(officer)}
            )
            assert done.status_code == 200, done.text
            officer.recovery_codes = tuple(_CODES.findall(done.text))
            return done
        assert answer.headers["location"] == "/console/second-factor"
        return await self.submit("/console/second-factor", {"code": self.code(officer)})

    async def aclose(self) -> None:
        await self.http.aclose()


async def player_with_personal_data(
    uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> uuid.UUID:
    """A funded player whose legal name and email are in the vault."""
    player = await factories.committed_player(uows, cash="10.00")
    async with vault_uows() as uow:
        await vault.store(
            uow,
            player_id=player,
            data=vault.PersonalData(legal_name="Ilse Vella", email="ilse@example.org"),
            keys=vault_keys,
            ctx=CTX,
        )
        await uow.commit()
    return player
