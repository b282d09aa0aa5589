"""The one way a mutating request runs: claim its Idempotency-Key, act, store the answer, commit.

Same key + same request: the stored answer again (success or failure) with
`Idempotent-Replayed: true`. Same key + another request: 422. A refusal rolls back everything the
action did, then stores itself under the key in a fresh transaction (with the writes it asks to
keep, such as the record of a denied policy decision), so a retry never turns an earlier
failure into a success.

A transient refusal (a zone paused by a kill-switch, no policy active) is the exception: its kept
writes are committed but the key is left unclaimed, and the answer says `Retry-After`, so the
same request under the same key acts again once the cause is lifted.

Signed clients and players share the table: `scope` is the client id, or `player:<uuid>` for a
player's bearer token (idempotency_records has no foreign key to api_clients).
"""

import hashlib
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.auth import Principal
from app.errors import RETRY_AFTER_S, error_body, status_of
from core import clients
from core.errors import DomainError
from core.uow import UnitOfWork


def _response(
    stored: clients.StoredResponse, *, replayed: bool = False, retry_after: int | None = None
) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(
        stored.body,
        status_code=stored.status_code,
        headers=headers,
        media_type="application/json",
    )


def _json(body: object) -> bytes:
    return bytes(JSONResponse(body).body)


async def run_signed(
    request: Request,
    *,
    uow: UnitOfWork,
    principal: Principal,
    key: str,
    action: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """`run` for a signed API client: its client id is the scope, its nonce is consumed."""
    return await run(
        request,
        uow=uow,
        scope=principal.client.client_id,
        nonce=principal.nonce,
        key=key,
        action=action,
    )


async def run(
    request: Request,
    *,
    uow: UnitOfWork,
    scope: str,
    nonce: str | None,
    key: str,
    action: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """Run `action` once per (scope, key). `nonce` is the signed request's nonce, consumed again
    after a refusal's rollback so that the request cannot be replayed (a bearer token has none).
    """
    body = await request.body()
    request_hash = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + body).digest()
    stored = await clients.claim_idempotency_key(
        uow, client_id=scope, key=key, request_hash=request_hash
    )
    if stored is not None:
        await uow.commit()
        return _response(stored, replayed=True)
    try:
        result = await action()
    except DomainError as refusal:
        await uow.rollback()  # the claim goes too: re-made below unless the refusal is transient
        if nonce is not None:
            await clients.consume_nonce(uow, client_id=scope, nonce=nonce)
        for write in refusal.kept:  # e.g. the record of a denied policy decision
            await write(uow)
        answer = clients.StoredResponse(
            status_of(refusal), _json(error_body(refusal.code, refusal.message, refusal.details))
        )
        if refusal.transient:
            await uow.commit()
            return _response(answer, retry_after=RETRY_AFTER_S)
    else:
        answer = clients.StoredResponse(200, _json(result.model_dump(mode="json")))
    final = await clients.store_response(
        uow, client_id=scope, key=key, request_hash=request_hash, response=answer
    )
    await uow.commit()
    return _response(final, replayed=final is not answer)
