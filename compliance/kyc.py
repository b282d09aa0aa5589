"""Identity and AML state the gate reads: KYC levels, AML holds, linked accounts.

Each is an append-only history set by an officer (or, for links, found at registration), and
journaled: the state is the newest row, and what stood at any past instant can be recomputed.
KYC levels: `unverified` (the default), `basic` (details checked, documents not yet), `verified`
(identity and age proven): only `verified` lets money move past the due-diligence threshold and
out through withdrawals. A link joins two players who share an email, phone, national id or IBAN
(the vault's blind indexes find them; the basis is the kind of data, never its value) or whom an
officer linked: their money counts together towards the due-diligence threshold.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from core import journal, sql
from core.errors import InvalidRequest, NotFound
from core.journal import EventContext
from core.uow import UnitOfWork

Level = Literal["unverified", "basic", "verified"]
LEVELS: tuple[Level, ...] = ("unverified", "basic", "verified")
Basis = Literal["email", "phone", "national_id", "iban", "officer"]
BASES: tuple[Basis, ...] = ("email", "phone", "national_id", "iban", "officer")


@dataclass(frozen=True)
class Standing:
    """Where a player stands: KYC level, AML hold, and the players linked to them."""

    kyc_level: Level
    kyc_set_at: datetime | None
    aml_hold: bool
    aml_set_at: datetime | None
    linked: tuple[tuple[uuid.UUID, Basis], ...]


def _reason(actor: str, reason: str) -> None:
    if not actor.strip() or not reason.strip():
        raise InvalidRequest("reason_required", "an officer and a reason are required")


async def _exists(uow: UnitOfWork, player_id: uuid.UUID) -> None:
    if not await sql.scalar(uow, "SELECT 1 FROM players WHERE id = %(p)s", {"p": player_id}):
        raise NotFound("unknown_player", "no such player", player_id=str(player_id))


async def set_level(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    level: Level,
    actor: str,
    reason: str,
    ctx: EventContext,
) -> None:
    if level not in LEVELS:
        raise InvalidRequest("invalid_kyc_level", f"levels are {', '.join(LEVELS)}", level=level)
    _reason(actor, reason)
    await _exists(uow, player_id)
    await sql.run(
        uow,
        "INSERT INTO kyc_levels (player_id, level, set_by, reason, set_at)"
        " VALUES (%(p)s, %(level)s, %(by)s, %(why)s, %(now)s)",
        {"p": player_id, "level": level, "by": actor, "why": reason, "now": uow.now},
    )
    await journal.record(
        uow,
        "kyc.level_set",
        ctx=ctx,
        player_id=player_id,
        data={"level": level, "actor": actor, "reason": reason},
    )


async def set_aml_hold(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    on_hold: bool,
    actor: str,
    reason: str,
    ctx: EventContext,
) -> None:
    _reason(actor, reason)
    await _exists(uow, player_id)
    await sql.run(
        uow,
        "INSERT INTO aml_holds (player_id, on_hold, set_by, reason, set_at)"
        " VALUES (%(p)s, %(hold)s, %(by)s, %(why)s, %(now)s)",
        {"p": player_id, "hold": on_hold, "by": actor, "why": reason, "now": uow.now},
    )
    await journal.record(
        uow,
        "aml.hold_set",
        ctx=ctx,
        player_id=player_id,
        data={"on_hold": on_hold, "actor": actor, "reason": reason},
    )


async def link(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    linked_player_id: uuid.UUID,
    basis: Basis,
    ctx: EventContext,
    reason: str | None = None,
) -> bool:
    """Link two players (once per basis); False if they already were on that basis."""
    if basis not in BASES:
        raise InvalidRequest("invalid_link_basis", f"bases are {', '.join(BASES)}", basis=basis)
    if player_id == linked_player_id:
        raise InvalidRequest("invalid_link", "a player cannot be linked to themselves")
    await _exists(uow, player_id)
    await _exists(uow, linked_player_id)
    first, second = sorted((player_id, linked_player_id))
    added = await sql.run(
        uow,
        "INSERT INTO player_links (player_id, linked_player_id, basis, linked_at)"
        " VALUES (%(a)s, %(b)s, %(basis)s, %(now)s) ON CONFLICT DO NOTHING",
        {"a": first, "b": second, "basis": basis, "now": uow.now},
    )
    if added:
        await journal.record(
            uow,
            "player.linked",
            ctx=ctx,
            player_id=player_id,
            data={"linked_player_id": str(linked_player_id), "basis": basis, "reason": reason},
        )
    return added > 0


async def standing(uow: UnitOfWork, player_id: uuid.UUID) -> Standing:
    await _exists(uow, player_id)
    row = await sql.one(
        uow,
        "SELECT"
        " (SELECT json_build_array(level, set_at) FROM kyc_levels WHERE player_id = %(p)s"
        "  ORDER BY id DESC LIMIT 1) AS kyc,"
        " (SELECT json_build_array(on_hold, set_at) FROM aml_holds WHERE player_id = %(p)s"
        "  ORDER BY id DESC LIMIT 1) AS aml",
        {"p": player_id},
    )
    assert row is not None  # noqa: S101 - a SELECT without FROM yields one row
    links = await sql.all_rows(
        uow,
        "SELECT CASE WHEN player_id = %(p)s THEN linked_player_id ELSE player_id END AS other,"
        " basis FROM player_links WHERE %(p)s IN (player_id, linked_player_id) ORDER BY id",
        {"p": player_id},
    )
    kyc, aml = row["kyc"], row["aml"]
    return Standing(
        kyc_level=kyc[0] if kyc else "unverified",
        kyc_set_at=datetime.fromisoformat(kyc[1]) if kyc else None,
        aml_hold=bool(aml and aml[0]),
        aml_set_at=datetime.fromisoformat(aml[1]) if aml else None,
        linked=tuple((link["other"], link["basis"]) for link in links),
    )
