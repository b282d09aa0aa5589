"""Personal data in the console: masked on the player's page; one field in clear on request,
for a stated purpose, after the console ruleset allows it (role, and the second factor within
the last 5 minutes) and the vault's own reveal rules allow the purpose. Both decisions are
kept and journaled, the refusals too; the value is shown once, never stored or logged."""

import base64
import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, dsar, web
from compliance.vault import service as vault
from core.errors import DomainError
from core.journal import EventContext

router = APIRouter(prefix="/console", include_in_schema=False)

# The vault's reveal rules name job functions; a console role acts as one of them, and the
# purposes it may state are those the vault knows for that function.
VAULT_ROLE = {
    "officer": "compliance_officer",
    "senior_officer": "compliance_officer",
    "dpo": "data_protection_officer",
}
PURPOSES = {
    "compliance_officer": (("kyc_review", "KYC review"), ("aml_case", "AML case")),
    "data_protection_officer": (("dsar", "Data subject access request"),),
}


async def masked(request: Request, player_id: uuid.UUID) -> dict[str, str] | str:
    """The player's fields, masked; or why there are none (none on file, erased)."""
    async with request.app.state.vault_uow_factory() as uow:
        try:
            fields = await vault.masked(uow, player_id=player_id, keys=request.app.state.vault_keys)
        except DomainError as error:
            return error.message
    return {name: shown["masked"] for name, shown in fields.items()}


def purposes(role: str) -> tuple[tuple[str, str], ...]:
    return PURPOSES.get(VAULT_ROLE.get(role, ""), ())


@router.post("/players/{player_id}/reveal")
async def reveal(
    player_id: uuid.UUID,
    current: web.Signed,
    request: Request,
    *,
    field: Annotated[str, Form(max_length=40)],
    purpose: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    web.checked_csrf(current, csrf)
    refused = await access.allowed(
        current,
        request,
        "console.pii.reveal",
        player_id=player_id,
        subject=f"player:{player_id}:{field}",
        back=f"/console/players/{player_id}",
    )
    if refused:
        return refused
    await current.uow.commit()  # the console's decision stands whatever the vault says
    ctx = EventContext(
        actor=current.officer.actor, trace_id=current.trace_id, session_id=current.session.ref
    )
    async with request.app.state.vault_uow_factory() as uow:
        try:
            decision, value = await vault.reveal(
                uow,
                player_id=player_id,
                field=field,
                actor=current.officer.actor,
                actor_role=VAULT_ROLE.get(current.officer.role, current.officer.role),
                purpose=purpose,
                keys=request.app.state.vault_keys,
                ctx=ctx,
            )
        except DomainError as error:
            return _refused(request, current, player_id, error.message, status_code=404)
        await uow.commit()  # the vault's decision is kept, a refusal too
    if value is None:
        return _refused(request, current, player_id, decision.reason, status_code=403)
    shown = base64.b64encode(value).decode() if field == "document_image" else value.decode()
    return web.page(
        request,
        "revealed.html",
        officer=current.officer,
        csrf=current.csrf,
        player_id=player_id,
        field=field,
        purpose=purpose,
        value=shown,
    )


def _refused(
    request: Request, current: web.Current, player_id: uuid.UUID, why: str, *, status_code: int
) -> Response:
    return web.page(
        request,
        "revealed.html",
        status_code=status_code,
        officer=current.officer,
        csrf=current.csrf,
        player_id=player_id,
        refused=why,
    )


@router.post("/players/{player_id}/dsar")
async def export(
    player_id: uuid.UUID,
    current: web.Signed,
    request: Request,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """The data subject access request's answer, as a JSON download (dsar.py): the console
    ruleset (the DPO, step-up), then the vault's rules for the purpose `dsar`."""
    web.checked_csrf(current, csrf)
    page = f"/console/players/{player_id}"
    refused = await access.allowed(
        current, request, "console.pii.export", player_id=player_id,
        subject=f"player:{player_id}", back=page,
    )  # fmt: skip
    if refused:
        return refused
    await current.uow.commit()  # the console's decision stands whatever the vault says
    ctx = EventContext(
        actor=current.officer.actor, trace_id=current.trace_id, session_id=current.session.ref
    )
    role = VAULT_ROLE.get(current.officer.role, current.officer.role)
    async with request.app.state.vault_uow_factory() as uow:
        decision = await vault.decide(uow, actor_role=role, purpose="dsar", field="legal_name")
        if not decision.allowed:
            await uow.commit()
            return _refused(request, current, player_id, decision.reason, status_code=403)
        try:
            answer = await dsar.gathered(
                current.uow, uow, player_id=player_id, keys=request.app.state.vault_keys,
                actor=current.officer.actor, ctx=ctx,
            )  # fmt: skip
        except DomainError as error:
            return _refused(request, current, player_id, error.message, status_code=404)
        await uow.commit()
    await current.uow.commit()
    return Response(
        orjson.dumps(answer, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="dsar-{player_id}.json"',
            "cache-control": "no-store",
        },
    )
