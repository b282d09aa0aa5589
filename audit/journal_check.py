"""The journal held against the log, for the operator.

Regulators verify the log; the application reads the journal. The log keeps its own copy of
every entry's bytes, so a database superuser who edits or deletes a journal row after it was
integrated changes nothing the verifier sees — and nothing else would notice. This check
re-derives each entry from its journal row and lists the rows that no longer match, and the
committed rows below the integration line that the log never took (a row slipped in with an old
transaction id).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from audit import log
from core import sql
from core.uow import UnitOfWork

REPORTED = 100  # ids listed per finding; the counts are complete


@dataclass
class JournalCheck:
    entries: int = 0
    altered: list[int] = field(default_factory=list)  # journal ids changed or deleted
    altered_count: int = 0
    missing: list[int] = field(default_factory=list)  # journal ids the log never took
    missing_count: int = 0

    @property
    def ok(self) -> bool:
        return not (self.altered_count or self.missing_count)


async def check_journal(
    uow: UnitOfWork, *, page: int = 5000, progress: Callable[[int, int], None] | None = None
) -> JournalCheck:
    result = JournalCheck()
    size = await log.tree_size(uow)
    start = 0
    while start < size:
        rows = await sql.all_rows(
            uow,
            "SELECT a.idx, a.journal_id, a.entry, j.envelope::text AS envelope"
            " FROM audit_entries a LEFT JOIN journal_events j ON j.id = a.journal_id"
            " WHERE a.idx >= %(start)s AND a.idx < %(end)s ORDER BY a.idx",
            {"start": start, "end": min(size, start + page)},
        )
        for row in rows:
            envelope = row["envelope"]
            if envelope is None or log.entry_bytes(row["journal_id"], envelope) != bytes(
                row["entry"]
            ):
                result.altered_count += 1
                if len(result.altered) < REPORTED:
                    result.altered.append(row["journal_id"])
        result.entries += len(rows)
        start += page
        if progress:
            progress(min(size, start), size)
    await _missing(uow, result)
    return result


async def _missing(uow: UnitOfWork, result: JournalCheck) -> None:
    last = await sql.one(
        uow,
        "SELECT journal_id, txid::text AS txid FROM audit_entries ORDER BY idx DESC LIMIT 1",
        {},
    )
    if last is None:
        return
    rows = await sql.all_rows(
        uow,
        "SELECT j.id FROM journal_events j"
        " WHERE (j.txid, j.id) <= (%(txid)s::xid8, %(id)s)"
        " AND NOT EXISTS (SELECT FROM audit_entries a WHERE a.journal_id = j.id)"
        " ORDER BY j.id",
        {"txid": last["txid"], "id": last["journal_id"]},
    )
    result.missing_count = len(rows)
    result.missing = [row["id"] for row in rows[:REPORTED]]
