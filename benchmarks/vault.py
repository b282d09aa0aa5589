"""`make bench` (vault part): sealing and opening personal data, and rotating the KEK.

On a private embedded PostgreSQL under var/bench-vault, through the vault's own service
functions and role: store players' personal data (8 fields each, one transaction per player),
open it again (every field decrypted), reveal single fields (decision + journal + decrypt),
and rotate the KEK over PLAYERS data keys (seeded directly, wrapped under version 1).
Results replace the vault section of docs/benchmarks.md.
"""

import os
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import uvloop
from sqlalchemy.ext.asyncio import async_sessionmaker

from benchmarks.audit import progress
from benchmarks.wallet import machine, pct, write_doc
from compliance.vault import crypto, rotation, service
from compliance.vault.keys import LocalKeyFile
from core.database import create_app_engine, prepare
from core.journal import EventContext
from core.settings import Settings
from core.uow import UnitOfWorkFactory

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "var" / "bench-vault"
STORED = int(os.environ.get("BENCH_VAULT_STORED", "1000"))
PLAYERS = int(os.environ.get("BENCH_VAULT_PLAYERS", "100000"))
CTX = EventContext(actor="bench", trace_id="bench")
BEGIN, END = "<!-- bench-vault:begin -->", "<!-- bench-vault:end -->"


def iban(n: int) -> str:
    """A valid Maltese IBAN of its own for player n (ISO 13616 check digits)."""
    bban = f"MALT01100{n:018d}"
    digits = "".join(str(int(c, 36)) for c in bban + "MT00")
    return f"MT{98 - int(digits) % 97:02d}{bban}"


def person(n: int) -> service.PersonalData:
    return service.PersonalData(
        legal_name=f"Maria Borg {n}",
        date_of_birth="1990-04-17",
        address=f"{n} Triq il-Kbira, Mosta",
        country="MT",
        email=f"maria.{n}@example.com",
        phone=f"+356 {n:08d}",
        national_id=f"{n:07d}M",
        iban=iban(n),
    )


async def store_and_open(uows: UnitOfWorkFactory, keys: LocalKeyFile) -> dict[str, float]:
    ids = [uuid.uuid4() for _ in range(STORED)]
    started = time.perf_counter()
    for n, player_id in enumerate(ids):
        async with uows() as uow:
            await service.store(uow, player_id=player_id, data=person(n), keys=keys, ctx=CTX)
            await uow.commit()
    stored = time.perf_counter() - started
    started = time.perf_counter()
    for player_id in ids:
        async with uows() as uow:
            await service.masked(uow, player_id=player_id, keys=keys)
    opened = time.perf_counter() - started
    reveals = []
    for player_id in ids:
        began = time.perf_counter()
        async with uows() as uow:
            await service.reveal(
                uow,
                player_id=player_id,
                field="iban",
                actor="bench",
                actor_role="payments_officer",
                purpose="payout",
                keys=keys,
                ctx=CTX,
            )
            await uow.commit()
        reveals.append(time.perf_counter() - began)
    key, player = crypto.new_data_key(), uuid.uuid4()
    started = time.perf_counter()
    for _ in range(20_000):
        sealed = crypto.encrypt_field(key, player, "email", b"maria@example.com")
        crypto.decrypt_field(key, player, "email", sealed)
    crypto_s = (time.perf_counter() - started) / 20_000
    return {
        "store_fields_s": STORED * 8 / stored,
        "open_fields_s": STORED * 8 / opened,
        "reveal_p50": pct(reveals, 0.5),
        "reveal_p99": pct(reveals, 0.99),
        "crypto_us": crypto_s * 1e6,
    }


async def seed_data_keys(owner: str, keys: LocalKeyFile) -> None:
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as conn:
        cursor = conn.cursor()
        step = 10_000
        for start in range(0, PLAYERS, step):
            async with cursor.copy(
                "COPY vault.data_keys (player_id, kek_version, sealed, created_at) FROM STDIN"
            ) as copy:
                for _ in range(min(step, PLAYERS - start)):
                    player_id = uuid.uuid4()
                    wrapped = keys.wrap(player_id, crypto.new_data_key())
                    await copy.write_row((player_id, wrapped.kek_version, wrapped.sealed, now))
            progress("seeding data keys", min(PLAYERS, start + step), PLAYERS)


async def run(settings: Settings) -> str:
    urls, _server = prepare(settings)
    owner = urls.owner.set(drivername="postgresql").render_as_string(hide_password=False)
    keys = LocalKeyFile(DATA / "secrets" / "vault-keys")
    engine = create_app_engine(urls.vault, pool_size=4)
    uows = UnitOfWorkFactory(async_sessionmaker(engine, expire_on_commit=False))
    try:
        print(f"bench: storing and opening {STORED} players' personal data ...", flush=True)
        figures = await store_and_open(uows, keys)
        await seed_data_keys(owner, keys)
        started = time.perf_counter()
        done = await rotation.rotate_kek(
            uows,
            keys,
            ctx=CTX,
            progress=lambda d, t: progress("rewrapping", d, t),
        )
        figures["rotate_s"] = time.perf_counter() - started
        figures["rewrapped"] = done.rewrapped
    finally:
        await engine.dispose()
    rows = [
        (
            f"encrypt + store, 8 fields a player, a transaction each ({STORED:,} players)",
            f"{figures['store_fields_s']:,.0f} fields/s",
        ),
        ("read + decrypt every field of a player", f"{figures['open_fields_s']:,.0f} fields/s"),
        (
            "reveal one field (rule, journal event, decrypt, commit), p50 / p99",
            f"{figures['reveal_p50']:.2f} / {figures['reveal_p99']:.2f} ms",
        ),
        ("AES-256-GCM seal + open of one field, in process", f"{figures['crypto_us']:.1f} µs"),
        (
            f"rotate the KEK over {figures['rewrapped']:,.0f} data keys",
            f"{figures['rotate_s']:.1f} s",
        ),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make bench` (`benchmarks/vault.py`) on
{machine()}.

| measure | result |
|---|---|
{table}
{END}"""


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    section = uvloop.run(run(Settings(data_dir=DATA)))
    write_doc(section, begin=BEGIN, end=END, heading="## PII vault")
    print(section)
    sys.exit(0)


if __name__ == "__main__":
    main()
