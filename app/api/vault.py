"""Player registration with personal data, and the vault's operator API.

Personal data goes only to the vault (its own schema, its own database role); the player row
and everything else hold the player id and field tokens. Reading a field in clear takes an
actor, a role and a purpose, and every decision is journaled, a refusal too. Over this API the
actor is the signed client and the role is the vault's machine role, `service`: a machine has
no officer's role (decision 0021). Officers reveal through the console.
"""

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app import schemas
from app.api import idempotent
from app.auth import IdempotencyKey, Operator, Uow
from app.contract import combined, refusals
from compliance import kyc
from compliance.ages import VaultAges
from compliance.gate import Gate
from compliance.vault import retention, service
from compliance.vault.keys import KeyProvider
from core import players
from core.errors import Conflict, InvalidRequest, NotFound, Refused
from core.uow import UnitOfWork

router = APIRouter(tags=["vault"])
PlayerId = schemas.PlayerId
# The vault role of every signed client: its reveal rules are its own (migration 0016).
MACHINE_ROLE = "service"
# What reading a player's sealed data can meet.
_SEALED = {404: ["no_personal_data"], 409: ["vault_integrity_failure"], 410: ["erased"]}


async def _vault_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    async with request.app.state.vault_uow_factory() as uow:
        yield uow


async def _keys(request: Request) -> KeyProvider:
    keys: KeyProvider = request.app.state.vault_keys
    return keys


VaultUow = Annotated[UnitOfWork, Depends(_vault_uow)]
Keys = Annotated[KeyProvider, Depends(_keys)]


@router.post(
    "/v1/players",
    response_model=schemas.PlayerRegistered,
    responses=refusals(
        {422: ["unknown_currency", "invalid_jurisdiction", "invalid_personal_data"]}
    ),
)
async def register_player(
    *,
    request: Request,
    body: schemas.NewRegisteredPlayer,
    uow: Uow,
    vault: VaultUow,
    keys: Keys,
    principal: Operator,
    key: IdempotencyKey,
) -> Response:
    """Register a player: personal data into the vault, the player (id, currency, jurisdiction)
    into the money core. Returns the field tokens and players sharing an email, phone, national
    id or IBAN (possible duplicate accounts)."""

    async def act() -> schemas.PlayerRegistered:
        ctx = principal.context()
        player_id = await players.register(
            uow, currency=body.currency, jurisdiction=body.jurisdiction, ctx=ctx
        )
        stored = await service.store(
            vault,
            player_id=player_id,
            data=service.PersonalData(**body.personal.model_dump()),
            keys=keys,
            ctx=ctx,
        )
        for duplicate in stored.possible_duplicates:  # their money counts together
            basis = cast("kyc.Basis", duplicate["kind"])
            other = uuid.UUID(duplicate["player_id"])
            with suppress(NotFound):  # a vault record whose player never committed
                await kyc.link(
                    uow, player_id=player_id, linked_player_id=other, basis=basis, ctx=ctx
                )
        # The vault commits first: should the player's own commit then fail, what is left is
        # sealed data under an id nothing refers to, never a player without a vault record.
        await vault.commit()
        return schemas.PlayerRegistered(
            player_id=player_id,
            currency=body.currency,
            jurisdiction=body.jurisdiction,
            tokens=stored.tokens,
            possible_duplicates=[
                schemas.PossibleDuplicate.model_validate(d) for d in stored.possible_duplicates
            ],
        )

    return await idempotent.run_signed(request, uow=uow, principal=principal, key=key, action=act)


@router.get(
    "/v1/vault/players/{player_id}",
    responses=refusals(_SEALED),
)
async def masked_view(
    player_id: PlayerId, vault: VaultUow, keys: Keys, _: Operator
) -> dict[str, Any]:
    """Every field masked (IBAN last 4, email first letter and domain, ...) with its token."""
    return {
        "player_id": str(player_id),
        "fields": await service.masked(vault, player_id=player_id, keys=keys),
    }


