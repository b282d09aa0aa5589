"""Signed requests: HMAC over method, path, timestamp, nonce and body digest (app/signing.py)."""

import hmac
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app import signing
from app.errors import BadRequest, Forbidden, Unauthorized
from core import clients
from core.journal import EventContext
from core.uow import UnitOfWork

_NONCE_RE = re.compile(signing.NONCE_PATTERN)
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True, slots=True)
class Principal:
    client: clients.Client
    nonce: str
    trace_id: str

    @property
    def actor(self) -> str:
        """The client's service identity, recorded wherever the API records who acted: a
        machine acting for no person (decision 0021). People act through the console."""
        return f"client:{self.client.client_id}"

    def context(
        self,
        *,
        session_id: str | None = None,
        geo: str | None = None,
        device: str | None = None,
        contract_ver: str | None = None,
    ) -> EventContext:
        return EventContext(
            actor=self.actor,
            trace_id=self.trace_id,
            session_id=session_id,
            geo=geo,
            device=device,
            contract_ver=contract_ver,
        )


async def unit_of_work(request: Request) -> AsyncIterator[UnitOfWork]:
    async with request.app.state.uow_factory() as uow:
        yield uow


def _header(request: Request, name: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise Unauthorized("missing_auth_header", f"the {name} header is required", header=name)
    return value


Uow = Annotated[UnitOfWork, Depends(unit_of_work)]


async def authenticate(request: Request, uow: Uow) -> Principal:
    """Check the signature and the timestamp window, and remember the nonce.

    The nonce is written in the request's own transaction; a request that fails before commit
    consumes no nonce, so its replay fails the same way and changes nothing.
    """
    client_id = _header(request, "X-Client-Id")
    timestamp = _header(request, "X-Request-Timestamp")
    nonce = _header(request, "X-Request-Nonce")
    given = _header(request, "X-Signature")
    if not timestamp.isdigit():
        raise Unauthorized("bad_timestamp", "X-Request-Timestamp must be Unix seconds")
    tolerance = request.app.state.settings.signature_tolerance_s
    skew = int(uow.now.timestamp()) - int(timestamp)  # the product's clock (core/clock.py)
    if abs(skew) > tolerance:
        raise Unauthorized(
            "timestamp_out_of_window",
            f"the request timestamp is more than {tolerance}s off",
            skew_seconds=skew,
        )
    if not _NONCE_RE.match(nonce):
        raise Unauthorized("bad_nonce", "X-Request-Nonce must be 16-64 URL-safe characters")
    caller = await clients.active_client(uow, client_id, sealer=request.app.state.client_secrets)
    body = await request.body()
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    # During a rotation's overlap two secrets verify (the unit of work's `now` decides which);
    # every candidate is tried, so the time taken does not tell which one matched.
    matched = False
    for secret in caller.secrets if caller else ("",):
        expected = signing.signature(
            secret, method=request.method, path=path, timestamp=timestamp, nonce=nonce, body=body
        )
        matched |= hmac.compare_digest(expected, given)
    if caller is None or not matched:
        raise Unauthorized("bad_signature", "the signature does not match this request")
    if not await clients.consume_nonce(uow, client_id=client_id, nonce=nonce):
        raise Unauthorized("nonce_reused", "this nonce was already used: the request is a replay")
    return Principal(caller.client, nonce, trace_id(request))


def trace_id(request: Request) -> str:
    match = _TRACEPARENT_RE.match(request.headers.get("traceparent", ""))
    return match.group(1) if match else uuid.uuid4().hex


async def game_provider(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.client.role != "game_provider":
        raise Forbidden("forbidden", "only game providers may call the wallet API")
    return principal


async def operator(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.client.role != "operator":
        raise Forbidden("forbidden", "only operator clients may call the admin API")
    return principal


async def auditor(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.client.role not in ("operator", "regulator"):
        raise Forbidden("forbidden", "only operator and regulator clients may read the audit log")
    return principal


async def idempotency_key(request: Request) -> str:  # async: no worker thread (app/gating.py)
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise BadRequest("idempotency_key_missing", "mutating calls need an Idempotency-Key header")
    if len(key) > 128 or not key.isprintable():  # noqa: PLR2004
        raise BadRequest("idempotency_key_invalid", "Idempotency-Key is 1-128 printable characters")
    return key


Provider = Annotated[Principal, Depends(game_provider)]
Operator = Annotated[Principal, Depends(operator)]
Auditor = Annotated[Principal, Depends(auditor)]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
