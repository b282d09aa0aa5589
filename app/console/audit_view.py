"""The audit log as the console shows it: the newest signed checkpoint (its signature opened
with the log's keys), one entry's inclusion proven against it with the offline verifier's own
code (audit/merkle.py), the export packed as one download, and the console's own activity
read back from the journal."""

import asyncio
import tarfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from audit import export, log, merkle
from audit.note import Checkpoint, NoteError, Verifier, open_checkpoint
from core import sql
from core.errors import NotFound
from core.uow import UnitOfWork


@dataclass(frozen=True)
class Newest:
    stored: log.StoredCheckpoint
    checkpoint: Checkpoint | None  # as signed, when a key of the log's opened the note
    signed_by: tuple[str, ...]
    problem: str | None  # why the note did not open


async def newest(uow: UnitOfWork, verifiers: list[Verifier]) -> Newest | None:
    """The newest checkpoint and what its signature says; None before the first one."""
    try:
        stored = await log.latest_checkpoint(uow)
    except NotFound:
        return None
    try:
        checkpoint, signers = open_checkpoint(stored.note, verifiers)
    except NoteError as error:
        return Newest(stored, None, (), str(error))
    return Newest(stored, checkpoint, tuple(f"{v.name}+{v.key_id:08x}" for v in signers), None)


class BeyondTree(ValueError):
    """The index names no entry of the checkpoint's tree."""


@dataclass(frozen=True)
class Inclusion:
    index: int
    size: int
    entry: dict[str, Any]  # what the entry records: event, time, journal id (ids only)
    leaf: bytes
    proof: tuple[bytes, ...]
    root: bytes
    verified: bool
    why_not: str | None


async def inclusion(uow: UnitOfWork, checkpoint: Checkpoint, index: int) -> Inclusion:
    """Entry `index` hashed from its stored bytes and proven into the signed root."""
    if not 0 <= index < checkpoint.size:
        raise BeyondTree(index)
    stored = await log.entries(uow, start=index, end=index + 1)
    entry = stored[0][1] if stored else b"{}"
    leaf = merkle.leaf_hash(entry)
    why_not: str | None
    try:
        _, proof = await log.inclusion_proof(uow, index=index, size=checkpoint.size)
    except log.LogCorrupted as error:
        proof, why_not = [], str(error)
    else:
        why_not = _disproved(index, checkpoint, leaf, proof)
    if not stored:  # the table lost a row the signed tree covers: the database was changed
        why_not = f"the log's table holds no entry {index}, which the signed tree covers"
    return Inclusion(
        index=index,
        size=checkpoint.size,
        entry=_summary(entry),
        leaf=leaf,
        proof=tuple(proof),
        root=checkpoint.root,
        verified=why_not is None,
        why_not=why_not,
    )


def _disproved(index: int, checkpoint: Checkpoint, leaf: bytes, proof: list[bytes]) -> str | None:
    """Why the proof does not lead from the leaf to the signed root; None when it does."""
    try:
        merkle.verify_inclusion(index, checkpoint.size, leaf, proof, checkpoint.root)
    except merkle.ProofError as error:
        return str(error)
    return None


def _summary(entry: bytes) -> dict[str, Any]:
    event = orjson.loads(entry)
    return {key: event.get(key) for key in ("event", "ts", "journal_id", "player_id", "actor")}


async def export_archive(
    uow: UnitOfWork, workdir: Path, *, size: int, origin: str, verifiers: list[Verifier]
) -> Path:
    """The export of the tree of `size` entries (audit/export.py's layout) as a .tar.gz in
    `workdir`, under a folder named after the size. Below a published checkpoint's size the
    log is write-once, so what this reads cannot change while it reads."""
    name = f"pitwarden-audit-{size}"
    await export.export(uow, workdir / name, origin=origin, verifiers=verifiers, size=size)
    archive = workdir / f"{name}.tar.gz"
    await asyncio.to_thread(_pack, workdir / name, archive)
    return archive


def _pack(directory: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)


# Every event the console writes. A test reads the console's source for the events it
# journals, so a new one cannot be left off this page.
CONSOLE_EVENTS = (
    "console.action",
    "console.approval_decided",
    "console.approval_requested",
    "console.officer_created",
    "console.officer_disabled",
    "console.officer_enabled",
    "console.officer_role_changed",
    "console.officer_sign_in_reset",
    "console.passkey_added",
    "console.session_ended",
    "console.sign_in_failed",
    "console.signed_in",
    "console.stepped_up",
    "console.totp_enrolled",
    "security.csrf_refused",
)
ACTIVITY_PAGE = 50


