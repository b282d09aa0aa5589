"""`python -m benchmarks.gate`: what the policy gate adds to a bet, and where that time goes.

Starts a private embedded PostgreSQL under var/bench-gate, activates the shipped ruleset, and
places bets through the money core (`rounds.place_bet`, one committed unit of work each, as the
API does) with the real gate, timing the whole bet and, inside it, the gate's parts: reading
the state (one SQL statement), completing the facts (age, EUR amounts), the engine's decision,
and storing + journaling the decision. "Without policy" is the bet minus the gate. Runs at 1
and 4 concurrent players, and follows one player over a long history (do the facts slow down
as the bets pile up?). The results replace the gate section of docs/benchmarks.md.
"""

import asyncio
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker

from app import demo
from app.gating import build_gate
from app.runtime import client_secrets, vault_keys
from benchmarks.wallet import ROOT, machine, pct, write_doc
from compliance import facts, kyc
from compliance.gate import Gate
from core import clients, players, rounds, wallets
from core.database import DatabaseUrls, create_app_engine, prepare
from core.guard import Movement
from core.journal import EventContext
from core.money import parse_amount
from core.settings import Settings
from core.uow import UnitOfWork, UnitOfWorkFactory
from policies import decisions

DATA = ROOT / "var" / "bench-gate"
BEGIN, END = "<!-- bench-gate:begin -->", "<!-- bench-gate:end -->"
CTX = EventContext(actor="bench", trace_id="bench")
BETS_PER_PLAYER = 400
HISTORY = 3000
WARMUP = 50


@dataclass
class Timings:
    bet: list[float] = field(default_factory=list)
    gate: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    complete: list[float] = field(default_factory=list)
    decide: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)

    def take(self, name: str, seconds: float) -> None:
        getattr(self, name).append(seconds)


class TimedGate(Gate):
    """The real gate, timing its parts into `timings`."""

    timings: Timings

    async def __call__(self, uow: UnitOfWork, movement: Movement, ctx: EventContext) -> uuid.UUID:
        started = time.perf_counter()
        try:
            return await super().__call__(uow, movement, ctx)
        finally:
            self.timings.take("gate", time.perf_counter() - started)


_ORIGINAL = (facts.read, facts.complete, decisions.evaluate, decisions.store)


def instrument(timings: Timings) -> None:
    """Time the gate's three parts into `timings` (module attributes the gate looks up at call
    time, so wrapping them here times the real calls)."""
    read, complete, evaluate, store = _ORIGINAL

    async def timed_read(*args: object, **kwargs: object) -> dict[str, object]:
        started = time.perf_counter()
        row = await read(*args, **kwargs)  # type: ignore[arg-type]
        timings.take("read", time.perf_counter() - started)
        return row

    async def timed_complete(*args: object, **kwargs: object) -> facts.Facts:
        started = time.perf_counter()
        sheet = await complete(*args, **kwargs)  # type: ignore[arg-type]
        timings.take("complete", time.perf_counter() - started)
        return sheet

    def timed_evaluate(*args: object, **kwargs: object) -> decisions.Recorded:
        started = time.perf_counter()
        recorded = evaluate(*args, **kwargs)  # type: ignore[arg-type]
        timings.take("decide", time.perf_counter() - started)
        return recorded

    async def timed_store(*args: object, **kwargs: object) -> None:
        started = time.perf_counter()
        await store(*args, **kwargs)  # type: ignore[arg-type]
        timings.take("store", time.perf_counter() - started)

    facts.read = timed_read  # type: ignore[assignment]
    facts.complete = timed_complete  # type: ignore[assignment]
    decisions.evaluate = timed_evaluate  # type: ignore[assignment]
    decisions.store = timed_store  # type: ignore[assignment]


async def bets(uows: UnitOfWorkFactory, gate: TimedGate, player: uuid.UUID, count: int) -> None:
    for _ in range(count):
        ref = uuid.uuid4().hex[:16]
        cmd = rounds.PlaceBet(
            provider_code="bench",
            transaction_uuid=str(uuid.uuid4()),
            player_id=player,
            round_ref=ref,
            bet_ref=ref,
            game_id="bench",
            amount=parse_amount("1.00", "EUR"),
        )
        started = time.perf_counter()
        async with uows() as uow:
            await rounds.place_bet(uow, cmd, CTX, guard=gate)
            await uow.commit()
        gate.timings.take("bet", time.perf_counter() - started)


