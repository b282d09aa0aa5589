"""`make bench`: signed bet + settle over HTTP on loopback, against raw INSERT + COMMIT.

Starts a private embedded PostgreSQL under var/bench, seeds one game provider and one funded
player per client, serves the API from a separate `pitwarden serve` process, then for 1, 4 and
16 concurrent clients measures bet and win latency and throughput, the same PostgreSQL's raw
single-row INSERT + COMMIT rate at the same concurrency, and the CPU each process spent per
request. Results replace the generated part of docs/benchmarks.md.
"""

import asyncio
import os
import platform
import re
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

import httpx
import psycopg
import uvloop

from app import demo
from app.client import PitwardenClient
from app.gating import build_gate
from app.runtime import client_secrets, vault_keys, with_both
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
    "| clients | bets/s | bet p50 ms | bet p95 ms | bet p99 ms | win p50 ms | win p99 ms"
    " | raw INSERT+COMMIT/s | bets / raw | CPU ms per request: server / postgres / load gen |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass
class Level:
    clients: int
    bets: list[float]
    wins: list[float]
    seconds: float
    raw_per_s: float
    cpu_ms: dict[str, float]

    @property
    def bets_per_s(self) -> float:
        return len(self.bets) / self.seconds


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


async def drive(
    api: PitwardenClient, player_ids: list[str], seconds: float
) -> tuple[list[float], list[float], float]:
    bets: list[float] = []
    wins: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(player_id: str) -> None:
        while time.perf_counter() < deadline:
            bet = {
                "request_uuid": str(uuid.uuid4()),
                "transaction_uuid": str(uuid.uuid4()),
                "player_id": player_id,
                "round_id": uuid.uuid4().hex[:16],
                "bet_id": uuid.uuid4().hex[:16],
                "game_id": "bench",
                "amount": "1.00",
                "currency": "EUR",
            }
            started = time.perf_counter()
            placed = await api.post("/v1/wallet/bet", bet)
            bets.append(time.perf_counter() - started)
            win = {
                "request_uuid": str(uuid.uuid4()),
                "transaction_uuid": str(uuid.uuid4()),
                "player_id": player_id,
                "round_id": bet["round_id"],
                "bet_id": bet["bet_id"],
                "amount": "0.50",
                "currency": "EUR",
                "round_closed": True,
            }
            started = time.perf_counter()
            settled = await api.post("/v1/wallet/win", win)
            wins.append(time.perf_counter() - started)
            if placed.status_code != 200 or settled.status_code != 200:
                raise RuntimeError(f"benchmark request failed: {placed.text} {settled.text}")

    started = time.perf_counter()
    await asyncio.gather(*(client(p) for p in player_ids))
    return bets, wins, time.perf_counter() - started


async def raw_inserts(conninfo: str, connections: int, seconds: float) -> float:
    conns = [await psycopg.AsyncConnection.connect(conninfo) for _ in range(connections)]
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop(conn: psycopg.AsyncConnection[object]) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await conn.execute("INSERT INTO bench_raw (payload) VALUES ('x')")
            await conn.commit()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return count / elapsed


async def measure(
    server: subprocess.Popen[bytes],
    base: str,
    provider: clients.Issued,
    player_ids: list[str],
    raw_conninfo: str,
) -> list[Level]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    results = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        api = PitwardenClient(base, provider.client_id, provider.secret, http=http)
        for level in LEVELS:
            print(
                f"  {level:>2} clients: warm-up {WARMUP:.0f} s, then {SECONDS:.0f} s ...",
                flush=True,
            )
            await drive(api, player_ids[:level], WARMUP)
            before = (cpu_seconds(server.pid), postgres_cpu(), time.process_time())
            bets, wins, elapsed = await drive(api, player_ids[:level], SECONDS)
            after = (cpu_seconds(server.pid), postgres_cpu(), time.process_time())
            requests = len(bets) + len(wins)
            cpu = {
                name: (b - a) / requests * 1000
                for name, a, b in zip(
                    ("server", "postgres", "load generator"), before, after, strict=True
                )
            }
            print(f"     raw INSERT + COMMIT with {level} connections ...", flush=True)
            raw = await raw_inserts(raw_conninfo, level, SECONDS)
            results.append(Level(level, bets, wins, elapsed, raw, cpu))
            print(
                f"     {len(bets) / elapsed:7.1f} bets/s  p99 bet {pct(bets, 0.99):6.1f} ms  "
                f"raw {raw:7.1f}/s",
                flush=True,
            )
    return results


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


def report(results: list[Level], pg_version: str) -> str:
    rows = "\n".join(
        f"| {r.clients} | {r.bets_per_s:.0f} | {pct(r.bets, 0.5):.1f} | {pct(r.bets, 0.95):.1f} | "
        f"{pct(r.bets, 0.99):.1f} | {pct(r.wins, 0.5):.1f} | {pct(r.wins, 0.99):.1f} | "
        f"{r.raw_per_s:.0f} | {r.bets_per_s / r.raw_per_s * 100:.1f} % | "
        f"{r.cpu_ms['server']:.2f} / {r.cpu_ms['postgres']:.2f} / "
        f"{r.cpu_ms['load generator']:.2f} |"
        for r in results
    )
    top = results[-1]
    p99_ok = pct(top.bets, 0.99) <= 25
    ratio_ok = top.bets_per_s / top.raw_per_s >= 0.20
    return f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make bench` ({SECONDS:.0f} s per level after
{WARMUP:.0f} s warm-up), on {machine()}; {pg_version}; server, PostgreSQL and load generator
share the machine.

{HEADER}
{rows}

Targets at 16 clients (issue 2): p99 bet ≤ 25 ms — **{"met" if p99_ok else "not met"}**
({pct(top.bets, 0.99):.1f} ms); bet throughput ≥ 20 % of the raw insert rate —
**{"met" if ratio_ok else "not met"}** ({top.bets_per_s / top.raw_per_s * 100:.1f} %).
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
    """Rules active, one provider and funded players (funded through the gate), raw table."""

    async def seeded(
        uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory
    ) -> tuple[clients.Issued, list[str]]:
        await demo.activate_rules(uows)
        return await seed(uows, max(LEVELS), build_gate(settings, vault_uows, vault_keys(settings)))

    provider, ids = await with_both(urls, seeded)
    owner = urls.owner.set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
        await conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload text)")
        version = await (await conn.execute("SHOW server_version")).fetchone()
    return provider, ids, f"PostgreSQL {version[0] if version else '?'}"


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    settings = Settings(data_dir=DATA)
    print("bench: starting PostgreSQL and migrating ...", flush=True)
    urls, pg = prepare(settings)
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
        raw_conninfo = urls.owner.set(drivername="postgresql").render_as_string(hide_password=False)
        # uvloop in the load generator too: it shares the two cores with what it measures.
        results = uvloop.run(measure(server, base, provider, player_ids, raw_conninfo))
        section = report(results, pg_version)
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
