"""The integrator over real commits: every committed event exactly once, in gapless order, even
when transactions commit in another order than they took their journal ids; and the log's
tables hold their invariants in PostgreSQL itself.
"""

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit import log, merkle
from core.uow import UnitOfWorkFactory
from tests.audit_support import SIGNER, catch_up, superuser

pytestmark = pytest.mark.commits


async def journal(conn: AsyncConnection, name: str) -> int:
    """Append one event by hand, as any writer of the journal would."""
    envelope = json.dumps({"event": name, "ts": "2026-11-25T00:00:00.000000Z", "data": {}})
    journal_id = await conn.scalar(
        sa.text(
            "INSERT INTO journal_events (event, ts, envelope)"
            " VALUES (:e, now(), CAST(:v AS jsonb)) RETURNING id"
        ),
        {"e": name, "v": envelope},
    )
    assert isinstance(journal_id, int)
    return journal_id


async def positions(uows: UnitOfWorkFactory, *journal_ids: int) -> list[list[int]]:
    """For each journal id, the log indices that hold it (exactly one once integrated)."""
    async with uows() as uow:
        rows = (
            await uow.session.execute(
                sa.text("SELECT journal_id, idx FROM audit_entries WHERE journal_id = ANY(:ids)"),
                {"ids": list(journal_ids)},
            )
        ).all()
    return [[idx for jid, idx in rows if jid == wanted] for wanted in journal_ids]


async def assert_gapless(uows: UnitOfWorkFactory) -> None:
    async with uows() as uow:
        count, top, distinct = (
            await uow.session.execute(
                sa.text("SELECT count(*), max(idx), count(DISTINCT journal_id) FROM audit_entries")
            )
        ).one()
        hashes = await uow.session.scalar(sa.text("SELECT count(*) FROM audit_tree_hashes"))
    assert count == top + 1 == distinct
    assert hashes == merkle.stored_hash_count(count)


