"""A small signed client: `await PitwardenClient(url, client_id, secret).post(path, {...})`."""

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from app.signing import signed_headers


class PitwardenClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        secret: str,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=30)
        self.clock = clock  # None: the system clock; the server checks our timestamp against its

    def sign(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return signed_headers(
            client_id=self.client_id,
            secret=self.secret,
            method=method,
            path=path,
            body=body,
            timestamp=int(self.clock().timestamp()) if self.clock else None,
        )

    async def post(
        self, path: str, payload: dict[str, Any], *, idempotency_key: str | None = None
    ) -> httpx.Response:
        """POST signed JSON; mutating calls get a fresh Idempotency-Key unless one is given."""
        body = json.dumps(payload).encode()
        headers = self.sign("POST", path, body) | {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
        }
        return await self.http.post(path, content=body, headers=headers)

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.get(path, headers=self.sign("GET", path, b"") | (headers or {}))

    async def aclose(self) -> None:
        await self.http.aclose()
