"""The audit log over the journal: integration, stored tree hashes, signed checkpoints, proofs.

Integration takes committed journal events in the order their transactions became safe to
read and gives them gapless leaf indices. Journal ids are not commit order: a transaction may
take a low id and commit late. So the integrator never reads past the oldest transaction still
in flight (`pg_snapshot_xmin` of its own snapshot): every event below that line is committed
(or gone with its rollback) and visible, and nothing can appear below it later. It resumes from
the (txid, id) of the last entry, which is why the log's order is (txid, id) within each run.

Entries are the RFC 8785 canonical JSON of the event (its envelope plus `journal_id`); the
exact bytes are stored next to the tree hashes (the stored-hash layout of Go's sumdb/tlog, see
audit/merkle.py), so any proof reads O(log n) rows.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

import orjson

from audit import merkle
from audit.canonical import canonical_value
from audit.note import Checkpoint, Signer, sign_checkpoint
from core import sql
from core.errors import InvalidRequest, NotFound
from core.uow import UnitOfWork

# One integrator or checkpoint writer at a time (server task, CLI, tests).
_LOCK_KEY = 0x5057_4155_4449_54  # "PWAUDIT"
MAX_PAGE = 1000


class LogCorrupted(RuntimeError):
    """A stored hash the tree needs is missing: the database was changed behind our back."""


@dataclass(frozen=True, slots=True)
class Published:
    id: int
    checkpoint: Checkpoint
    note: str


async def _lock(uow: UnitOfWork) -> None:
    await sql.run(uow, "SELECT pg_advisory_xact_lock(%(key)s)", {"key": _LOCK_KEY})


async def tree_size(uow: UnitOfWork) -> int:
    last = await sql.scalar(uow, "SELECT max(idx) FROM audit_entries", {})
    return 0 if last is None else int(last) + 1


_PENDING_EVENTS = (
    " FROM journal_events"
    " WHERE (txid, id) > (%(txid)s::xid8, %(id)s)"
    "   AND txid < pg_snapshot_xmin(pg_current_snapshot())"
    " ORDER BY txid, id LIMIT %(limit)s"
)
_PENDING = (
    "SELECT id, txid::text AS txid_text,"  # not `AS txid`: ORDER BY would sort the text
    " envelope::text AS envelope" + _PENDING_EVENTS
)


async def _cursor(uow: UnitOfWork) -> tuple[int, dict[str, Any]]:
    """The log's size, and the (txid, id) of the last journal event it took."""
    last = await sql.one(
        uow,
        "SELECT idx, journal_id, txid::text AS txid FROM audit_entries ORDER BY idx DESC LIMIT 1",
        {},
    )
    if last is None:
        return 0, {"txid": "0", "id": 0}
    return last["idx"] + 1, {"txid": last["txid"], "id": last["journal_id"]}


async def oldest_pending(uow: UnitOfWork) -> datetime | None:
    """When the next committed journal event the log has not taken yet was written; None when
    the log is current. How far the integrator lags (the readiness probe's question)."""
    _, cursor = await _cursor(uow)
    found = await sql.scalar(uow, "SELECT ts" + _PENDING_EVENTS, {**cursor, "limit": 1})
    return found if isinstance(found, datetime) else None


async def integrate(uow: UnitOfWork, *, limit: int = 5000) -> int:
    """Append up to `limit` committed journal events not yet in the log; the caller commits.

    Returns how many were appended; call again (in a new transaction) until it returns 0.
    """
    await _lock(uow)
    size, cursor = await _cursor(uow)
    events = await sql.all_rows(uow, _PENDING, {**cursor, "limit": limit})
    if not events:
        return 0
    entries = [entry_bytes(row["id"], row["envelope"]) for row in events]
    first_hash = merkle.stored_hash_count(size)
    hashes = await _grow(uow, size, [merkle.leaf_hash(entry) for entry in entries])
    await sql.copy_rows(
        uow,
        "COPY audit_entries (idx, journal_id, txid, entry, integrated_at)"
        " FROM STDIN (FORMAT BINARY)",
        (
            (size + n, row["id"], int(row["txid_text"]), entry, uow.now)
            for n, (row, entry) in enumerate(zip(events, entries, strict=True))
        ),
        # xid8's binary form is an 8-byte big-endian integer, int8's too (below 2**63).
        binary_types=("int8", "int8", "int8", "bytea", "timestamptz"),
    )
    await sql.copy_rows(
        uow,
        "COPY audit_tree_hashes (idx, hash) FROM STDIN (FORMAT BINARY)",
        enumerate(hashes, start=first_hash),
        binary_types=("int8", "bytea"),
    )
    return len(entries)