async def test_a_late_commit_with_a_lower_id_is_integrated_once(
    app_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    await catch_up(committed_uows)
    async with app_engine.connect() as early, app_engine.connect() as late:
        low_id = await journal(early, "test.takes_id_first_commits_last")
        high_id = await journal(late, "test.takes_id_last_commits_first")
        assert low_id < high_id
        await late.commit()
        # The early transaction is still open: the integrator must not pass it by.
        await catch_up(committed_uows)
        assert await positions(committed_uows, low_id, high_id) == [[], []]
        await early.commit()
    done = await catch_up(committed_uows)
    (low_at,), (high_at,) = await positions(committed_uows, low_id, high_id)
    assert done.integrated == 2
    assert low_at < high_at  # the transaction ids decide, not the order of the ids
    await catch_up(committed_uows)  # a second run adds nothing
    assert await positions(committed_uows, low_id, high_id) == [[low_at], [high_at]]
    await assert_gapless(committed_uows)


async def test_an_open_transaction_holds_back_later_ones_until_it_ends(
    app_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    """The transaction that began first enters the log first, though it journaled later and
    committed later; a rolled-back writer leaves nothing."""
    await catch_up(committed_uows)
    async with (
        app_engine.connect() as first,
        app_engine.connect() as second,
        app_engine.connect() as aborted,
    ):
        await first.execute(sa.text("SELECT pg_current_xact_id()"))  # takes its xid now
        second_id = await journal(second, "test.second")
        first_id = await journal(first, "test.first")
        aborted_id = await journal(aborted, "test.aborted")
        await second.commit()
        await catch_up(committed_uows)
        assert await positions(committed_uows, second_id, first_id) == [[], []]
        await first.commit()
        await aborted.rollback()
    await catch_up(committed_uows)
    (second_at,), (first_at,), aborted_at = await positions(
        committed_uows, second_id, first_id, aborted_id
    )
    assert first_at < second_at
    assert aborted_at == []
    await assert_gapless(committed_uows)


async def test_many_interleaved_writers_all_enter_exactly_once(
    app_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    await catch_up(committed_uows)
    conns = [await app_engine.connect() for _ in range(6)]
    try:
        ids = [await journal(conn, f"test.writer_{n}") for n, conn in enumerate(conns)]
        for n in (3, 0, 5):  # commit out of id order, integrating in between
            await conns[n].commit()
            await catch_up(committed_uows)
        for n in (1, 4, 2):
            await conns[n].commit()
    finally:
        for conn in conns:
            await conn.close()
    await catch_up(committed_uows)
    assert all(len(found) == 1 for found in await positions(committed_uows, *ids))
    await assert_gapless(committed_uows)


async def test_batches_resume_where_they_stopped(
    app_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    """A transaction with more events than one batch is split across runs, none lost."""
    await catch_up(committed_uows)
    async with app_engine.connect() as conn:
        ids = [await journal(conn, f"test.bulk_{n}") for n in range(7)]
        await conn.commit()
    while True:
        async with committed_uows() as uow:
            added = await log.integrate(uow, limit=3)
            await uow.commit()
        if not added:
            break
    found = await positions(committed_uows, *ids)
    assert [len(f) for f in found] == [1] * 7
    assert [f[0] for f in found] == list(range(found[0][0], found[0][0] + 7))
    await assert_gapless(committed_uows)


# -- the log's invariants in PostgreSQL ----------------------------------------------------------

WORM_STATEMENTS = [
    "UPDATE audit_entries SET entry = 'x' WHERE idx = 0",
    "DELETE FROM audit_entries WHERE idx = (SELECT max(idx) FROM audit_entries)",
    "TRUNCATE audit_entries",
    "UPDATE audit_tree_hashes SET hash = sha256('x') WHERE idx = 0",
    "DELETE FROM audit_tree_hashes WHERE idx = 0",
    "TRUNCATE audit_tree_hashes",
    "UPDATE audit_checkpoints SET note = 'forged'",
    "DELETE FROM audit_checkpoints",
    "TRUNCATE audit_checkpoints",
]


@pytest.fixture
async def published(committed_uows: UnitOfWorkFactory, app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as conn:
        await journal(conn, "test.something_to_publish")
        await conn.commit()
    await catch_up(committed_uows)


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize("statement", WORM_STATEMENTS)
async def test_the_application_role_cannot_rewrite_the_log(
    app_engine: AsyncEngine, statement: str
) -> None:
    async with app_engine.connect() as conn:
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            await conn.execute(sa.text(statement))
        await conn.rollback()


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize("statement", WORM_STATEMENTS)
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica"])
async def test_even_a_superuser_is_refused_by_always_enabled_triggers(
    owner_engine: AsyncEngine, statement: str, replica: bool
) -> None:
    async with superuser(owner_engine) as conn:
        if replica:
            await conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            await conn.execute(sa.text(statement))


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        (
            (
                "INSERT INTO audit_entries (idx, journal_id, txid, entry, integrated_at)"
                " SELECT max(idx) + 2, 999999999999, '1', 'x', now()"
                " FROM audit_entries"
            ),
            "would leave a gap",
        ),
        (
            (
                "INSERT INTO audit_tree_hashes (idx, hash)"
                " SELECT max(idx) + 5, sha256('x') FROM audit_tree_hashes"
            ),
            "would leave a gap",
        ),
        (
            (
                "INSERT INTO audit_entries (idx, journal_id, txid, entry, integrated_at)"
                " SELECT max(idx) + 1, (SELECT journal_id FROM audit_entries WHERE idx = 0),"
                " '1', 'x', now() FROM audit_entries"
            ),
            "uq_audit_entries_journal_id",
        ),
        (
            (
                "INSERT INTO audit_checkpoints (tree_size, root_hash, published_at, note)"
                " SELECT max(idx) + 10, sha256('x'), now(), 'n' FROM audit_entries"
            ),
            "runs ahead of the log",
        ),
        (
            (
                "INSERT INTO audit_checkpoints (tree_size, root_hash, published_at, note)"
                " VALUES (0, sha256(''), now(), 'n')"
            ),
            "would shrink the published tree",
        ),
        (
            (
                "INSERT INTO audit_checkpoints (tree_size, root_hash, published_at, note)"
                " SELECT max(tree_size), sha256('x'), '2000-01-01Z', 'n' FROM audit_checkpoints"
            ),
            "before an earlier checkpoint",
        ),
    ],
    ids=[
        "entry-gap",
        "hash-gap",
        "event-twice",
        "checkpoint-ahead",
        "checkpoint-shrinks",
        "checkpoint-backdated",
    ],
)
async def test_the_database_refuses_a_log_out_of_order(
    app_engine: AsyncEngine, statement: str, refusal: str
) -> None:
    async with app_engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError, match=refusal):
            await conn.execute(sa.text(statement))
        await conn.rollback()


async def test_checkpoints_are_signed_and_only_published_when_the_tree_grew(
    app_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    await catch_up(committed_uows)
    assert (await catch_up(committed_uows)).published is None
    async with app_engine.connect() as conn:
        await journal(conn, "test.grow")
        await conn.commit()
    done = await catch_up(committed_uows)
    assert done.integrated == 1
    assert done.published is not None
    async with committed_uows() as uow:
        size = await log.tree_size(uow)
        assert done.published.checkpoint.size == size
        assert done.published.checkpoint.root == await log.root(uow, size)
    assert SIGNER.verifier().name in done.published.note
    forced = await catch_up(committed_uows, force=True)
    assert forced.published is not None
    assert forced.published.checkpoint.size == size
