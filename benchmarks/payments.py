"""`python -m benchmarks.payments` (part of `make bench`): provider webhooks over HTTP on loopback.

Starts a private embedded PostgreSQL under var/bench-payments, activates the shipped ruleset and
writes a payments config naming two providers, Swiftpay (Standard Webhooks) and Payrail (its own
signature), with secrets made for the run. Deposits are opened through the real gate and bound to
a provider in process (`core.payments.service`; nothing is sent to a provider), half to each.
The API is then served by a separate `pitwarden serve` process (uvicorn, uvloop) on a loopback
port, and for 1, 4 and 16 concurrent senders the load generator posts signed webhooks to
`/v1/webhooks/{provider}`: for every deposit a "pending" and a "confirmed" event, for a quarter of
them a late "pending" after "confirmed" (stale), and redeliveries of earlier messages with the
same message id, 30 % of all messages, some of them while the first delivery is still in flight.
It reports messages/s, latency, and the answers split by outcome (moved / replayed / ignored),
and checks afterwards that every deposit was confirmed exactly once: one ledger transaction per
payment, each player's cash and each provider's clearing account equal to the sum of their
deposits, one stored receipt per message id.

Then it profiles the same server twice: at 1 sender with timers inside the server process (the
cashier's steps, every SQL statement, the ASGI request around them), and at 16 senders under
cProfile. Results replace the payments section of docs/benchmarks.md.

`python -m benchmarks.payments --serve {timers|cprofile} OUT` is the instrumented server; the
benchmark starts it itself. BENCH_PAYMENTS_DEPOSITS sets the deposits per level (default 500).
"""

import asyncio
import base64
import contextvars
import cProfile
import itertools
import json
import os
import pstats
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import psycopg
import uvloop

from app import demo
from app.gating import build_gate
from app.runtime import vault_keys, with_both
from benchmarks.wallet import ROOT, cpu_seconds, free_port, machine, pct, write_doc
from compliance import kyc
from core import players
from core.database import DatabaseUrls, prepare
from core.guard import Guard
from core.journal import EventContext, rfc3339
from core.money import Money
from core.payments import service, signatures
from core.settings import Settings
from core.uow import UnitOfWorkFactory