@dataclass(frozen=True)
class Activity:
    id: int
    event: str
    at: datetime
    actor: str
    officer: str | None  # the officer's name, when the actor (or the event) names one
    role: str | None
    session: str | None
    what: str
    decision_id: str | None
    player_id: uuid.UUID | None


# One newest-first walk of the (event, id) index per event, merged: the work is bounded by the
# page, however long the journal.
_NEWEST_OF_EACH = (
    "SELECT found.* FROM unnest(%(events)s::text[]) AS wanted(event)"
    " CROSS JOIN LATERAL (SELECT id, event, ts, player_id, envelope FROM journal_events"
    "  WHERE event = wanted.event AND id < %(before)s ORDER BY id DESC LIMIT %(n)s) AS found"
    " ORDER BY found.id DESC LIMIT %(n)s"
)


async def activity(uow: UnitOfWork, *, before: int | None) -> tuple[list[Activity], int | None]:
    """A page of the console's events, newest first, older than the journal id `before`; and
    the cursor of the next page, if there is one."""
    rows = await sql.all_rows(
        uow,
        _NEWEST_OF_EACH,
        {
            "events": list(CONSOLE_EVENTS),
            "before": before if before is not None else 2**63 - 1,
            "n": ACTIVITY_PAGE + 1,
        },
    )
    more, rows = len(rows) > ACTIVITY_PAGE, rows[:ACTIVITY_PAGE]
    names = await _officers(uow, rows)
    return [_activity(row, names) for row in rows], rows[-1]["id"] if more else None


async def _officers(uow: UnitOfWork, rows: list[dict[str, Any]]) -> dict[str, str]:
    ids = {_officer_id(row) for row in rows} - {None}
    if not ids:
        return {}
    found = await sql.all_rows(
        uow,
        "SELECT id, username FROM officers WHERE id = ANY(%(ids)s)",
        {"ids": [uuid.UUID(officer) for officer in ids if officer]},
    )
    return {str(row["id"]): row["username"] for row in found}


def _officer_id(row: dict[str, Any]) -> str | None:
    envelope = row["envelope"]
    actor = envelope.get("actor") or ""
    if actor.startswith("officer:"):
        return str(actor.removeprefix("officer:"))
    named = (envelope.get("data") or {}).get("officer_id")
    return str(named) if named else None


def _activity(row: dict[str, Any], names: dict[str, str]) -> Activity:
    envelope = row["envelope"]
    data = envelope.get("data") or {}
    officer = _officer_id(row)
    return Activity(
        id=row["id"],
        event=row["event"],
        at=row["ts"],
        actor=envelope.get("actor") or "",
        officer=names.get(officer) if officer else None,
        role=data.get("role"),
        session=envelope.get("session_id") or data.get("session"),
        what=_what(row["event"], data),
        decision_id=data.get("decision_id"),
        player_id=row["player_id"],
    )


def _what(event: str, data: dict[str, Any]) -> str:
    """The event in a few words; addresses and attempted names are left out."""
    if event == "console.action":
        outcome = (
            "allowed" if data.get("effect") == "allow" else f"refused ({data.get('reason_code')})"
        )
        subject = f" {data['subject']}" if data.get("subject") else ""
        return f"{data.get('action')}{subject}: {outcome}"
    if event == "security.csrf_refused":
        return f"form refused without this session's token: {data.get('path')}"
    details = {
        "console.signed_in": f"signed in ({data.get('factor')})",
        "console.sign_in_failed": f"sign-in failed ({data.get('factor')})"
        + (" — locked for a while" if data.get("locked_until") else ""),
        "console.session_ended": f"session ended ({data.get('reason')})",
        "console.stepped_up": f"second factor confirmed ({data.get('factor')})",
        "console.totp_enrolled": "authenticator enrolled",
        "console.officer_created": f"officer created ({data.get('role')})",
        "console.officer_role_changed": f"officer {str(data.get('officer_id'))[:8]}'s role"
        f" changed: {data.get('from')} → {data.get('to')}",
        "console.officer_disabled": f"officer {str(data.get('officer_id'))[:8]} disabled",
        "console.officer_enabled": f"officer {str(data.get('officer_id'))[:8]} enabled",
        "console.officer_sign_in_reset": f"officer {str(data.get('officer_id'))[:8]}'s sign-in"
        " reset",
    }
    return details.get(event, event)
