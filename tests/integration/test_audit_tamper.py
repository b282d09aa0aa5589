"""A database superuser rewrites the log behind the application's back; a regulator's offline
verification of a fresh export catches every kind of rewrite and names the first bad index.

Each tamper runs in a superuser transaction that is rolled back after the export, so the shared
log stays whole for the other tests.
"""

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from typer.testing import CliRunner

from app.cli import cli
from audit import journal_check, log, verify
from audit.note import Checkpoint, Signer, sign_checkpoint
from core.uow import UnitOfWorkFactory
from tests.audit_support import (
    ORIGIN,
    SIGNER,
    catch_up,
    export_to,
    key_file,
    play_some_rounds,
    superuser,
    uows_on,
)
from tests.conftest import Api

pytestmark = pytest.mark.commits

UNLOCKED = ("audit_entries", "audit_checkpoints")


async def unlock(conn: AsyncConnection) -> None:
    """What a superuser can do: switch off the write-once triggers (inside this transaction)."""
    for table in UNLOCKED:
        await conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))


@pytest.fixture
async def published_log(committed_api: Api, committed_uows: UnitOfWorkFactory) -> int:
    """A log with several checkpoints; returns the newest checkpoint's tree size."""
    for _ in range(3):
        await play_some_rounds(committed_api, committed_uows, rounds=2)
        await catch_up(committed_uows)
    async with committed_uows() as uow:
        return (await log.latest_checkpoint(uow)).tree_size


async def tampered_export(
    owner_engine: AsyncEngine, directory: Path, *statements: str, **params: object
) -> None:
    async with superuser(owner_engine) as conn:
        await unlock(conn)
        for statement in statements:
            await conn.execute(sa.text(statement), params)
        await export_to(uows_on(conn), directory)


def verify_dir(directory: Path, *kept: str) -> verify.Report:
    return verify.verify_export(directory, [SIGNER.verifier()], extra_checkpoints=kept)


