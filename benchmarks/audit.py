"""`make bench` (audit part): the log at a million entries.

On a private embedded PostgreSQL under var/bench-audit: seeds ENTRIES journal events shaped like
`bet.placed` envelopes, then measures
1. integration throughput: the integrator appending them all (entries/s);
2. integration lag while writers append at a steady rate with the integrator running as the
   server runs it (lag = integrated_at - the event's commit, p50/p99);
3. inclusion proof time at that size (the database query plus the hashing, p50/p99), and the
   same through the signed HTTP API's handler;
4. export, then offline verify throughput (entries/s).
Results replace the audit section of docs/benchmarks.md.
"""

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import uvloop
from sqlalchemy.ext.asyncio import async_sessionmaker

from app import auditing
from audit import export, log, verify
from audit.note import Signer
from benchmarks.wallet import machine, pct, write_doc
from core.database import create_app_engine, prepare
from core.settings import Settings
from core.uow import UnitOfWorkFactory

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "var" / "bench-audit"
ENTRIES = int(os.environ.get("BENCH_AUDIT_ENTRIES", "1000000"))
LAG_SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
LAG_RATE = 2000  # events/s the writers aim for while lag is measured
BEGIN, END = "<!-- bench-audit:begin -->", "<!-- bench-audit:end -->"
ORIGIN = "bench.pitwarden.example/audit"
SIGNER = Signer.generate(ORIGIN)

SEED = """
INSERT INTO journal_events (event, ts, player_id, envelope)
SELECT 'bet.placed', now(), p, jsonb_build_object(
    'event', 'bet.placed', 'ts', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'player_id', p::text, 'session_id', 's-' || g, 'trace_id', md5(g::text), 'geo', 'MT',
    'device', 'ios', 'actor', 'provider-bench', 'schema_ver', 1, 'calc_ver', '1',
    'contract_ver', '1.0', 'amount', '2.00', 'currency', 'EUR',
    'data', jsonb_build_object('round_id', 'r-' || g, 'bet_id', 'b-' || g,
        'transaction_uuid', gen_random_uuid()::text, 'game_id', 'starburst',
        'stake_cash', '2.00', 'stake_bonus', '0.00', 'ledger_transaction_id', g))
FROM generate_series(%(start)s, %(end)s - 1) AS g, LATERAL (SELECT gen_random_uuid() AS p) AS x
"""


def progress(what: str, done: int, total: int) -> None:
    print(f"\rbench: {what} {done}/{total}", end="\n" if done >= total else "", flush=True)


async def seed(owner: str, count: int) -> None:
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
        step = 100_000
        for start in range(0, count, step):
            await conn.execute(SEED, {"start": start, "end": min(count, start + step)})
            progress("seeding journal", min(count, start + step), count)


async def integrate_all(uows: UnitOfWorkFactory, total: int) -> float:
    started = time.perf_counter()
    done = 0
    while True:
        async with uows() as uow:
            added = await log.integrate(uow)
            await uow.commit()
        if not added:
            break
        done += added
        if done % 50_000 < added:
            progress("integrating", done, total)
    progress("integrating", done, total)
    elapsed = time.perf_counter() - started
    async with uows() as uow:
        await log.publish_checkpoint(uow, origin=ORIGIN, signers=[SIGNER])
        await uow.commit()
    return done / elapsed


async def lag(owner: str, uows: UnitOfWorkFactory) -> tuple[float, list[float]]:
    """Writers commit small transactions at LAG_RATE while the server's loop integrates."""
    stop = asyncio.Event()
    loop_task = asyncio.create_task(
        auditing.keep_log_current(uows, origin=ORIGIN, signers=[SIGNER], interval_s=1.0)
    )
    written = 0

    async def writer() -> None:
        nonlocal written
        async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
            per_tick = LAG_RATE // 100
            while not stop.is_set():
                tick = time.perf_counter()
                start = ENTRIES + 10_000_000 + written
                await conn.execute(SEED, {"start": start, "end": start + per_tick})
                written += per_tick
                await asyncio.sleep(max(0.0, 0.01 - (time.perf_counter() - tick)))

    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
        cursor = await conn.execute("SELECT max(id) FROM journal_events")
        first = (await cursor.fetchone() or [0])[0]
    task = asyncio.create_task(writer())
    await asyncio.sleep(LAG_SECONDS)
    stop.set()
    await task
    await asyncio.sleep(2.0)  # let the integrator finish what was written
    loop_task.cancel()
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT extract(epoch FROM a.integrated_at - j.ts) FROM audit_entries a"
            " JOIN journal_events j ON j.id = a.journal_id WHERE j.id > %(first)s",
            {"first": first},
        )
        lags = [float(row[0]) for row in await cursor.fetchall()]
    return written / LAG_SECONDS, lags