DATA = ROOT / "var" / "bench-payments"
CONFIG = DATA / "payments.json"
BEGIN, END = "<!-- bench-payments:begin -->", "<!-- bench-payments:end -->"
HEADING = "## Payments: webhooks"
CTX = EventContext(actor="bench", trace_id="bench")
LEVELS = (1, 4, 16)
DEPOSITS = int(os.environ.get("BENCH_PAYMENTS_DEPOSITS", "500"))
WARMUP_DEPOSITS = max(4, DEPOSITS // 10)
PROFILE_DEPOSITS = max(10, DEPOSITS // 3)
PROFILE_SENDERS = {"timers": 1, "cprofile": 16}
PLAYERS = 100
DUPLICATE_SHARE = 0.30  # of all messages sent: redeliveries of a message id sent before
STALE_SHARE = 0.25  # of deposits: a new "pending" after "confirmed"
WINDOW = 32  # deposits whose messages are interleaved in the stream at any time
SWIFTPAY, PAYRAIL = "swiftpay", "payrail"
SWIFTPAY_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
PAYRAIL_SECRET = secrets.token_urlsafe(32)
OUTCOMES = ("moved", "replayed", "ignored")
LOAD_BEFORE = os.getloadavg()[0]
START = "/__bench/start"  # the instrumented server starts measuring (answered by its wrapper)
HEADER = (
    "| senders | messages | messages/s | p50 ms | p95 ms | p99 ms | moved | replayed | ignored"
    " | CPU ms per message: server / postgres / load gen |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)

T = TypeVar("T")
Event = Literal["pending", "confirmed"]


# -- the stream of webhooks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deposit:
    payment_id: uuid.UUID
    player_id: uuid.UUID
    provider: str
    provider_ref: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery: the provider's event, its id and body (the same on every redelivery)."""

    deposit: Deposit
    event: Event
    message_id: str
    body: bytes
    redelivery: bool = False
    stale: bool = False

    def again(self) -> "Message":
        return Message(self.deposit, self.event, self.message_id, self.body, redelivery=True)

    def signed(self) -> dict[str, str]:
        """Headers signed now: a provider's retry signs again with a fresh timestamp."""
        now = int(time.time())
        if self.deposit.provider == SWIFTPAY:
            headers = signatures.webhook_headers([SWIFTPAY_SECRET], self.message_id, now, self.body)
        else:
            headers = {
                "X-Payrail-Signature": signatures.sign_payrail([PAYRAIL_SECRET], now, self.body)
            }
        return headers | {"Content-Type": "application/json"}


def message(deposit: Deposit, event: Event, *, stale: bool = False) -> Message:
    """A provider's webhook in its own dialect (core/payments/adapters.py)."""
    if deposit.provider == SWIFTPAY:
        message_id = f"msg_{uuid.uuid4().hex}"
        doc: dict[str, object] = {
            "type": "payment.pending" if event == "pending" else "payment.succeeded",
            "timestamp": rfc3339(datetime.now(UTC)),
            "data": {
                "id": deposit.provider_ref,
                "reference": str(deposit.payment_id),
                "amount": deposit.amount.decimal_string,
                "currency": deposit.amount.currency,
            },
        }
    else:
        message_id = f"evt_{uuid.uuid4().hex}"
        doc = {
            "event_id": message_id,
            "created_at": int(time.time()),
            "transaction": {
                "transaction_id": deposit.provider_ref,
                "merchant_reference": str(deposit.payment_id),
                "type": "PAYIN",
                "state": "PENDING" if event == "pending" else "SETTLED",
                "amount_minor": deposit.amount.minor,
                "currency": deposit.amount.currency,
            },
        }
    return Message(deposit, event, message_id, json.dumps(doc).encode(), stale=stale)


def stream(deposits: list[Deposit], rng: random.Random) -> list[Message]:
    """Every deposit's script (pending, confirmed, sometimes a stale pending, redeliveries of
    any of these after the original), interleaved over WINDOW deposits at a time. Neighbours in
    the stream are in flight together at several senders: a redelivery right after its original
    races it, and a "confirmed" may overtake its "pending" (which then arrives stale)."""
    scripts: list[list[Message]] = []
    originals: list[tuple[int, Message]] = []
    for index, deposit in enumerate(deposits):
        script = [message(deposit, "pending"), message(deposit, "confirmed")]
        if rng.random() < STALE_SHARE:
            script.append(message(deposit, "pending", stale=True))
        scripts.append(script)
        originals += [(index, sent) for sent in script]
    for _ in range(round(len(originals) * DUPLICATE_SHARE / (1 - DUPLICATE_SHARE))):
        index, original = rng.choice(originals)
        script = scripts[index]
        after = script.index(original) + 1
        script.insert(rng.randint(after, len(script)), original.again())
    pending = iter(scripts)
    active = [iter(script) for script in itertools.islice(pending, WINDOW)]
    out: list[Message] = []
    while active:
        slot = rng.randrange(len(active))
        nxt = next(active[slot], None)
        if nxt is None:
            following = next(pending, None)
            if following is None:
                active.pop(slot)
            else:
                active[slot] = iter(following)
            continue
        out.append(nxt)
    return out


# -- sending -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    message: Message
    seconds: float
    status: int
    outcome: str  # moved / replayed / ignored, or refused, unknown_payment, http_<status>
    state: str | None


@dataclass
class Level:
    senders: int
    answers: list[Answer]
    seconds: float
    warm: list[Answer]
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def latencies(self, outcome: str | None = None) -> list[float]:
        return [a.seconds for a in self.answers if outcome is None or a.outcome == outcome]

    @property
    def per_s(self) -> float:
        return len(self.answers) / self.seconds


async def deliver(http: httpx.AsyncClient, sent: Message) -> Answer:
    path = f"/v1/webhooks/{sent.deposit.provider}"
    headers = sent.signed()
    started = time.perf_counter()
    response = await http.post(path, content=sent.body, headers=headers)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return Answer(sent, seconds, response.status_code, f"http_{response.status_code}", None)
    answer = response.json()
    outcome = "replayed" if answer["replayed"] else answer["outcome"]
    return Answer(sent, seconds, 200, outcome, answer["state"])


async def drive(
    http: httpx.AsyncClient, messages: list[Message], senders: int, label: str
) -> tuple[list[Answer], float]:
    """`senders` concurrent senders take the stream's messages in order, one at a time each."""
    answers: list[Answer] = []
    queue = iter(messages)

    async def sender() -> None:
        # One iterator shared by all senders: each message is sent once, in stream order.
        for sent in queue:
            answers.append(await deliver(http, sent))  # noqa: PERF401 - progress reads it

    async def progress() -> None:
        while True:
            await asyncio.sleep(5)
            print(f"     {label}: {len(answers)}/{len(messages)} messages ...", flush=True)

    ticker = asyncio.create_task(progress())
    started = time.perf_counter()
    try:
        await asyncio.gather(*(sender() for _ in range(senders)))
    finally:
        ticker.cancel()
    return answers, time.perf_counter() - started


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of our PostgreSQL (the postmaster and its children) only: the machine is
    shared, and other test suites run PostgreSQL servers of their own."""
    total = cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    total += cpu_seconds(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return total


# -- set-up --------------------------------------------------------------------------------------


def write_config() -> None:
    """Both providers, with the run's secrets; base_url points nowhere: nothing is submitted."""
    providers = [
        {
            "name": name,
            "contract": contract,
            "base_url": "http://127.0.0.1:9/unused",
            "api_key": "unused",
            "webhook_secrets": [secret],
            "timeout_s": 1,
        }
        for name, contract, secret in (
            (SWIFTPAY, "standard", SWIFTPAY_SECRET),
            (PAYRAIL, "payrail", PAYRAIL_SECRET),
        )
    ]
    route = {"kind": "*", "country": "*", "currency": "*", "providers": [SWIFTPAY, PAYRAIL]}
    CONFIG.write_text(json.dumps({"providers": providers, "routes": [route]}, indent=2))


async def open_deposits(
    uows: UnitOfWorkFactory, gate: Guard, player_ids: list[uuid.UUID], count: int, offset: int
) -> list[Deposit]:
    """`count` deposits opened through the gate and bound to a provider, half to each, 50 to a
    unit of work; committed."""
    rng = random.Random(offset)
    deposits: list[Deposit] = []
    for start in range(0, count, 50):
        async with uows() as uow:
            for number in range(offset + start, offset + min(count, start + 50)):
                player_id = player_ids[number % len(player_ids)]
                provider = SWIFTPAY if number % 2 == 0 else PAYRAIL
                opened = await service.open_deposit(
                    uow,
                    player_id=player_id,
                    amount=Money(rng.randrange(500, 50_001), "EUR"),
                    method="card",
                    routes=[SWIFTPAY, PAYRAIL],
                    ctx=CTX,
                    guard=gate,
                )
                ref = f"{provider[:2]}_{opened.id.hex[:16]}"
                bound = await service.bind(
                    uow, opened.id, provider=provider, provider_ref=ref, redirect_url=None, ctx=CTX
                )
                deposits.append(Deposit(bound.id, player_id, provider, ref, bound.amount))
            await uow.commit()
    return deposits


@dataclass
class Batches:
    """The deposits of each run, opened before the server starts."""

    levels: dict[int, tuple[list[Deposit], list[Deposit]]]  # senders -> (warm-up, measured)
    profiles: dict[str, tuple[list[Deposit], list[Deposit]]]  # mode -> (warm-up, measured)

    def all(self) -> list[Deposit]:
        out = [d for warm, measured in self.levels.values() for d in warm + measured]
        return out + [d for warm, measured in self.profiles.values() for d in warm + measured]


async def setup(settings: Settings, urls: DatabaseUrls) -> tuple[Batches, str]:
    async def seeded(uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory) -> Batches:
        await demo.activate_rules(uows)
        gate = build_gate(settings, vault_uows, vault_keys(settings))
        async with uows() as uow:
            ids = []
            for _ in range(PLAYERS):
                player_id = await players.register(uow, currency="EUR", jurisdiction="MT", ctx=CTX)
                await kyc.set_level(  # verified: many deposits pass due diligence
                    uow,
                    player_id=player_id,
                    level="verified",
                    actor="bench",
                    reason="bench",
                    ctx=CTX,
                )
                ids.append(player_id)
            await uow.commit()
        offset = 0

        async def batch(count: int) -> list[Deposit]:
            nonlocal offset
            opened = await open_deposits(uows, gate, ids, count, offset)
            offset += count
            print(f"     {offset} deposits opened ...", flush=True)
            return opened

        levels = {n: (await batch(WARMUP_DEPOSITS), await batch(DEPOSITS)) for n in LEVELS}
        profiles = {
            mode: (await batch(WARMUP_DEPOSITS), await batch(PROFILE_DEPOSITS))
            for mode in PROFILE_SENDERS
        }
        return Batches(levels, profiles)

    batches = await with_both(urls, seeded)
    async with await psycopg.AsyncConnection.connect(owner_conninfo(urls)) as conn:
        version = await (await conn.execute("SHOW server_version")).fetchone()
    return batches, f"PostgreSQL {version[0] if version else '?'}"


def owner_conninfo(urls: DatabaseUrls) -> str:
    return urls.owner.set(drivername="postgresql").render_as_string(hide_password=False)


# -- the server ----------------------------------------------------------------------------------


class Server:
    """`pitwarden serve` (or the instrumented server of this module) on a loopback port."""

    def __init__(self, command: list[str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = os.environ | {
            "PITWARDEN_DATA_DIR": str(DATA),
            "PITWARDEN_PORT": str(self.port),
            "PITWARDEN_PAYMENTS_CONFIG": str(CONFIG),
        }
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - our own
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start within 60 s")

    def stop(self) -> None:
        """SIGINT, and a second one (uvicorn's forced exit) if the first does not end it: a
        cancellation that lands in the audit integrator's query can be swallowed, and the
        server then never finishes its shutdown (reported with the benchmark, not fixed here)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            print("     the server did not stop on SIGINT within 20 s; sending another", flush=True)
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def pitwarden() -> list[str]:
    return [str(Path(sys.executable).parent / "pitwarden"), "serve"]


def instrumented(mode: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.payments", "--serve", mode, str(out)]


async def measure(server: Server, batches: Batches, postmaster: int) -> list[Level]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    rng = random.Random(6)
    results = []
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=60) as http:
        for senders in LEVELS:
            warm, measured = batches.levels[senders]
            warm_stream, measured_stream = stream(warm, rng), stream(measured, rng)
            print(
                f"  {senders:>2} senders: warm-up {len(warm_stream)} messages, then "
                f"{len(measured_stream)} ({len(measured)} deposits) ...",
                flush=True,
            )
            warm_answers, _ = await drive(http, warm_stream, senders, "warm-up")
            before = (
                cpu_seconds(server.process.pid),
                postgres_cpu(postmaster),
                time.process_time(),
            )
            answers, seconds = await drive(http, measured_stream, senders, f"{senders} senders")
            after = (cpu_seconds(server.process.pid), postgres_cpu(postmaster), time.process_time())
            level = Level(senders, answers, seconds, warm_answers)
            level.cpu_ms = {
                name: (b - a) / len(answers) * 1000
                for name, a, b in zip(
                    ("server", "postgres", "load gen"), before, after, strict=True
                )
            }
            results.append(level)
            split = Counter(a.outcome for a in answers)
            print(
                f"     {level.per_s:7.1f} messages/s  p50 {pct(level.latencies(), 0.5):6.1f} ms  "
                f"p99 {pct(level.latencies(), 0.99):6.1f} ms  {dict(split)}",
                flush=True,
            )
    return results


async def profiled(
    base: str, batch: tuple[list[Deposit], list[Deposit]], senders: int, label: str
) -> tuple[list[Answer], list[Answer]]:
    """A warm-up stream (the first requests build FastAPI's routes lazily), then START, then
    the measured stream."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        warm, _ = await drive(http, stream(batch[0], rng), senders, f"{label} warm-up")
        (await http.post(START)).raise_for_status()
        answers, _ = await drive(http, stream(batch[1], rng), senders, label)
    return warm, answers


# -- the instrumented server ---------------------------------------------------------------------


@dataclass
class Frame:
    name: str
    started: float
    child: float = 0.0


@dataclass
class Step:
    calls: int = 0
    python: float = 0.0
    sql: float = 0.0
    statements: int = 0


class Probe:
    """Timers inside the server: the cashier's steps (exclusive of the steps and statements
    they call), every statement through core.sql and every commit (as one statement of the step
    that ran it), and the ASGI request around the webhook; summed per outcome."""

    def __init__(self) -> None:
        self.stack: contextvars.ContextVar[list[Frame] | None] = contextvars.ContextVar(
            "probe", default=None
        )
        self.request: contextvars.ContextVar[dict[str, Step] | None] = contextvars.ContextVar(
            "probe_request", default=None
        )
        self.totals: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"n": 0, "webhook": 0.0, "asgi": 0.0, "steps": defaultdict(Step)}
        )
        self.holder: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
            "probe_holder", default=None
        )

    def _enter(self, name: str) -> Frame | None:
        stack = self.stack.get()
        if stack is None:
            return None
        frame = Frame(name, time.perf_counter())
        stack.append(frame)
        return frame

    def _leave(self, frame: Frame | None, *, statement: bool = False) -> None:
        if frame is None:
            return
        stack = self.stack.get()
        request = self.request.get()
        assert stack is not None  # noqa: S101
        assert request is not None  # noqa: S101
        stack.pop()
        spent = time.perf_counter() - frame.started
        if statement:  # a round trip: charged to the step that runs it
            owner = request[stack[-1].name if frame.name == "sql" else frame.name]
            owner.sql += spent
            owner.statements += 1
        else:
            step = request[frame.name]
            step.calls += 1
            step.python += spent - frame.child
        if stack:
            stack[-1].child += spent

    def step(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:  # noqa: ANN401
            frame = self._enter(name)
            try:
                return await fn(*args, **kwargs)
            finally:
                self._leave(frame)

        return timed

    def sync_step(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:  # noqa: ANN401
            frame = self._enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self._leave(frame)

        return timed

    def statement(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:  # noqa: ANN401
            frame = self._enter(name)
            try:
                return await fn(*args, **kwargs)
            finally:
                self._leave(frame, statement=True)

        return timed

    def root(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Cashier.webhook: one request's record, summed under its outcome when it ends."""

        async def timed(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            request: dict[str, Step] = defaultdict(Step)
            self.request.set(request)
            self.stack.set([])
            frame = self._enter("webhook (receipt, glue)")
            outcome = "error"
            try:
                receipt = await fn(*args, **kwargs)
                outcome = "replayed" if receipt.replayed else receipt.outcome
                return receipt
            finally:
                self._leave(frame)
                spent = time.perf_counter() - frame.started if frame else 0.0
                total = self.totals[outcome]
                total["n"] += 1
                total["webhook"] += spent
                for name, step in request.items():
                    into = total["steps"][name]
                    into.calls += step.calls
                    into.python += step.python
                    into.sql += step.sql
                    into.statements += step.statements
                holder = self.holder.get()
                if holder is not None:
                    holder["outcome"] = outcome

        return timed

    def asgi(self, app: Any) -> Any:  # noqa: ANN401
        """The whole webhook request inside the server, from uvicorn's call to the last body
        byte, summed under the outcome the cashier's wrapper leaves in `holder`."""

        async def timed(scope: Any, receive: Any, send: Any) -> None:  # noqa: ANN401
            if scope["type"] != "http" or not scope["path"].startswith("/v1/webhooks/"):
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            holder: dict[str, str] = {}
            self.holder.set(holder)  # copied into any task the app starts: the same dict

            async def sending(msg: Any) -> None:  # noqa: ANN401
                if msg["type"] == "http.response.body" and not msg.get("more_body"):
                    spent = time.perf_counter() - started
                    self.totals[holder.get("outcome", "error")]["asgi"] += spent
                await send(msg)

            await app(scope, receive, sending)

        return timed

    def install(self) -> None:
        from compliance import cashier  # noqa: PLC0415
        from core import journal, ledger, sql  # noqa: PLC0415
        from core.payments import adapters  # noqa: PLC0415
        from core.uow import UnitOfWork  # noqa: PLC0415

        def wrap(owner: object, name: str, timer: Callable[[Any], Any]) -> None:
            setattr(owner, name, timer(getattr(owner, name)))

        def step(label: str) -> Callable[[Any], Any]:
            return lambda fn: self.step(label, fn)

        wrap(cashier.Cashier, "webhook", self.root)
        for adapter in (adapters.StandardAdapter, adapters.PayrailAdapter):
            wrap(
                adapter, "parse_webhook", lambda fn: self.sync_step("verify signature + parse", fn)
            )
        wrap(cashier, "_stored", step("replay-store lookup"))
        wrap(service, "get", step("lock player + payment"))
        wrap(service, "move", step("move (wallet, clearing, transition, state)"))
        wrap(ledger, "post", step("ledger post (+ ledger.posted)"))
        wrap(journal, "record", step("journal event"))
        for name in ("one", "all_rows", "scalar", "run"):
            wrap(sql, name, lambda fn: self.statement("sql", fn))
        for name in ("commit", "rollback"):
            wrap(UnitOfWork, name, lambda fn: self.statement("commit", fn))

    def report(self) -> dict[str, Any]:
        return {
            outcome: {
                "n": total["n"],
                "webhook": total["webhook"],
                "asgi": total["asgi"],
                "steps": {
                    name: {
                        "calls": s.calls,
                        "python": s.python,
                        "sql": s.sql,
                        "statements": s.statements,
                    }
                    for name, s in total["steps"].items()
                },
            }
            for outcome, total in self.totals.items()
        }


def serve(mode: str, out: Path) -> None:
    """The API as `pitwarden serve` runs it, with timers (`timers`) or under cProfile."""
    import uvicorn  # noqa: PLC0415

    from app.main import create_app  # noqa: PLC0415
    from core.database import create_app_engine  # noqa: PLC0415

    settings = Settings.from_env()
    urls, _server = prepare(settings)
    app: Any = create_app(
        settings=settings,
        engine=create_app_engine(urls.app, pool_size=settings.db_pool_size),
        vault_engine=create_app_engine(urls.vault, pool_size=4),
    )
    probe = Probe()
    profiler = cProfile.Profile(time.process_time)  # CPU: the loop's idle wait is not cost
    if mode == "timers":
        probe.install()
        app = probe.asgi(app)
    inner = app

    async def started(scope: Any, receive: Any, send: Any) -> None:  # noqa: ANN401
        if scope["type"] == "http" and scope["path"] == START:
            if mode == "timers":
                probe.totals.clear()
            else:
                profiler.enable()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await inner(scope, receive, send)

    app = started
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            loop="uvloop",
            http="httptools",
        )
    except KeyboardInterrupt:  # uvicorn raises the SIGINT again after its graceful shutdown
        pass
    finally:
        if mode == "timers":
            out.write_text(json.dumps(probe.report()))
        else:
            profiler.disable()
            profiler.dump_stats(out)


# -- reports -------------------------------------------------------------------------------------


def breakdown(path: Path, client: list[Answer]) -> str:
    """The timers' table: per step of a moved webhook, and one line per other outcome."""
    data = json.loads(path.read_text())
    moved = data.get("moved")
    if not moved:
        return "(no moved webhook was timed)"
    n = moved["n"]
    webhook_ms = moved["webhook"] / n * 1000
    asgi_ms = moved["asgi"] / n * 1000
    client_ms = sum(a.seconds for a in client if a.outcome == "moved") / n * 1000
    rows = []
    steps = sorted(moved["steps"].items(), key=lambda item: -(item[1]["python"] + item[1]["sql"]))
    for name, s in steps:
        spent = (s["python"] + s["sql"]) / n * 1000
        rows.append(
            f"| {name} | {s['statements'] / n:.1f} | {s['sql'] / n * 1000:.2f} | "
            f"{s['python'] / n * 1000:.2f} | {spent / client_ms * 100:.0f} % |"
        )
    statements = sum(s["statements"] for s in moved["steps"].values()) / n
    sql_ms = sum(s["sql"] for s in moved["steps"].values()) / n * 1000
    rows.append(
        f"| HTTP in the server (uvicorn, FastAPI: routing, body, response model) | — | — | "
        f"{asgi_ms - webhook_ms:.2f} | {(asgi_ms - webhook_ms) / client_ms * 100:.0f} % |"
    )
    rows.append(
        f"| loopback and the load generator's client (httpx) | — | — | "
        f"{client_ms - asgi_ms:.2f} | {(client_ms - asgi_ms) / client_ms * 100:.0f} % |"
    )
    others = []
    for outcome in ("replayed", "ignored"):
        other = data.get(outcome)
        if other:
            m = other["n"]
            others.append(
                f"{outcome}: {other['webhook'] / m * 1000:.2f} ms in the cashier, "
                f"{sum(s['statements'] for s in other['steps'].values()) / m:.1f} statements "
                f"(n = {m})"
            )
    return (
        f"A moved webhook (n = {n}): {client_ms:.2f} ms at the client, {asgi_ms:.2f} ms in the "
        f"server's ASGI app, {webhook_ms:.2f} ms in `Cashier.webhook`, of which "
        f"{statements:.1f} statements (commit included) {sql_ms:.2f} ms.\n\n"
        "| step (exclusive of the steps it calls) | statements | SQL ms | Python ms | share |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Other outcomes: " + "; ".join(others) + "."
    )


def package(filename: str, name: str) -> str:
    if name == "run" and filename.endswith("asyncio/runners.py"):
        return "the event loop itself (uvloop, C: I/O, scheduling)"
    if filename == "~":
        return "C builtins (socket, hmac, json, ...)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if str(ROOT) in filename:
        return filename.removeprefix(str(ROOT) + "/").split("/", 1)[0] + " (ours)"
    return "Python stdlib (asyncio, ...)"


def hot_spots(path: Path, top: int = 12) -> tuple[str, str]:
    """cProfile's own time grouped by package, and the top functions."""
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    groups: defaultdict[str, float] = defaultdict(float)
    for (filename, _, name), entry in raw.items():
        groups[package(filename, name)] += entry[2]
    by_package = ", ".join(
        f"{name} {spent / total * 100:.0f} %"
        for name, spent in sorted(groups.items(), key=lambda item: -item[1])[:10]
    )
    functions = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    lines = [
        f"| `{name}` ({Path(filename).name}:{line}) | {entry[1]} | {entry[2]:.2f} | "
        f"{entry[2] / total * 100:.1f} % |"
        for (filename, line, name), entry in functions
    ]
    table = "| function | calls | own s | share |\n|---|---|---|---|\n" + "\n".join(lines)
    return f"{total:.1f} s of profiled own time: {by_package}", table


def outcome_cell(level: Level, outcome: str) -> str:
    times = level.latencies(outcome)
    if not times:
        return "0"
    return f"{len(times)}: {pct(times, 0.5):.1f} / {pct(times, 0.99):.1f}"


def report(
    results: list[Level], pg_version: str, verdict: list[str], profile: str, hot: tuple[str, str]
) -> str:
    rows = "\n".join(
        f"| {r.senders} | {len(r.answers)} | {r.per_s:.0f} | {pct(r.latencies(), 0.5):.1f} | "
        f"{pct(r.latencies(), 0.95):.1f} | {pct(r.latencies(), 0.99):.1f} | "
        + " | ".join(outcome_cell(r, outcome) for outcome in OUTCOMES)
        + f" | {r.cpu_ms['server']:.2f} / {r.cpu_ms['postgres']:.2f} / {r.cpu_ms['load gen']:.2f} |"
        for r in results
    )
    other = sum(1 for r in results for a in r.answers if a.outcome not in OUTCOMES)
    checks = "\n".join(f"- {line}" for line in verdict)
    return f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m benchmarks.payments` (part of
`make bench`; {DEPOSITS} deposits per level after {WARMUP_DEPOSITS} for warm-up, half Swiftpay, half
Payrail), on {machine()}; {pg_version}; server (`pitwarden serve`), PostgreSQL and load generator
share the machine (load average {LOAD_BEFORE:.2f} before the run: other work shares it too). Per
deposit: "pending", "confirmed", for {STALE_SHARE * 100:.0f} % of them a late "pending";
{DUPLICATE_SHARE * 100:.0f} % of messages are redeliveries of an earlier message id.
Latency in ms at the sender; per outcome, count: p50 / p99.

{HEADER}
{rows}

Answers other than moved / replayed / ignored: {other}. Checked after the run, over every
deposit of the run (levels, warm-ups and profiles):

{checks}

Where a moved webhook's time goes, 1 sender, timers in the server ({PROFILE_DEPOSITS} deposits):

{profile}

cProfile of the server at {PROFILE_SENDERS["cprofile"]} senders ({PROFILE_DEPOSITS} deposits):
{hot[0]}.

{hot[1]}
{END}"""


# -- correctness ---------------------------------------------------------------------------------


async def verify(conninfo: str, deposits: list[Deposit], answers: list[Answer]) -> list[str]:
    """Every deposit confirmed exactly once, the books and the replay store agree with what was
    sent. Returns the findings; raises nothing, `ok` says whether all held."""
    problems: list[str] = []
    by_id = {d.payment_id: d for d in deposits}
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        rows = await (
            await conn.execute(
                "WITH txns AS (SELECT reference, count(*) AS n FROM ledger_transactions"
                "   WHERE reference LIKE 'payment:%' GROUP BY reference),"
                " confirmations AS (SELECT payment_id, count(*) AS n FROM payment_transitions"
                "   WHERE to_state = 'confirmed' GROUP BY payment_id),"
                " moved AS (SELECT (envelope->'data'->>'payment_id')::uuid AS payment_id,"
                "   count(*) AS n FROM journal_events WHERE event = 'payment.moved'"
                "   AND envelope->'data'->>'to' = 'confirmed' GROUP BY 1)"
                " SELECT p.id, p.state, p.provider, p.amount, coalesce(t.n, 0),"
                " coalesce(c.n, 0), coalesce(m.n, 0) FROM payments p"
                " LEFT JOIN txns t ON t.reference = 'payment:' || p.id"
                " LEFT JOIN confirmations c ON c.payment_id = p.id"
                " LEFT JOIN moved m ON m.payment_id = p.id"
                " WHERE p.kind = 'deposit'"
            )
        ).fetchall()
        seen = {row[0]: row for row in rows}
        if set(seen) != set(by_id):
            problems.append(
                f"**FAILED**: {len(set(by_id) ^ set(seen))} deposits differ from those opened"
            )
        not_confirmed = [p for p in by_id if p not in seen or seen[p][1] != "confirmed"]
        wrong_txns = [r for r in rows if r[4] != 1]
        wrong_steps = [r for r in rows if r[5] != 1 or r[6] != 1]
        cash: dict[uuid.UUID, int] = dict(
            await (
                await conn.execute(
                    "SELECT a.player_id, sum(b.balance)::bigint FROM accounts a"
                    " JOIN balances b ON b.account_id = a.id"
                    " WHERE a.kind = 'player_cash' GROUP BY a.player_id"
                )
            ).fetchall()
        )
        clearing: dict[str, int] = dict(
            await (
                await conn.execute(
                    "SELECT a.provider_code, sum(b.balance)::bigint FROM accounts a"
                    " JOIN balances b ON b.account_id = a.id"
                    " WHERE a.kind = 'psp_clearing' GROUP BY a.provider_code"
                )
            ).fetchall()
        )
        unbalanced = await (
            await conn.execute(
                "SELECT count(*) FROM (SELECT transaction_id FROM postings"
                " GROUP BY transaction_id HAVING sum(amount) <> 0) t"
            )
        ).fetchone()
        receipts = await (await conn.execute("SELECT count(*) FROM webhook_receipts")).fetchone()
    expected_cash: Counter[uuid.UUID] = Counter()
    expected_clearing: Counter[str] = Counter()
    for deposit in deposits:
        expected_cash[deposit.player_id] += deposit.amount.minor
        expected_clearing[deposit.provider] -= deposit.amount.minor
    wrong_cash = [p for p, minor in expected_cash.items() if cash.get(p) != minor]
    wrong_clearing = {
        p: (clearing.get(p), m) for p, m in expected_clearing.items() if clearing.get(p) != m
    }
    firsts = Counter(a.message.message_id for a in answers if a.outcome != "replayed")
    unique = {a.message.message_id for a in answers}
    redeliveries = len(answers) - len(unique)
    replayed = sum(1 for a in answers if a.outcome == "replayed")
    acted_twice = [m for m, count in firsts.items() if count > 1]
    errors = Counter(a.outcome for a in answers if a.outcome not in OUTCOMES)
    stale_ignored = sum(1 for a in answers if a.outcome == "ignored" and not a.message.stale)
    checks = [
        (
            not not_confirmed,
            f"{len(by_id) - len(not_confirmed)} of {len(by_id)} deposits confirmed",
        ),
        (
            not wrong_txns and not wrong_steps,
            (
                "one ledger transaction, one transition to confirmed and one `payment.moved` to"
                f" confirmed per payment ({len(wrong_txns)} / {len(wrong_steps)} otherwise)"
            ),
        ),
        (
            not wrong_cash,
            (
                f"each of {len(expected_cash)} players' cash = the sum of their deposits"
                f" ({sum(expected_cash.values()) / 100:,.2f} EUR in all;"
                f" {len(wrong_cash)} otherwise)"
            ),
        ),
        (
            not wrong_clearing,
            "each provider's clearing account = minus the sum of its deposits"
            + (f" (otherwise: {wrong_clearing})" if wrong_clearing else ""),
        ),
        (unbalanced is not None and unbalanced[0] == 0, "every ledger transaction balances"),
        (
            receipts is not None and receipts[0] == len(unique) and not acted_twice,
            (
                f"{len(unique)} message ids sent, {receipts[0] if receipts else '?'} receipts"
                f" stored, each id acted on once ({len(acted_twice)} twice)"
            ),
        ),
        (
            replayed == redeliveries,
            f"{redeliveries} redeliveries sent, {replayed} answered as replays",
        ),
        (not errors, f"no other answer ({dict(errors) if errors else 'none'})"),
    ]
    findings = [("ok: " if ok else "**FAILED**: ") + text for ok, text in checks]
    findings.append(
        f"a first delivery of a 'pending' answered 'ignored' (its 'confirmed' overtook it):"
        f" {stale_ignored}"
    )
    return [*problems, *findings]


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    write_config()
    settings = Settings(data_dir=DATA, payments_config=CONFIG)
    print("bench-payments: starting PostgreSQL and migrating ...", flush=True)
    urls, pg = prepare(settings)
    server: Server | None = None
    failed = False
    try:
        print("bench-payments: players and deposits (through the gate) ...", flush=True)
        batches, pg_version = asyncio.run(setup(settings, urls))
        postmaster = int(pg.get_pid()) if pg is not None else 0
        server = Server(pitwarden())
        print(f"bench-payments: server up on {server.base}; measuring", flush=True)
        results = uvloop.run(measure(server, batches, postmaster))
        server.stop()
        server = None
        answers = [a for r in results for a in r.answers + r.warm]
        outputs = {mode: DATA / f"profile-{mode}.out" for mode in PROFILE_SENDERS}
        client: dict[str, list[Answer]] = {}  # the measured answers of each profile
        for mode, senders in PROFILE_SENDERS.items():
            print(f"bench-payments: profiling ({mode}) at {senders} sender(s) ...", flush=True)
            server = Server(instrumented(mode, outputs[mode]))
            warm, client[mode] = uvloop.run(
                profiled(server.base, batches.profiles[mode], senders, f"profile {mode}")
            )
            server.stop()
            server = None
            answers += warm + client[mode]
        print("bench-payments: checking the books ...", flush=True)
        verdict = asyncio.run(verify(owner_conninfo(urls), batches.all(), answers))
        failed = any("FAILED" in line for line in verdict)
        section = report(
            results,
            pg_version,
            verdict,
            breakdown(outputs["timers"], client["timers"]),
            hot_spots(outputs["cprofile"]),
        )
        write_doc(section, begin=BEGIN, end=END, heading=HEADING)
        print(section)
    finally:
        if server is not None:
            server.stop()
        if pg is not None:
            pg.cleanup()
        if not os.environ.get("BENCH_PAYMENTS_KEEP"):
            shutil.rmtree(DATA, ignore_errors=True)
    if failed:
        sys.exit("bench-payments: the books do not match what was sent (see above)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
