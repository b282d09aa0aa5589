"""Audit log API for operators and regulators: checkpoints, proofs and the raw entries.

Everything here can be checked without trusting the server: checkpoints are signed notes,
proofs verify against their roots (audit/merkle.py), entries hash to the proven leaves.
"""

import base64
import struct
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from app import schemas
from app.api.admin import parse_instant
from app.auth import Auditor, Uow
from app.contract import refusals
from audit import log

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_PROOF = refusals({422: ["bad_range", "beyond_tree"]})

MAX_INDEX = 2**62  # BIGINT leaves room; anything larger is a caller's mistake, not a 500
Index = Annotated[int, Query(ge=0, le=MAX_INDEX, examples=[0])]
Size = Annotated[int, Query(ge=0, le=MAX_INDEX, examples=[1])]
BINARY = "application/octet-stream"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _checkpoint(stored: log.StoredCheckpoint) -> schemas.AuditCheckpoint:
    return schemas.AuditCheckpoint(
        id=stored.id,
        tree_size=stored.tree_size,
        root_hash=_b64(stored.root),
        published_at=stored.published_at,
        note=stored.note,
    )


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The latest signed note"},
        **refusals({404: ["no_checkpoint"]}),
    },
)
async def latest_checkpoint(uow: Uow, _: Auditor) -> PlainTextResponse:
    return PlainTextResponse((await log.latest_checkpoint(uow)).note)


@router.get(
    "/checkpoints",
    response_model=schemas.AuditCheckpoint,
    responses=refusals({404: ["no_checkpoint"], 422: ["invalid_datetime"]}),
)
async def checkpoint_at(
    uow: Uow,
    _: Auditor,
    at: Annotated[str, Query(description="RFC 3339 instant", examples=["2026-11-25T12:00:00Z"])],
) -> schemas.AuditCheckpoint:
    """The last checkpoint published at or before `at`."""
    return _checkpoint(await log.checkpoint_at(uow, parse_instant(at, "at")))


@router.get("/proof/inclusion", response_model=schemas.InclusionProof, responses=_PROOF)
async def inclusion(uow: Uow, _: Auditor, index: Index, size: Size) -> schemas.InclusionProof:
    """Proof that entry `index` is in the tree of `size` entries (size of a checkpoint)."""
    leaf, proof = await log.inclusion_proof(uow, index=index, size=size)
    return schemas.InclusionProof(
        index=index, size=size, leaf_hash=_b64(leaf), proof=[_b64(h) for h in proof]
    )


@router.get("/proof/consistency", response_model=schemas.ConsistencyProof, responses=_PROOF)
async def consistency(
    uow: Uow,
    _: Auditor,
    size1: Annotated[int, Query(alias="from", ge=0, le=MAX_INDEX, examples=[1])],
    size2: Annotated[int, Query(alias="to", ge=0, le=MAX_INDEX, examples=[2])],
) -> schemas.ConsistencyProof:
    """Proof that the tree of `to` entries extends the tree of `from` entries."""
    proof = await log.consistency_proof(uow, size1=size1, size2=size2)
    return schemas.ConsistencyProof.model_validate(
        {"from": size1, "to": size2, "proof": [_b64(h) for h in proof]}
    )


@router.get(
    "/entries",
    response_model=schemas.AuditEntries,
    responses={200: {"content": {BINARY: {}}}, **refusals({422: ["bad_range"]})},
)
async def entries(
    request: Request, uow: Uow, _: Auditor, start: Index, end: Size
) -> Response | schemas.AuditEntries:
    """Entries start <= index < end (at most 1000), in JSON, or as a binary stream when the
    request accepts application/octet-stream: per entry a 4-byte big-endian length, then the
    bytes."""
    page = await log.entries(uow, start=start, end=end)
    if BINARY in request.headers.get("accept", ""):
        body = b"".join(struct.pack(">I", len(entry)) + entry for _, entry in page)
        return Response(body, media_type=BINARY)
    return schemas.AuditEntries(
        entries=[schemas.AuditEntry(index=i, entry=_b64(entry)) for i, entry in page]
    )
