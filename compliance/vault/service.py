"""The vault's operations, on a unit of work over the vault role's connection.

Every field is sealed with the player's own data key (AES-256-GCM, bound to player and field);
the data key is stored wrapped by the key provider's current KEK. Everything the vault does that
a regulator or the player may ask about — storing, revealing or refusing to, exporting,
erasing — is journaled in the same transaction, with tokens and decisions, never a value.
"""

import base64
import logging
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from compliance.vault import crypto, normalize
from compliance.vault.keys import KeyProvider, WrappedKey
from core import journal, sql
from core.errors import Conflict, Gone, InvalidRequest, NotFound
from core.journal import EventContext
from core.uow import UnitOfWork

log = logging.getLogger(__name__)

DUPLICATE_KINDS = ("email", "phone", "national_id", "iban")
MAX_DUPLICATES = 50  # listed per registration: enough to open a case, bounded for the answer


@dataclass(frozen=True)
class PersonalData:
    legal_name: str | None = None
    date_of_birth: str | None = None  # YYYY-MM-DD
    address: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    email: str | None = None
    phone: str | None = None
    national_id: str | None = None
    iban: str | None = None

    def present(self) -> dict[str, str]:
        return {field: value for field, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Stored:
    tokens: dict[str, str]
    possible_duplicates: list[dict[str, str]]  # {"kind": ..., "player_id": ...}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _open(data_key: bytes, player_id: uuid.UUID, context: str, sealed: bytes) -> bytes:
    """Decrypt, or say plainly that the vault's rows were altered or moved."""
    try:
        return crypto.decrypt_field(data_key, player_id, context, sealed)
    except crypto.DecryptionFailed:
        raise Conflict(
            "vault_integrity_failure",
            "a sealed field does not open with this player's key: it was altered or moved",
            field=context,
        ) from None


def _token() -> str:
    return "pii_" + secrets.token_urlsafe(18)


def _blind_indexes(keys: KeyProvider, data: dict[str, str]) -> list[tuple[str, bytes]]:
    key = keys.blind_index_key()
    try:
        found = [
            (kind, normalize.blind_index(key, kind, data[kind]))
            for kind in DUPLICATE_KINDS
            if kind in data
        ]
        if "date_of_birth" in data:  # a real day: the gate computes ages from it
            normalize.check_date_of_birth(data["date_of_birth"])
        if "legal_name" in data and "date_of_birth" in data:
            both = normalize.name_dob(data["legal_name"], data["date_of_birth"])
            found.append(("name_dob", normalize.blind_index(key, "name_dob", both)))
    except ValueError as error:
        raise InvalidRequest("invalid_personal_data", str(error)) from None
    return found


async def store(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    data: PersonalData,
    keys: KeyProvider,
    ctx: EventContext,
) -> Stored:
    """Seal a new player's personal data; returns its tokens and players that share any of
    email, phone, national id or IBAN (duplicate-account detection)."""
    values = data.present()
    indexes = _blind_indexes(keys, values)
    if await sql.scalar(
        uow, "SELECT 1 FROM vault.data_keys WHERE player_id = %(p)s", {"p": player_id}
    ):
        raise Conflict("personal_data_exists", "this player's personal data is already stored")
    data_key = crypto.new_data_key()
    wrapped = keys.wrap(player_id, data_key)
    await sql.run(
        uow,
        "INSERT INTO vault.data_keys (player_id, kek_version, sealed, created_at)"
        " VALUES (%(p)s, %(v)s, %(sealed)s, %(now)s)",
        {"p": player_id, "v": wrapped.kek_version, "sealed": wrapped.sealed, "now": uow.now},
    )
    tokens = {field: _token() for field in values}
    await sql.copy_rows(
        uow,
        "COPY vault.fields (player_id, field, token, sealed, created_at) FROM STDIN",
        (
            (
                player_id,
                field,
                tokens[field],
                crypto.encrypt_field(data_key, player_id, field, value.encode()),
                uow.now,
            )
            for field, value in values.items()
        ),
    )
    duplicates = await _others_sharing(uow, player_id, indexes)
    await sql.copy_rows(
        uow,
        "COPY vault.blind_indexes (kind, digest, player_id) FROM STDIN",
        ((kind, digest, player_id) for kind, digest in indexes),
    )
    await journal.record(
        uow,
        "vault.personal_data_stored",
        ctx=ctx,
        player_id=player_id,
        data={"tokens": tokens, "possible_duplicates": duplicates},
    )
    return Stored(tokens, duplicates)


async def _others_sharing(
    uow: UnitOfWork, player_id: uuid.UUID, indexes: list[tuple[str, bytes]]
) -> list[dict[str, str]]:
    wanted = [(kind, digest) for kind, digest in indexes if kind in DUPLICATE_KINDS]
    if not wanted:
        return []
    rows = await sql.all_rows(
        uow,
        "SELECT DISTINCT b.kind, b.player_id FROM vault.blind_indexes b"
        " JOIN unnest(%(kinds)s::text[], %(digests)s::bytea[]) AS w(kind, digest)"
        " ON b.kind = w.kind AND b.digest = w.digest"
        " WHERE b.player_id <> %(p)s ORDER BY b.kind, b.player_id LIMIT %(n)s",
        {
            "kinds": [k for k, _ in wanted],
            "digests": [d for _, d in wanted],
            "p": player_id,
            "n": MAX_DUPLICATES,
        },
    )
    return [{"kind": row["kind"], "player_id": str(row["player_id"])} for row in rows]


async def players_sharing(
    uow: UnitOfWork, *, kind: str, value: str, keys: KeyProvider
) -> list[uuid.UUID]:
    """Exact lookup through a blind index: the players whose `kind` normalizes like `value`."""
    try:
        digest = normalize.blind_index(keys.blind_index_key(), kind, value)
    except ValueError as error:
        raise InvalidRequest("invalid_personal_data", str(error)) from None
    rows = await sql.all_rows(
        uow,
        "SELECT player_id FROM vault.blind_indexes WHERE kind = %(k)s AND digest = %(d)s"
        " ORDER BY player_id",
        {"k": kind, "d": digest},
    )
    return [row["player_id"] for row in rows]


async def store_document(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    kind: str,
    content_type: str,
    content: bytes,
    keys: KeyProvider,
    ctx: EventContext,
    create_key: bool = False,
) -> str:
    """Seal a document (an image, or text the player wrote: an appeal's explanation, a message)
    and return its token. `create_key`: a player with no personal data on file yet gets a data
    key of their own here (the appeals' texts); an erased player's data key never comes back."""
    data_key = await (_data_key_or_new if create_key else _data_key)(uow, player_id, keys)
    token = _token()
    await sql.run(
        uow,
        "INSERT INTO vault.documents (token, player_id, kind, content_type, sealed, created_at)"
        " VALUES (%(t)s, %(p)s, %(k)s, %(ct)s, %(sealed)s, %(now)s)",
        {
            "t": token,
            "p": player_id,
            "k": kind,
            "ct": content_type,
            "sealed": crypto.encrypt_field(data_key, player_id, f"document_image:{token}", content),
            "now": uow.now,
        },
    )
    await journal.record(
        uow,
        "vault.document_stored",
        ctx=ctx,
        player_id=player_id,
        data={"token": token, "kind": kind, "content_type": content_type, "bytes": len(content)},
    )
    return token


async def _data_key_or_new(uow: UnitOfWork, player_id: uuid.UUID, keys: KeyProvider) -> bytes:
    try:
        return await _data_key(uow, player_id, keys)
    except NotFound:
        pass
    data_key = crypto.new_data_key()
    wrapped = keys.wrap(player_id, data_key)
    await sql.run(
        uow,
        "INSERT INTO vault.data_keys (player_id, kek_version, sealed, created_at)"
        " VALUES (%(p)s, %(v)s, %(sealed)s, %(now)s)",
        {"p": player_id, "v": wrapped.kek_version, "sealed": wrapped.sealed, "now": uow.now},
    )
    return data_key


async def _data_key(uow: UnitOfWork, player_id: uuid.UUID, keys: KeyProvider) -> bytes:
    row = await sql.one(
        uow,
        "SELECT d.kek_version, d.sealed, e.erased_at FROM (SELECT %(p)s::uuid AS player_id) q"
        " LEFT JOIN vault.data_keys d ON d.player_id = q.player_id"
        " LEFT JOIN vault.erasures e ON e.player_id = q.player_id",
        {"p": player_id},
    )
    assert row is not None  # noqa: S101 - the outer query always yields a row
    if row["erased_at"] is not None:
        raise Gone(
            "erased",
            "this player's personal data was erased",
            erased_at=journal.rfc3339(row["erased_at"]),
        )
    if row["sealed"] is None:
        raise NotFound("no_personal_data", "the vault holds no personal data for this player")
    try:
        return keys.unwrap(player_id, WrappedKey(row["kek_version"], bytes(row["sealed"])))
    except crypto.VaultCryptoError:
        raise Conflict(
            "vault_integrity_failure",
            "this player's data key does not open: altered, moved, or its KEK retired too soon",
        ) from None


async def _sealed_fields(uow: UnitOfWork, player_id: uuid.UUID) -> dict[str, tuple[str, bytes]]:
    rows = await sql.all_rows(
        uow,
        "SELECT field, token, sealed FROM vault.fields WHERE player_id = %(p)s",
        {"p": player_id},
    )
    return {row["field"]: (row["token"], bytes(row["sealed"])) for row in rows}


async def date_of_birth(uow: UnitOfWork, *, player_id: uuid.UUID, keys: KeyProvider) -> date | None:
    """The date of birth for the gate's age fact; None when none is on file, it was erased, or
    what is on file is not a real YYYY-MM-DD day.

    Not a reveal: the value stays in the server, which computes an age from it, so it is not
    journaled per read (the gate's decisions record the age, never the date).
    """
    row = await sql.one(
        uow,
        "SELECT d.kek_version, d.sealed AS wrapped, f.sealed FROM vault.fields f"
        " JOIN vault.data_keys d ON d.player_id = f.player_id"
        " WHERE f.player_id = %(p)s AND f.field = 'date_of_birth'",
        {"p": player_id},
    )
    if row is None:
        return None
    try:
        data_key = keys.unwrap(player_id, WrappedKey(row["kek_version"], bytes(row["wrapped"])))
    except crypto.VaultCryptoError:
        raise Conflict("vault_integrity_failure", "this player's data key does not open") from None
    opened = _open(data_key, player_id, "date_of_birth", bytes(row["sealed"]))
    try:  # stored before registration checked dates: an unknown age, not a failed request
        text = opened.decode()
        normalize.check_date_of_birth(text)
    except ValueError:  # the error's message quotes the value: log neither
        log.warning("player %s: the stored date of birth is not a YYYY-MM-DD date", player_id)
        return None
    return date.fromisoformat(text.strip())


async def masked(uow: UnitOfWork, *, player_id: uuid.UUID, keys: KeyProvider) -> dict[str, Any]:
    """The default view: every field masked (IBAN last 4, email first letter and domain...)."""
    data_key = await _data_key(uow, player_id, keys)
    view: dict[str, Any] = {}
    for field, (token, sealed) in sorted((await _sealed_fields(uow, player_id)).items()):
        value = _open(data_key, player_id, field, sealed).decode()
        view[field] = {"token": token, "masked": normalize.mask(field, value)}
    return view


async def decide(uow: UnitOfWork, *, actor_role: str, purpose: str, field: str) -> Decision:
    allowed = bool(
        await sql.scalar(
            uow,
            "SELECT 1 FROM vault.reveal_rules WHERE actor_role = %(r)s AND purpose = %(p)s"
            " AND field = %(f)s",
            {"r": actor_role, "p": purpose, "f": field},
        )
    )
    reason = "allowed by rule" if allowed else f"{actor_role} may not see {field} for {purpose}"
    return Decision(allowed, reason)


async def reveal(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    field: str,
    actor: str,
    actor_role: str,
    purpose: str,
    keys: KeyProvider,
    ctx: EventContext,
    document_token: str | None = None,
) -> tuple[Decision, bytes | None]:
    """Decide, journal the decision, and only if allowed decrypt. The caller commits either way
    (a refusal is a fact to keep too)."""
    if field not in crypto.FIELDS:
        raise InvalidRequest("unknown_field", f"no personal field {field!r}", field=field)
    decision = await decide(uow, actor_role=actor_role, purpose=purpose, field=field)
    value = None
    if decision.allowed:
        data_key = await _data_key(uow, player_id, keys)
        sealed, context = await _locate(uow, player_id, field, document_token)
        value = _open(data_key, player_id, context, sealed)
    await journal.record(
        uow,
        "vault.field_revealed" if decision.allowed else "vault.reveal_refused",
        ctx=ctx,
        player_id=player_id,
        data={
            "field": field,
            "document": document_token,
            "actor": actor,
            "actor_role": actor_role,
            "purpose": purpose,
            "decision": "allow" if decision.allowed else "deny",
            "reason": decision.reason,
        },
    )
    return decision, value


async def _locate(
    uow: UnitOfWork, player_id: uuid.UUID, field: str, document_token: str | None
) -> tuple[bytes, str]:
    if field == "document_image":
        sealed = await sql.scalar(
            uow,
            "SELECT sealed FROM vault.documents WHERE token = %(t)s AND player_id = %(p)s",
            {"t": document_token or "", "p": player_id},
        )
        context = f"document_image:{document_token}"
    else:
        sealed = await sql.scalar(
            uow,
            "SELECT sealed FROM vault.fields WHERE player_id = %(p)s AND field = %(f)s",
            {"p": player_id, "f": field},
        )
        context = field
    if sealed is None:
        raise NotFound("no_such_field", f"the vault holds no {field} for this player")
    return bytes(sealed), context


async def export(
    uow: UnitOfWork, *, player_id: uuid.UUID, actor: str, keys: KeyProvider, ctx: EventContext
) -> dict[str, Any]:
    """Everything the vault holds about the player, in clear (a data subject access request)."""
    erased_at = await sql.scalar(
        uow, "SELECT erased_at FROM vault.erasures WHERE player_id = %(p)s", {"p": player_id}
    )
    body: dict[str, Any] = {"player_id": str(player_id)}
    if erased_at is not None:
        body["erased_at"] = journal.rfc3339(erased_at)
    else:
        data_key = await _data_key(uow, player_id, keys)
        fields = await _sealed_fields(uow, player_id)
        body["fields"] = {
            field: {
                "token": token,
                "value": _open(data_key, player_id, field, sealed).decode(),
            }
            for field, (token, sealed) in sorted(fields.items())
        }
        body["documents"] = [
            {
                "token": row["token"],
                "kind": row["kind"],
                "content_type": row["content_type"],
                "content_base64": base64.b64encode(
                    _open(
                        data_key, player_id, f"document_image:{row['token']}", bytes(row["sealed"])
                    )
                ).decode(),
            }
            for row in await sql.all_rows(
                uow,
                "SELECT token, kind, content_type, sealed FROM vault.documents"
                " WHERE player_id = %(p)s ORDER BY created_at, token",
                {"p": player_id},
            )
        ]
        body["lookups_indexed"] = [
            row["kind"]
            for row in await sql.all_rows(
                uow,
                "SELECT kind FROM vault.blind_indexes WHERE player_id = %(p)s ORDER BY kind",
                {"p": player_id},
            )
        ]
    await journal.record(uow, "vault.exported", ctx=ctx, player_id=player_id, data={"actor": actor})
    return body


@dataclass(frozen=True)
class Erasure:
    erased_at: datetime | None
    held_until: datetime | None  # set when a retention hold refused the erasure


async def erase(
    uow: UnitOfWork,
    *,
    player_id: uuid.UUID,
    actor: str,
    reason: str,
    held_until: datetime | None,
    ctx: EventContext,
) -> Erasure:
    """Crypto-shred: destroy the data key and the blind indexes, leave a tombstone. Refused while
    a retention hold (AML record keeping) runs; the caller commits either way, since the
    refusal is journaled too."""
    if held_until is not None and uow.now < held_until:
        await journal.record(
            uow,
            "vault.erasure_refused",
            ctx=ctx,
            player_id=player_id,
            data={"actor": actor, "held_until": journal.rfc3339(held_until)},
        )
        return Erasure(None, held_until)
    await _check_erasable(uow, player_id)
    await sql.run(uow, "DELETE FROM vault.data_keys WHERE player_id = %(p)s", {"p": player_id})
    await sql.run(uow, "DELETE FROM vault.blind_indexes WHERE player_id = %(p)s", {"p": player_id})
    await sql.run(
        uow,
        "INSERT INTO vault.erasures (player_id, erased_at, actor, reason)"
        " VALUES (%(p)s, %(now)s, %(actor)s, %(reason)s)",
        {"p": player_id, "now": uow.now, "actor": actor, "reason": reason},
    )
    await journal.record(
        uow, "vault.erased", ctx=ctx, player_id=player_id, data={"actor": actor, "reason": reason}
    )
    return Erasure(uow.now, None)


async def _check_erasable(uow: UnitOfWork, player_id: uuid.UUID) -> None:
    """Not erased already, and there is something to erase."""
    erased_at = await sql.scalar(
        uow, "SELECT erased_at FROM vault.erasures WHERE player_id = %(p)s", {"p": player_id}
    )
    if erased_at is not None:
        raise Gone("erased", "already erased", erased_at=journal.rfc3339(erased_at))
    if not await sql.scalar(
        uow, "SELECT 1 FROM vault.data_keys WHERE player_id = %(p)s", {"p": player_id}
    ):
        raise NotFound("no_personal_data", "the vault holds no personal data for this player")