@router.post(
    "/v1/vault/players/{player_id}/reveal",
    response_model=schemas.Revealed,
    responses=refusals(
        combined({403: ["reveal_refused"], 404: ["no_such_field"], 422: ["unknown_field"]}, _SEALED)
    ),
)
async def reveal(
    player_id: PlayerId,
    body: schemas.RevealRequest,
    vault: VaultUow,
    keys: Keys,
    principal: Operator,
) -> schemas.Revealed:
    """One field in clear, if the reveal rules let the machine role see it for this purpose
    (`payout`: legal name, IBAN and country)."""
    decision, value = await service.reveal(
        vault,
        player_id=player_id,
        field=body.field,
        actor=principal.actor,
        actor_role=MACHINE_ROLE,
        purpose=body.purpose,
        keys=keys,
        ctx=principal.context(),
        document_token=body.document_token,
    )
    await vault.commit()  # the decision is kept, a refusal too
    if value is None:
        raise Refused("reveal_refused", decision.reason, field=body.field, purpose=body.purpose)
    shown = base64.b64encode(value).decode() if body.field == "document_image" else value.decode()
    return schemas.Revealed(field=body.field, value=shown, decision="allow")


@router.post(
    "/v1/vault/players/{player_id}/export",
    responses=refusals(combined({403: ["export_refused"]}, _SEALED)),
)
async def export(
    player_id: PlayerId,
    body: schemas.ExportRequest,  # noqa: ARG001 - `{}`: a body naming a person is refused
    vault: VaultUow,
    keys: Keys,
    principal: Operator,
) -> dict[str, Any]:
    """Everything the vault holds about the player (a data subject access request), if the
    reveal rules give the machine role `dsar` (they do not as shipped: the data protection
    officer exports with `pitwarden vault export`)."""
    decision = await service.decide(
        vault, actor_role=MACHINE_ROLE, purpose="dsar", field="legal_name"
    )
    if not decision.allowed:
        raise Refused("export_refused", decision.reason)
    exported = await service.export(
        vault, player_id=player_id, actor=principal.actor, keys=keys, ctx=principal.context()
    )
    await vault.commit()
    return exported


@router.post(
    "/v1/vault/players/{player_id}/erasure",
    response_model=schemas.Erased,
    responses=refusals(
        {404: ["unknown_player", "no_personal_data"], 409: ["retention_hold"], 410: ["erased"]}
    ),
)
async def erase(
    *,
    request: Request,
    player_id: PlayerId,
    body: schemas.ErasureRequest,
    uow: Uow,
    vault: VaultUow,
    principal: Operator,
) -> schemas.Erased:
    """Crypto-shred the player's personal data, unless AML record keeping still holds it."""
    held_until = await retention.held_until(
        uow, player_id=player_id, settings=request.app.state.settings
    )
    done = await service.erase(
        vault,
        player_id=player_id,
        actor=principal.actor,
        reason=body.reason,
        held_until=held_until,
        ctx=principal.context(),
    )
    await vault.commit()
    if done.erased_at is None:
        assert done.held_until is not None  # noqa: S101 - refused only by a hold
        raise Conflict(
            "retention_hold",
            f"AML record keeping holds this data until {done.held_until:%Y-%m-%d}",
            held_until=done.held_until.isoformat(),
        )
    _forget_age(request, player_id)
    return schemas.Erased(player_id=player_id, erased_at=done.erased_at)


def _forget_age(request: Request, player_id: uuid.UUID) -> None:
    """The gate remembers dates of birth for an hour: an erased one is forgotten now. Another
    guard (a test's) or another age source remembers nothing of the vault."""
    gate = request.app.state.gate
    if isinstance(gate, Gate) and isinstance(gate.ages, VaultAges):
        gate.ages.forget(player_id)


@router.post(
    "/v1/vault/players/{player_id}/documents",
    response_model=schemas.DocumentStored,
    responses=refusals(combined({422: ["invalid_base64"]}, _SEALED)),
)
async def store_document(
    player_id: PlayerId,
    body: schemas.NewDocument,
    vault: VaultUow,
    keys: Keys,
    principal: Operator,
) -> schemas.DocumentStored:
    try:
        content = base64.b64decode(body.content_base64, validate=True)
    except ValueError:  # binascii.Error, or a character that is not even ASCII
        raise InvalidRequest("invalid_base64", "content_base64 is not base64") from None
    token = await service.store_document(
        vault,
        player_id=player_id,
        kind=body.kind,
        content_type=body.content_type,
        content=content,
        keys=keys,
        ctx=principal.context(),
    )
    await vault.commit()
    return schemas.DocumentStored(token=token)