async def funded_players(uows: UnitOfWorkFactory, gate: Gate, count: int) -> list[uuid.UUID]:
    ids = []
    async with uows() as uow:
        await clients.register(
            uow,
            client_id="bench-provider",
            role="game_provider",
            display_name="Bench",
            provider_code="bench",
            sealer=client_secrets(Settings(data_dir=DATA)),
            ctx=CTX,
        )
        for _ in range(count):
            player = await players.register(uow, currency="EUR", jurisdiction="MT", ctx=CTX)
            await wallets.adjust(
                uow,
                player_id=player,
                amount=parse_amount("1000000.00", "EUR"),
                source="cash",
                direction="credit",
                operator="bench",
                reason="bench funds",
                ctx=CTX,
                guard=gate,
            )
            await kyc.set_level(  # verified: thousands of stakes pass due diligence
                uow, player_id=player, level="verified", actor="bench", reason="bench", ctx=CTX
            )
            ids.append(player)
        await uow.commit()
    return ids


def row(label: str, t: Timings, bets_per_s: float) -> str:
    def ms(values: list[float], q: float) -> str:
        return f"{pct(values, q):.2f}"

    share = statistics.fmean(t.gate) / statistics.fmean(t.bet) * 100
    return (
        f"| {label} | {bets_per_s:.0f} | {ms(t.bet, 0.5)} / {ms(t.bet, 0.99)} | "
        f"{ms(t.gate, 0.5)} / {ms(t.gate, 0.99)} | {share:.0f} % | "
        f"{ms(t.read, 0.5)} | {ms(t.complete, 0.5)} | {ms(t.decide, 0.5)} | {ms(t.store, 0.5)} |"
    )


async def measure(settings: Settings, urls: DatabaseUrls) -> list[str]:
    engine = create_app_engine(urls.app, pool_size=6)
    vault_engine = create_app_engine(urls.vault, pool_size=2)
    try:
        uows = UnitOfWorkFactory(async_sessionmaker(engine, expire_on_commit=False))
        vault_uows = UnitOfWorkFactory(async_sessionmaker(vault_engine, expire_on_commit=False))
        await demo.activate_rules(uows)
        built = build_gate(settings, vault_uows, vault_keys(settings))
        gate = TimedGate(ages=built.ages, jurisdictions=built.jurisdictions, kyt=built.kyt)
        gate.timings = Timings()
        ids = await funded_players(uows, gate, 5)
        rows = []
        for level in (1, 4):
            print(
                f"bench-gate: {level} concurrent player(s), {BETS_PER_PLAYER} bets each ...",
                flush=True,
            )
            gate.timings = Timings()
            await asyncio.gather(*(bets(uows, gate, p, WARMUP) for p in ids[:level]))
            gate.timings = Timings()
            instrument(gate.timings)
            started = time.perf_counter()
            await asyncio.gather(*(bets(uows, gate, p, BETS_PER_PLAYER) for p in ids[:level]))
            rate = len(gate.timings.bet) / (time.perf_counter() - started)
            rows.append(row(f"{level} player(s), short history", gate.timings, rate))
        print(f"bench-gate: one player over {HISTORY} bets ...", flush=True)
        history = ids[4]
        gate.timings = Timings()
        instrument(gate.timings)
        await bets(uows, gate, history, HISTORY - 500)
        gate.timings = Timings()
        instrument(gate.timings)
        started = time.perf_counter()
        await bets(uows, gate, history, 500)
        rate = 500 / (time.perf_counter() - started)
        rows.append(row(f"1 player, bets {HISTORY - 499}-{HISTORY}", gate.timings, rate))
        return rows
    finally:
        await engine.dispose()
        await vault_engine.dispose()


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    settings = Settings(data_dir=DATA)
    print("bench-gate: starting PostgreSQL and migrating ...", flush=True)
    urls, pg = prepare(settings)
    try:
        rows = asyncio.run(measure(settings, urls))
    finally:
        if pg is not None:
            pg.cleanup()
        shutil.rmtree(DATA, ignore_errors=True)
    section = f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m benchmarks.gate` (part of
`make bench`), on {machine()}. In-process bets through `rounds.place_bet`, one committed unit of
work each; times in ms (p50 / p99), parts at p50.

| run | bets/s | bet | gate | gate share | facts: SQL | facts: rest | engine | store + journal |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{END}"""
    write_doc(section, begin=BEGIN, end=END, heading="## Policy gate on a bet")
    print(section)


if __name__ == "__main__":
    main()
