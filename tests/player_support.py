"""The player's browser without a browser: httpx with a cookie jar on a loopback host (where the
player page's cookie is not Secure, as with `make run`), opening the page from a minted player
token and sending its forms as a person would."""

import re
import uuid
from typing import Any

import httpx

from tests.conftest import Api

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_CODE = re.compile(r'data-error-code="([a-z_]+)"')
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)


class Player:
    """The player's browser: httpx with a cookie jar, on loopback (cookies not Secure there, as
    with `make run`)."""

    def __init__(self, api: Api, player_id: uuid.UUID, host: str = "http://127.0.0.1") -> None:
        self.api = api
        self.id = player_id
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app, client=("127.0.0.1", 50000)),
            base_url=host,
            follow_redirects=False,
        )

    async def mint(self) -> str:
        minted = await self.api.operator.post(f"/v1/admin/players/{self.id}/session", {})
        assert minted.status_code == 200, minted.text
        return str(minted.json()["token"])

    async def open(self, token: str | None = None) -> httpx.Response:
        """Follow the casino's link, then press the page's one button."""
        token = token or await self.mint()
        start = await self.http.get("/player/start", params={"token": token})
        assert start.status_code == 200, start.text
        assert 'action="/player/session"' in start.text
        assert "set-cookie" not in start.headers  # the link alone opens nothing
        return await self.http.post("/player/session", data={"token": token})

    async def page(self, path: str = "/player") -> httpx.Response:
        return await self.http.get(path)

    async def csrf(self) -> str:
        found = _CSRF.search((await self.page()).text)
        assert found, "no form on the page"
        return found.group(1)

    async def appeal(
        self,
        decision_id: str,
        explanation: str | bytes = "I raised my limit yesterday, please end the wait.",
        *,
        csrf: str | None = "ours",
        files: dict[str, Any] | None = None,
    ) -> httpx.Response:
        form: dict[str, Any] = {"decision_id": decision_id, "explanation": explanation}
        if csrf == "ours":
            form["csrf"] = await self.csrf()
        elif csrf is not None:
            form["csrf"] = csrf
        if isinstance(explanation, bytes):  # as a part of its own: bytes that are no text
            files = (files or {}) | {"explanation": (None, explanation, "text/plain")}
            form.pop("explanation")
        return await self.http.post(
            "/player/appeals", data=form, files=files or {"document": ("", b"", "")}
        )


def code_of(page: httpx.Response) -> str:
    found = _CODE.search(page.text)
    assert found, page.text
    return found.group(1)
