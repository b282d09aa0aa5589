"""API clients (game providers, operator tools), their request nonces and idempotency records.

A client's HMAC secret is stored only sealed (core/sealing.py, decision 0017): it is handed out
once, at registration and at each rotation, and unsealed to verify a request. A rotation keeps
the previous secret valid for an overlap, so that the caller moves to the new one at its own
pace; after the overlap only the new one verifies.
"""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa

from core import journal, sql
from core.errors import Conflict, InvalidRequest, NotFound
from core.journal import EventContext, rfc3339
from core.models import ApiClient, RequestNonce
from core.sealing import Sealer
from core.uow import UnitOfWork

# Never a colon: the player API scopes its idempotency records as `player:<uuid>`.
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A rotation is meant to end the old secret: an overlap of more than a month is refused.
MAX_OVERLAP = timedelta(days=30)

Role = Literal["game_provider", "operator", "regulator"]


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    role: Role
    provider_code: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    """An active client and the secrets that verify its requests now: the current one, then
    the previous one while its overlap lasts."""

    client: Client
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Issued:
    """A new secret, shown once to be handed to the client; only its sealed form is stored."""

    client_id: str
    secret: str
    previous_valid_until: datetime | None = None


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
    sealer: Sealer,
    ctx: EventContext,
) -> Issued:
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
            secret_sealed=_seal(sealer, client_id, secret),
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
    return Issued(client_id, secret)


async def active_client(uow: UnitOfWork, client_id: str, *, sealer: Sealer) -> Caller | None:
    """The client and the secrets that verify its requests at the unit of work's `now`."""
    row = await sql.one(
        uow,
        "SELECT client_id, role, provider_code, secret, secret_sealed,"
        " CASE WHEN previous_secret_until > %(now)s THEN previous_secret_sealed END AS previous"
        " FROM api_clients WHERE client_id = %(client_id)s AND active",
        {"client_id": client_id, "now": uow.now},
    )
    if row is None:
        return None
    # A clear secret from before migration 0011 verifies until start-up seals it.
    current = row["secret"] or _unseal(sealer, client_id, row["secret_sealed"])
    previous = () if row["previous"] is None else (_unseal(sealer, client_id, row["previous"]),)
    client = Client(row["client_id"], row["role"], row["provider_code"])
    return Caller(client, (current, *previous))


async def current_secret(uow: UnitOfWork, client_id: str, *, sealer: Sealer) -> str | None:
    """A client's current secret in clear, for the demo that prints its own credentials."""
    row = await sql.one(
        uow,
        "SELECT secret, secret_sealed FROM api_clients WHERE client_id = %(client_id)s",
        {"client_id": client_id},
    )
    if row is None:
        return None
    return str(row["secret"] or _unseal(sealer, client_id, row["secret_sealed"]))


async def rotate_secret(
    uow: UnitOfWork, *, client_id: str, overlap: timedelta, sealer: Sealer, ctx: EventContext
) -> Issued:
    """Give the client a new secret; the current one keeps verifying for `overlap` (none: it
    is refused at once). A secret still in an earlier overlap is dropped now: only the two
    newest secrets ever verify. Journaled as `client.secret_rotated`, without any secret."""
    if overlap < timedelta(0) or overlap > MAX_OVERLAP:
        raise InvalidRequest(
            "invalid_overlap",
            f"the overlap is between 0 and {MAX_OVERLAP.days} days",
            overlap_seconds=int(overlap.total_seconds()),
        )
    row = await sql.one(
        uow,
        "SELECT previous_secret_until FROM api_clients WHERE client_id = %(client_id)s FOR UPDATE",
        {"client_id": client_id},
    )
    if row is None:
        raise NotFound(
            "unknown_client", f"there is no API client {client_id!r}", client_id=client_id
        )
    await seal_clear_secrets(uow, sealer=sealer, ctx=ctx, client_id=client_id)
    secret = secrets.token_urlsafe(32)
    until = uow.now + overlap if overlap else None
    await sql.run(
        uow,
        "UPDATE api_clients SET secret_sealed = %(sealed)s, previous_secret_until = %(until)s,"
        " previous_secret_sealed = CASE WHEN %(until)s::timestamptz IS NULL THEN NULL"
        " ELSE secret_sealed END"
        " WHERE client_id = %(client_id)s",
        {"client_id": client_id, "sealed": _seal(sealer, client_id, secret), "until": until},
    )
    earlier = row["previous_secret_until"]
    await journal.record(
        uow,
        "client.secret_rotated",
        ctx=ctx,
        data={
            "client_id": client_id,
            "overlap_seconds": int(overlap.total_seconds()),
            "previous_valid_until": rfc3339(until) if until else None,
            "earlier_overlap_cut_short": earlier is not None and earlier > uow.now,
        },
    )
    return Issued(client_id, secret, until)


async def seal_clear_secrets(
    uow: UnitOfWork, *, sealer: Sealer, ctx: EventContext, client_id: str | None = None
) -> int:
    """Seal the clear secrets left from before migration 0011 (every client's, or one's); each
    is journaled as `client.secret_sealed`. Two processes starting at once seal each once: the
    row lock makes the second see it sealed already."""
    rows = await sql.all_rows(
        uow,
        "SELECT client_id, secret FROM api_clients WHERE secret IS NOT NULL"
        " AND (%(client_id)s::text IS NULL OR client_id = %(client_id)s)"
        " ORDER BY client_id FOR UPDATE",
        {"client_id": client_id},
    )
    for row in rows:
        await sql.run(
            uow,
            "UPDATE api_clients SET secret_sealed = %(sealed)s, secret = NULL"
            " WHERE client_id = %(client_id)s",
            {
                "client_id": row["client_id"],
                "sealed": _seal(sealer, row["client_id"], row["secret"]),
            },
        )
    if rows:
        events: list[journal.Event] = [
            ("client.secret_sealed", None, None, {"client_id": row["client_id"]}) for row in rows
        ]
        await journal.record_many(uow, events, ctx=ctx)
    return len(rows)


def _seal(sealer: Sealer, client_id: str, secret: str) -> bytes:
    return sealer.seal(secret.encode(), context=_context(client_id))


def _unseal(sealer: Sealer, client_id: str, sealed: bytes) -> str:
    return sealer.unseal(bytes(sealed), context=_context(client_id)).decode()


def _context(client_id: str) -> str:
    return f"api_client:{client_id}"


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