def entry_bytes(journal_id: int, envelope: str) -> bytes:
    """The entry: the event's envelope plus its journal id, as RFC 8785 bytes."""
    event = orjson.loads(envelope)
    event["journal_id"] = journal_id
    return canonical_value(event)


async def _grow(uow: UnitOfWork, size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The stored hashes that appending `leaves` to a tree of `size` adds, in index order."""
    tree = merkle.RootBuilder(size, await read_hashes(uow, merkle.root_indexes(size)))
    return [h for leaf in leaves for h in tree.append(leaf)]


@overload
async def read_hashes(uow: UnitOfWork, indexes: Sequence[int]) -> list[bytes]: ...
@overload
async def read_hashes(
    uow: UnitOfWork, indexes: Sequence[int], *, missing_ok: Literal[True]
) -> list[bytes | None]: ...
async def read_hashes(
    uow: UnitOfWork, indexes: Sequence[int], *, missing_ok: bool = False
) -> list[bytes] | list[bytes | None]:
    """The stored hashes at `indexes`, in that order (one query)."""
    if not indexes:
        return []
    rows = await sql.all_rows(
        uow,
        "SELECT idx, hash FROM audit_tree_hashes WHERE idx = ANY(%(idx)s::bigint[])",
        {"idx": list(set(indexes))},
    )
    found = {row["idx"]: bytes(row["hash"]) for row in rows}
    if missing_ok:
        return [found.get(i) for i in indexes]
    missing = [i for i in indexes if i not in found]
    if missing:
        raise LogCorrupted(f"stored tree hashes {missing[:5]} are missing")
    return [found[i] for i in indexes]


async def root(uow: UnitOfWork, size: int) -> bytes:
    return merkle.root_from(size, await read_hashes(uow, merkle.root_indexes(size)))


async def publish_checkpoint(
    uow: UnitOfWork, *, origin: str, signers: Sequence[Signer], force: bool = False
) -> Published | None:
    """Sign and store a checkpoint of the whole tree, unless it has not grown (or `force`)."""
    await _lock(uow)
    size = await tree_size(uow)
    latest = await sql.one(
        uow, "SELECT tree_size, published_at FROM audit_checkpoints ORDER BY id DESC LIMIT 1", {}
    )
    if latest and latest["tree_size"] == size and not force:
        return None
    # A log's clock never runs backwards, whatever the host's clock does.
    now = max(uow.now, latest["published_at"]) if latest else uow.now
    checkpoint = Checkpoint(origin, size, await root(uow, size), time=now)
    note = sign_checkpoint(checkpoint, signers)
    checkpoint_id = await sql.scalar(
        uow,
        "INSERT INTO audit_checkpoints (tree_size, root_hash, published_at, note)"
        " VALUES (%(size)s, %(root)s, %(now)s, %(note)s) RETURNING id",
        {"size": size, "root": checkpoint.root, "now": now, "note": note},
    )
    return Published(checkpoint_id, checkpoint, note)


_CHECKPOINT = "SELECT id, tree_size, root_hash, published_at, note FROM audit_checkpoints"


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    id: int
    tree_size: int
    root: bytes
    published_at: datetime
    note: str


def _stored(row: dict[str, Any]) -> StoredCheckpoint:
    return StoredCheckpoint(
        row["id"], row["tree_size"], bytes(row["root_hash"]), row["published_at"], row["note"]
    )


async def latest_checkpoint(uow: UnitOfWork) -> StoredCheckpoint:
    row = await sql.one(uow, _CHECKPOINT + " ORDER BY id DESC LIMIT 1", {})
    if row is None:
        raise NotFound("no_checkpoint", "the audit log has not published a checkpoint yet")
    return _stored(row)


async def checkpoint_at(uow: UnitOfWork, at: datetime) -> StoredCheckpoint:
    """The last checkpoint published at or before `at`."""
    if at.tzinfo is None:
        raise InvalidRequest("naive_datetime", "a point in time needs a UTC offset")
    row = await sql.one(
        uow,
        _CHECKPOINT + " WHERE published_at <= %(at)s ORDER BY published_at DESC, id DESC LIMIT 1",
        {"at": at},
    )
    if row is None:
        raise NotFound("no_checkpoint", "no checkpoint was published at or before that time")
    return _stored(row)


async def checkpoints(uow: UnitOfWork, *, up_to_size: int) -> list[StoredCheckpoint]:
    rows = await sql.all_rows(
        uow, _CHECKPOINT + " WHERE tree_size <= %(size)s ORDER BY id", {"size": up_to_size}
    )
    return [_stored(row) for row in rows]


async def _hashes_within(uow: UnitOfWork, indexes: list[int], size: int) -> list[bytes]:
    """The stored hashes at `indexes`, read in the same query that checks the tree reaches
    `size` (its last stored hash exists: hashes are written with their entries, gaplessly)."""
    last = merkle.stored_hash_count(size) - 1
    found = await read_hashes(uow, [*indexes, last], missing_ok=True)
    if size and found[-1] is None:
        raise InvalidRequest("beyond_tree", f"the tree has fewer than {size} entries", size=size)
    hashes = [h for h in found[:-1] if h is not None]
    if len(hashes) != len(indexes):
        raise LogCorrupted("stored tree hashes are missing")
    return hashes


async def inclusion_proof(uow: UnitOfWork, *, index: int, size: int) -> tuple[bytes, list[bytes]]:
    """Entry `index`'s leaf hash and its audit path in the tree of `size` (one query)."""
    if not 0 <= index < size:
        raise InvalidRequest("bad_range", "need 0 <= index < size", index=index, size=size)
    path = merkle.inclusion_indexes(index, size)
    *hashes, leaf = await _hashes_within(uow, [*path, merkle.stored_hash_index(0, index)], size)
    return leaf, merkle.inclusion_from(index, size, hashes)


async def consistency_proof(uow: UnitOfWork, *, size1: int, size2: int) -> list[bytes]:
    if not 0 <= size1 <= size2:
        raise InvalidRequest("bad_range", "need 0 <= from <= to", size1=size1, size2=size2)
    hashes = await _hashes_within(uow, merkle.consistency_indexes(size1, size2), size2)
    return merkle.consistency_from(size1, size2, hashes)


async def stored_consistency_proof(uow: UnitOfWork, *, size1: int, size2: int) -> list[bytes]:
    """The proof as the stored hashes give it, whatever the entries table now holds."""
    indexes = merkle.consistency_indexes(size1, size2)
    return merkle.consistency_from(size1, size2, await read_hashes(uow, indexes))


async def leaf_hashes(uow: UnitOfWork, *, start: int, end: int) -> list[bytes]:
    return await read_hashes(uow, [merkle.stored_hash_index(0, n) for n in range(start, end)])


async def entries(uow: UnitOfWork, *, start: int, end: int) -> list[tuple[int, bytes]]:
    """Entries with start <= index < end, as stored (a page of at most MAX_PAGE)."""
    if not 0 <= start < end or end - start > MAX_PAGE:
        raise InvalidRequest(
            "bad_range", f"need 0 <= start < end and at most {MAX_PAGE} entries a page"
        )
    rows = await sql.all_rows(
        uow,
        "SELECT idx, entry FROM audit_entries WHERE idx >= %(start)s AND idx < %(end)s"
        " ORDER BY idx",
        {"start": start, "end": end},
    )
    return [(row["idx"], bytes(row["entry"])) for row in rows]


async def stream_entries(
    uow: UnitOfWork, *, end: int, page: int = MAX_PAGE
) -> AsyncIterator[tuple[int, bytes]]:
    """Every stored entry below `end`, in index order, a page at a time."""
    start = 0
    while start < end:
        rows = await sql.all_rows(
            uow,
            "SELECT idx, entry FROM audit_entries WHERE idx >= %(start)s AND idx < %(end)s"
            " ORDER BY idx LIMIT %(page)s",
            {"start": start, "end": end, "page": page},
        )
        if not rows:
            return
        for row in rows:
            yield row["idx"], bytes(row["entry"])
        start = rows[-1]["idx"] + 1
