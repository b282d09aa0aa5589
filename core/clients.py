"""API clients (game providers, operator tools), their request nonces and idempotency records."""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa

from core import journal, sql
from core.errors import Conflict, InvalidRequest
from core.journal import EventContext
from core.models import ApiClient, RequestNonce
from core.uow import UnitOfWork

# Never a colon: the player API scopes its idempotency records as `player:<uuid>`.
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

Role = Literal["game_provider", "operator", "regulator"]


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    role: Role
    provider_code: str | None
    secret: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A status code and the exact body bytes that were answered."""

    status_code: int
    body: bytes


async def register(
    uow: UnitOfWork,
    *,
    client_id: str,
    role: Role,
    display_name: str,
    provider_code: str | None,
    ctx: EventContext,
) -> Client:
    """Register a caller; the secret is returned once, to be handed to the provider."""
    if not CLIENT_ID.fullmatch(client_id):
        raise InvalidRequest(
            "invalid_client_id",
            "a client id is 1 to 64 letters, digits, '.', '_' or '-'",
            client_id=client_id[:80],
        )
    secret = secrets.token_urlsafe(32)
    uow.session.add(
        ApiClient(
            client_id=client_id,
            role=role,
            display_name=display_name,
            provider_code=provider_code,
            secret=secret,
            created_at=uow.now,
        )
    )
    await uow.session.flush()
    await journal.record(
        uow,
        "client.registered",
        ctx=ctx,
        data={"client_id": client_id, "role": role, "provider": provider_code},
    )
    return Client(client_id, role, provider_code, secret)


async def active_client(uow: UnitOfWork, client_id: str) -> Client | None:
    row = await sql.one(
        uow,
        "SELECT client_id, role, provider_code, secret FROM api_clients"
        " WHERE client_id = %(client_id)s AND active",
        {"client_id": client_id},
    )
    return Client(**row) if row else None


async def consume_nonce(uow: UnitOfWork, *, client_id: str, nonce: str) -> bool:
    """Remember a nonce; False if this client used it before (a replayed request)."""
    inserted = await sql.scalar(
        uow,
        "INSERT INTO request_nonces (client_id, nonce, seen_at)"
        " VALUES (%(client_id)s, %(nonce)s, %(now)s) ON CONFLICT DO NOTHING RETURNING 1",
        {"client_id": client_id, "nonce": nonce, "now": uow.now},
    )
    return inserted is not None


async def forget_nonces_before(uow: UnitOfWork, before: datetime) -> int:
    """Nonces older than the signature window can never be replayed: they are dropped."""
    result = await uow.session.execute(sa.delete(RequestNonce).where(RequestNonce.seen_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def claim_idempotency_key(
    uow: UnitOfWork, *, client_id: str, key: str, request_hash: bytes
) -> StoredResponse | None:
    """Claim `key` for this request, or return the response stored under it.

    A concurrent request with the same key waits on the claim until the first commits, then
    reads its stored response: exactly one of them acts.
    """
    claimed = await sql.scalar(
        uow,
        "INSERT INTO idempotency_records (client_id, key, request_hash, created_at)"
        " VALUES (%(client_id)s, %(key)s, %(hash)s, %(now)s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        {"client_id": client_id, "key": key, "hash": request_hash, "now": uow.now},
    )
    if claimed is not None:
        return None
    return await _stored(uow, client_id=client_id, key=key, request_hash=request_hash)


async def _stored(
    uow: UnitOfWork, *, client_id: str, key: str, request_hash: bytes
) -> StoredResponse:
    record = await sql.one(
        uow,
        "SELECT request_hash, status_code, response FROM idempotency_records"
        " WHERE client_id = %(client_id)s AND key = %(key)s",
        {"client_id": client_id, "key": key},
    )
    assert record is not None  # noqa: S101 - the conflicting row is committed
    if bytes(record["request_hash"]) != request_hash:
        raise InvalidRequest(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
            idempotency_key=key,
        )
    if record["status_code"] is None:
        raise Conflict("idempotency_key_in_flight", "a request with this key is still running")
    return StoredResponse(record["status_code"], bytes(record["response"]))


async def store_response(
    uow: UnitOfWork, *, client_id: str, key: str, request_hash: bytes, response: StoredResponse
) -> StoredResponse:
    """Store the outcome under the key (claimed by us, or claimed now for a failure).

    If another request claimed the key meanwhile, its response wins and is returned.
    """
    stored = await sql.scalar(
        uow,
        "INSERT INTO idempotency_records"
        " (client_id, key, request_hash, status_code, response, created_at)"
        " VALUES (%(client_id)s, %(key)s, %(hash)s, %(status)s, %(body)s, %(now)s)"
        " ON CONFLICT (client_id, key) DO UPDATE"
        " SET status_code = excluded.status_code, response = excluded.response"
        " WHERE idempotency_records.status_code IS NULL"
        " AND idempotency_records.request_hash = excluded.request_hash"
        " RETURNING 1",
        {
            "client_id": client_id,
            "key": key,
            "hash": request_hash,
            "status": response.status_code,
            "body": response.body,
            "now": uow.now,
        },
    )
    if stored is not None:
        return response
    return await _stored(uow, client_id=client_id, key=key, request_hash=request_hash)


def window_start(now: datetime, tolerance_s: int) -> datetime:
    return now - timedelta(seconds=2 * tolerance_s)