async def test_an_untouched_export_verifies_from_the_command_line(
    published_log: int, committed_uows: UnitOfWorkFactory, tmp_path: Path
) -> None:
    exported = await export_to(committed_uows, tmp_path / "export")
    assert exported.size == published_log
    result = CliRunner().invoke(
        cli, ["audit", "verify", str(tmp_path / "export"), "--key", str(key_file(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK: {published_log} entries")
    (tmp_path / "other").mkdir()
    other = key_file(tmp_path / "other", [Signer.generate(ORIGIN)])
    refused = CliRunner().invoke(
        cli, ["audit", "verify", str(tmp_path / "export"), "--key", str(other)]
    )
    assert refused.exit_code == 1
    assert "FAIL" in refused.output


async def test_one_changed_byte_is_named(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    bad = published_log - 9
    await tampered_export(
        owner_engine,
        tmp_path,
        # One bit of the event's year: "ts":"2026-... becomes "ts":"2036-..., still valid JSON
        'UPDATE audit_entries SET entry = set_byte(entry, position(\'"ts":"\'::bytea IN entry)'
        ' + 7, get_byte(entry, position(\'"ts":"\'::bytea IN entry) + 7) # 1) WHERE idx = :i',
        i=bad,
    )
    report = verify_dir(tmp_path)
    assert not report.ok
    assert report.first_bad_index == bad


async def test_a_deleted_entry_is_named(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    bad = published_log - 12
    await tampered_export(owner_engine, tmp_path, "DELETE FROM audit_entries WHERE idx = :i", i=bad)
    report = verify_dir(tmp_path)
    assert (report.ok, report.first_bad_index) == (False, bad)


async def test_two_swapped_entries_are_named(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    first, second = published_log - 15, published_log - 4
    await tampered_export(
        owner_engine,
        tmp_path,
        "UPDATE audit_entries SET idx = 999999999999 WHERE idx = :a",
        "UPDATE audit_entries SET idx = :a WHERE idx = :b",
        "UPDATE audit_entries SET idx = :b WHERE idx = 999999999999",
        a=first,
        b=second,
    )
    report = verify_dir(tmp_path)
    assert (report.ok, report.first_bad_index) == (False, first)


async def test_a_forged_entry_slipped_into_history_is_named(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    forged_at = published_log - 20
    forged = b'{"event":"wallet.adjusted","amount":"1000000.00","currency":"EUR"}'
    await tampered_export(
        owner_engine,
        tmp_path,
        "INSERT INTO journal_events (event, ts, envelope)"
        " VALUES ('wallet.adjusted', now(), CAST(convert_from(:forged, 'UTF8') AS jsonb))",
        "UPDATE audit_entries SET idx = idx + 1000000000 WHERE idx >= :i",
        "UPDATE audit_entries SET idx = idx - 1000000000 + 1 WHERE idx >= 1000000000",
        "INSERT INTO audit_entries (idx, journal_id, txid, entry, integrated_at)"
        " SELECT :i, max(id), '1', :forged, now() FROM journal_events",
        i=forged_at,
        forged=forged,
    )
    report = verify_dir(tmp_path)
    assert (report.ok, report.first_bad_index) == (False, forged_at)


async def test_a_replaced_checkpoint_is_refused(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    """The forger cannot sign with the log's key; a note signed with another key is refused."""
    forger = Signer.generate(ORIGIN)  # same name, other key
    forged_root = bytes(32)
    note = sign_checkpoint(Checkpoint(ORIGIN, published_log, forged_root), [forger])
    await tampered_export(
        owner_engine,
        tmp_path,
        "UPDATE audit_checkpoints SET note = :note, root_hash = :root"
        " WHERE id = (SELECT max(id) FROM audit_checkpoints)",
        note=note,
        root=forged_root,
    )
    report = verify_dir(tmp_path)
    assert not report.ok
    assert report.reason is not None
    assert "checkpoint" in report.reason


async def test_dropped_newest_entries_are_named(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    kept = published_log - 6
    await tampered_export(
        owner_engine, tmp_path, "DELETE FROM audit_entries WHERE idx >= :i", i=kept
    )
    report = verify_dir(tmp_path)
    assert (report.ok, report.first_bad_index) == (False, kept)


async def test_history_dropped_with_its_checkpoints_is_caught_by_a_kept_checkpoint(
    published_log: int,
    owner_engine: AsyncEngine,
    committed_uows: UnitOfWorkFactory,
    tmp_path: Path,
) -> None:
    """The superuser also removes the checkpoints that covered the dropped entries; the export
    then agrees with itself, but not with the checkpoint the regulator received earlier."""
    async with committed_uows() as uow:
        received = (await log.latest_checkpoint(uow)).note
        earlier = await log.checkpoints(uow, up_to_size=published_log - 1)
    assert earlier
    keep = earlier[-1].tree_size
    await tampered_export(
        owner_engine,
        tmp_path,
        "DELETE FROM audit_entries WHERE idx >= :i",
        "DELETE FROM audit_checkpoints WHERE tree_size > :i",
        i=keep,
    )
    assert verify_dir(tmp_path).ok  # consistent on its own
    report = verify_dir(tmp_path, received)
    assert (report.ok, report.first_bad_index) == (False, keep)


async def test_a_changed_journal_event_does_not_change_the_log(
    published_log: int, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    """The log keeps its own copy of the bytes: editing the journal afterwards leaves the
    export verifiable and the original entry intact."""
    async with superuser(owner_engine) as conn:
        await conn.execute(sa.text("ALTER TABLE journal_events DISABLE TRIGGER USER"))
        journal_id, entry = (
            await conn.execute(
                sa.text("SELECT journal_id, entry FROM audit_entries WHERE idx = :i"),
                {"i": published_log - 3},
            )
        ).one()
        await conn.execute(
            sa.text("UPDATE journal_events SET envelope = '{}' WHERE id = :j"), {"j": journal_id}
        )
        await export_to(uows_on(conn), tmp_path)
    assert verify_dir(tmp_path).ok
    lines = (tmp_path / "entries.jsonl").read_bytes().split(b"\n")
    assert lines[published_log - 3] == bytes(entry)


async def test_the_journal_is_held_against_the_log(
    published_log: int, owner_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    """Edits of the journal after integration leave the log verifiable; this check finds them."""
    async with committed_uows() as uow:
        assert (await journal_check.check_journal(uow)).ok
    async with superuser(owner_engine) as conn:
        edited, deleted = (
            await conn.execute(
                sa.text("SELECT journal_id FROM audit_entries WHERE idx IN (:a, :b) ORDER BY idx"),
                {"a": published_log - 8, "b": published_log - 3},
            )
        ).scalars()
        await conn.execute(sa.text("ALTER TABLE journal_events DISABLE TRIGGER USER"))
        await conn.execute(
            sa.text(
                "UPDATE journal_events SET envelope = jsonb_set(envelope, '{amount}', '\"999.00\"')"
                " WHERE id = :id"
            ),
            {"id": edited},
        )
        await conn.execute(sa.text("DELETE FROM journal_events WHERE id = :id"), {"id": deleted})
        slipped_in = await conn.scalar(
            sa.text(
                "INSERT INTO journal_events (txid, event, ts, envelope)"
                " VALUES ('3', 'wallet.adjusted', now(), '{}') RETURNING id"
            )
        )
        async with uows_on(conn)() as uow:
            found = await journal_check.check_journal(uow)
    assert not found.ok
    assert sorted(found.altered) == sorted([edited, deleted])
    assert found.missing == [slipped_in]
