"""The one way a mutating request runs: claim its Idempotency-Key, act, store the answer, commit.

Same key + same request: the stored answer again (success or failure) with
`Idempotent-Replayed: true`. Same key + another request: 422. A refusal rolls back everything the
action did, then stores itself under the key in a fresh transaction (with the writes it asks to
keep, such as the record of a denied policy decision), so a retry never turns an earlier
failure into a success.
"""

import hashlib
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.auth import Principal
from app.errors import error_body, status_of
from core import clients
from core.errors import DomainError
from core.uow import UnitOfWork


def _response(stored: clients.StoredResponse, *, replayed: bool) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(
        stored.body,
        status_code=stored.status_code,
        headers=headers,
        media_type="application/json",
    )


def _json(body: object) -> bytes:
    return bytes(JSONResponse(body).body)


async def run(
    request: Request,
    *,
    uow: UnitOfWork,
    principal: Principal,
    key: str,
    action: Callable[[], Awaitable[BaseModel]],
) -> Response:
    body = await request.body()
    request_hash = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + body).digest()
    client_id = principal.client.client_id
    stored = await clients.claim_idempotency_key(
        uow, client_id=client_id, key=key, request_hash=request_hash
    )
    if stored is not None:
        await uow.commit()
        return _response(stored, replayed=True)
    try:
        result = await action()
    except DomainError as refusal:
        await uow.rollback()
        await clients.consume_nonce(uow, client_id=client_id, nonce=principal.nonce)
        for write in refusal.kept:  # e.g. the record of a denied policy decision
            await write(uow)
        answer = clients.StoredResponse(
            status_of(refusal), _json(error_body(refusal.code, refusal.message, refusal.details))
        )
    else:
        answer = clients.StoredResponse(200, _json(result.model_dump(mode="json")))
    final = await clients.store_response(
        uow, client_id=client_id, key=key, request_hash=request_hash, response=answer
    )
    await uow.commit()
    return _response(final, replayed=final is not answer)