async def proofs(uows: UnitOfWorkFactory, size: int, count: int = 2000) -> dict[str, list[float]]:
    """Inclusion proofs for random entries: inside one read transaction (the query and the
    hashing), and each in a transaction of its own (what an API request adds: BEGIN, ROLLBACK,
    a pooled connection)."""
    timings: dict[str, list[float]] = {"proof": [], "with its transaction": []}
    async with uows() as shared:
        for _ in range(count):
            index = random.randrange(size)
            started = time.perf_counter()
            await log.inclusion_proof(shared, index=index, size=size)
            timings["proof"].append(time.perf_counter() - started)
    for _ in range(count):
        index = random.randrange(size)
        started = time.perf_counter()
        async with uows() as uow:
            await log.inclusion_proof(uow, index=index, size=size)
        timings["with its transaction"].append(time.perf_counter() - started)
    return timings


async def export_to(uows: UnitOfWorkFactory, directory: Path) -> float:
    started = time.perf_counter()
    async with uows() as uow:
        await uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        await export.export(
            uow,
            directory,
            origin=ORIGIN,
            verifiers=[SIGNER.verifier()],
            progress=lambda done, total: progress("exporting", done, total),
        )
    return time.perf_counter() - started


def report(
    results: dict[str, float], lags: list[float], proof_times: dict[str, list[float]]
) -> str:
    size, rate = f"{results['size']:,.0f}", f"{results['lag_rate']:,.0f}"
    rows = [
        ("integration throughput", f"{results['integration']:,.0f} entries/s", "≥ 20,000/s"),
        (
            f"integration lag at {rate} events/s, p50 / p99",
            f"{pct(lags, 0.5):.0f} / {pct(lags, 0.99):.0f} ms",
            "p99 ≤ 1,000 ms",
        ),
        *(
            (
                f"inclusion proof at {size} entries ({mode}), p50 / p99",
                f"{pct(times, 0.5):.2f} / {pct(times, 0.99):.2f} ms",
                "≤ 2 ms",
            )
            for mode, times in proof_times.items()
        ),
        (f"export of {size} entries", f"{results['export_s']:.1f} s", "—"),
        ("offline verify", f"{results['verify']:,.0f} entries/s", "≥ 100,000/s"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make bench` (`benchmarks/audit.py`,
{ENTRIES:,} seeded entries) on {machine()}.

| measure | result | target (issue 3) |
|---|---|---|
{table}
{END}"""


async def run(settings: Settings) -> str:
    urls, _server = prepare(settings)
    owner = urls.owner.set(drivername="postgresql").render_as_string(hide_password=False)
    engine = create_app_engine(urls.app, pool_size=4)
    uows = UnitOfWorkFactory(async_sessionmaker(engine, expire_on_commit=False))
    try:
        await seed(owner, ENTRIES)
        results = {"integration": await integrate_all(uows, ENTRIES)}
        async with uows() as uow:
            size = await log.tree_size(uow)
        results["size"] = size
        proof_times = await proofs(uows, size)
        results["lag_rate"], lags = await lag(owner, uows)
        with tempfile.TemporaryDirectory(dir=DATA) as tmp:
            results["export_s"] = await export_to(uows, Path(tmp))
            started = time.perf_counter()
            outcome = verify.verify_export(
                Path(tmp),
                [SIGNER.verifier()],
                progress=lambda done, total: progress("verifying", done, total),
            )
            results["verify"] = outcome.entries / (time.perf_counter() - started)
            print(f"bench: {outcome.message}")
    finally:
        await engine.dispose()
    return report(results, lags, proof_times)


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    section = uvloop.run(run(Settings(data_dir=DATA)))
    write_doc(section, begin=BEGIN, end=END, heading="## Audit log")
    print(section)
    sys.exit(0)


if __name__ == "__main__":
    main()
