"""API clients' secrets at rest: stored only sealed, refused in clear by PostgreSQL, rotated with
an overlap decided by the unit of work's clock, journaled without the secret; clear secrets from
before migration 0011 sealed at start-up; `pitwarden clients register|rotate-secret`."""

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from click.testing import Result
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from typer.testing import CliRunner

from app import cli as cli_module
from app.client import PitwardenClient
from app.main import create_app
from app.runtime import client_secrets, with_uow_factory
from compliance.vault.keys import LocalKeyFile
from core import clients
from core.database import (
    MIGRATIONS_DIR,
    DatabaseUrls,
    app_url_for,
    create_app_engine,
    create_engine_sync,
    ensure_database,
    migrate,
)
from core.errors import InvalidRequest, NotFound
from core.journal import rfc3339
from core.sealing import Sealer
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests.conftest import CTX, Api, Clock

SIGNED_GET = "/v1/admin/kill-switches"  # any call an operator may make: 200 when signed right


async def answer(api: Api, secret: str, http: httpx.AsyncClient | None = None) -> httpx.Response:
    """A signed operator call made with `secret`."""
    client = PitwardenClient(
        "http://test",
        api.operator.client_id,
        secret,
        http=http or api.http,
        clock=api.operator.clock,  # signs by the test's clock, as the server checks by it
    )
    return await client.get(SIGNED_GET)


async def answers(api: Api, secret: str) -> int:
    return (await answer(api, secret)).status_code


async def rotate(api: Api, uows: UnitOfWorkFactory, overlap: timedelta) -> clients.Issued:
    async with uows() as uow:
        issued = await clients.rotate_secret(
            uow,
            client_id=api.operator.client_id,
            overlap=overlap,
            sealer=api.app.state.client_secrets,
            ctx=CTX,
        )
        await uow.commit()
    return issued


async def events(uows: UnitOfWorkFactory, name: str, client_id: str) -> list[dict[str, Any]]:
    async with uows() as uow:
        rows = await uow.session.scalars(
            sa.text(
                "SELECT envelope FROM journal_events WHERE event = :e"
                " AND envelope->'data'->>'client_id' = :c ORDER BY id"
            ),
            {"e": name, "c": client_id},
        )
        return list(rows)


# -- at rest -----------------------------------------------------------------------------------


@pytest.mark.commits
async def test_the_table_holds_no_secret_in_clear(
    committed_api: Api, owner_engine: AsyncEngine
) -> None:
    """Read as the owner, the way a database dump would: no client's secret is there."""
    assert await answers(committed_api, committed_api.operator.secret) == 200  # signing works
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT client_id, secret, secret_sealed, t::text AS whole FROM api_clients t"
                    " WHERE client_id IN (:p, :o)"
                ),
                {"p": committed_api.provider.client_id, "o": committed_api.operator.client_id},
            )
        ).all()
    secrets = {committed_api.provider.secret, committed_api.operator.secret}
    assert len(rows) == 2
    for row in rows:
        assert row.secret is None
        assert len(row.secret_sealed) > 40
        for secret in secrets:
            assert secret not in row.whole
            assert secret.encode() not in row.secret_sealed
            assert secret.encode().hex() not in row.whole  # not as bytea either


@pytest.mark.commits
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica"])
async def test_postgresql_refuses_a_clear_secret_even_from_the_owner(
    committed_api: Api, owner_engine: AsyncEngine, replica: bool
) -> None:
    statements = [
        (
            "INSERT INTO api_clients (client_id, role, display_name, secret, active, created_at)"
            " VALUES ('clear-text', 'operator', 'x', 'in-clear', true, now())"
        ),
        "UPDATE api_clients SET secret = 'in-clear', secret_sealed = NULL WHERE client_id = :o",
    ]
    async with owner_engine.connect() as conn:
        if replica:  # ordinary triggers do not fire in this mode; ALWAYS triggers do
            await conn.execute(sa.text("SET session_replication_role = replica"))
        for statement in statements:
            with pytest.raises(sa.exc.IntegrityError, match="takes no clear secret"):
                await conn.execute(sa.text(statement), {"o": committed_api.operator.client_id})
            await conn.rollback()
            if replica:
                await conn.execute(sa.text("SET session_replication_role = replica"))
    assert await answers(committed_api, committed_api.operator.secret) == 200


async def test_the_application_role_cannot_store_a_clear_secret(api: Api) -> None:
    async with api.app.state.uow_factory() as uow:
        with pytest.raises(sa.exc.IntegrityError, match="takes no clear secret"):
            await uow.session.execute(
                sa.text("UPDATE api_clients SET secret = 'in-clear' WHERE client_id = :o"),
                {"o": api.operator.client_id},
            )


async def test_a_sealed_secret_copied_to_another_client_does_not_verify(
    api: Api, uows: UnitOfWorkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Sealed secrets are bound to their client: a row edited by hand to carry another
    client's sealed secret does not make that secret sign for it. Our own storage failing is
    an internal error, logged, not a caller's bad signature."""
    async with uows() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE api_clients SET secret_sealed ="
                " (SELECT secret_sealed FROM api_clients WHERE client_id = :p)"
                " WHERE client_id = :o"
            ),
            {"p": api.provider.client_id, "o": api.operator.client_id},
        )
        await uow.commit()
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        refused = await answer(api, api.provider.secret, http)
    assert (refused.status_code, refused.json()["error"]["code"]) == (500, "internal_error")
    assert f"'api_client:{api.operator.client_id}' does not open" in caplog.text


# -- rotation ----------------------------------------------------------------------------------


async def test_both_secrets_verify_during_the_overlap_and_only_the_new_one_after(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    old = api.operator.secret
    issued = await rotate(api, uows, timedelta(hours=2))
    assert issued.secret != old
    assert issued.previous_valid_until is not None
    assert await answers(api, old) == 200
    assert await answers(api, issued.secret) == 200
    clock.now = issued.previous_valid_until - timedelta(seconds=1)
    assert await answers(api, old) == 200  # the caller moves at its own pace
    clock.now = issued.previous_valid_until  # the overlap's end: refused from then on
    refused = await answer(api, old)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "bad_signature")
    assert await answers(api, issued.secret) == 200


async def test_the_rotation_is_journaled_without_any_secret(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    old = api.operator.secret
    issued = await rotate(api, uows, timedelta(minutes=30))
    [event] = await events(uows, "client.secret_rotated", api.operator.client_id)
    assert event["actor"] == CTX.actor
    assert issued.previous_valid_until is not None
    assert event["data"] == {
        "client_id": api.operator.client_id,
        "overlap_seconds": 1800,
        "previous_valid_until": rfc3339(issued.previous_valid_until),
        "earlier_overlap_cut_short": False,
    }
    text = json.dumps(event)
    assert old not in text
    assert issued.secret not in text


async def test_without_overlap_the_old_secret_is_refused_at_once(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    old = api.operator.secret
    issued = await rotate(api, uows, timedelta(0))
    assert issued.previous_valid_until is None
    assert await answers(api, old) == 401
    assert await answers(api, issued.secret) == 200


async def test_a_second_rotation_during_an_overlap_ends_the_oldest_secret(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    """Only the two newest secrets ever verify: rotating again (say, the new secret leaked
    too) drops the first one at once, and the journal says so."""
    first = api.operator.secret
    second = await rotate(api, uows, timedelta(hours=1))
    third = await rotate(api, uows, timedelta(hours=1))
    assert [await answers(api, s) for s in (first, second.secret, third.secret)] == [401, 200, 200]
    rotated = await events(uows, "client.secret_rotated", api.operator.client_id)
    assert [e["data"]["earlier_overlap_cut_short"] for e in rotated] == [False, True]


async def test_rotating_an_unknown_client_or_for_too_long_is_refused(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    async with uows() as uow:
        with pytest.raises(NotFound) as unknown:
            await clients.rotate_secret(
                uow,
                client_id="nobody-at-all",
                overlap=timedelta(hours=1),
                sealer=api.app.state.client_secrets,
                ctx=CTX,
            )
    assert unknown.value.code == "unknown_client"
    for overlap in (timedelta(days=31), timedelta(seconds=-1)):
        async with uows() as uow:
            with pytest.raises(InvalidRequest) as invalid:
                await clients.rotate_secret(
                    uow,
                    client_id=api.operator.client_id,
                    overlap=overlap,
                    sealer=api.app.state.client_secrets,
                    ctx=CTX,
                )
        assert invalid.value.code == "invalid_overlap"
    assert await answers(api, api.operator.secret) == 200  # nothing changed


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_database(
    db_urls: DatabaseUrls, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands' database is the test session's, their key file the test's settings'."""

    def run_with_uow(_: Settings, work: Callable[[UnitOfWorkFactory], Any]) -> Any:
        return asyncio.run(with_uow_factory(db_urls.app, work))

    monkeypatch.setattr(cli_module, "run_with_uow", run_with_uow)
    assert settings.client_secrets_key_file is not None
    monkeypatch.setenv("PITWARDEN_CLIENT_SECRETS_KEY_FILE", str(settings.client_secrets_key_file))


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli_module.cli, list(args))


@pytest.mark.commits
@pytest.mark.usefixtures("cli_database")
async def test_register_and_rotate_secret_from_the_command_line(committed_api: Api) -> None:
    """The secrets the commands print sign requests; the rotation's old one until the end."""
    name = f"cli-ops-{uuid.uuid4().hex[:8]}"
    registered = await invoke("clients", "register", name, "--role", "operator")
    assert registered.exit_code == 0, registered.output
    first = dict(line.split("=", 1) for line in registered.stdout.splitlines())
    assert first["client_id"] == name

    rotated = await invoke("clients", "rotate-secret", name, "--overlap", "2h")
    assert rotated.exit_code == 0, rotated.output
    lines = rotated.stdout.splitlines()
    assert lines[0] == f"client_id={name}"
    assert lines[1].startswith("secret=")
    assert lines[2].startswith("the previous secret verifies until ")
    second = lines[1].removeprefix("secret=")
    assert second != first["secret"]
    for secret in (first["secret"], second):
        signed = PitwardenClient("http://test", name, secret, http=committed_api.http)
        assert (await signed.get(SIGNED_GET)).status_code == 200

    ended = await invoke("clients", "rotate-secret", name, "--overlap", "0")
    assert ended.exit_code == 0, ended.output
    assert ended.stdout.splitlines()[2] == "the previous secret is refused from now on"
    third = ended.stdout.splitlines()[1].removeprefix("secret=")
    for secret, status in ((first["secret"], 401), (second, 401), (third, 200)):
        signed = PitwardenClient("http://test", name, secret, http=committed_api.http)
        assert (await signed.get(SIGNED_GET)).status_code == status


@pytest.mark.usefixtures("cli_database")
async def test_rotate_secret_of_an_unknown_client_exits_with_an_error() -> None:
    unknown = await invoke("clients", "rotate-secret", "nobody-at-all")
    assert unknown.exit_code == 2
    assert unknown.stdout == ""
    assert json.loads(unknown.stderr)["error"]["code"] == "unknown_client"
    malformed = await invoke("clients", "rotate-secret", "nobody-at-all", "--overlap", "soon")
    assert malformed.exit_code == 2
    assert "a duration is a number and a unit" in malformed.stderr


# -- clear secrets from before migration 0011 --------------------------------------------------

CLEAR = {"legacy-ops": "clear-secret-of-legacy-ops-0123456789", "legacy-reg": "clear-reg-42"}


def upgrade_to(owner: URL, revision: str) -> None:
    engine = create_engine_sync(owner)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        if revision.startswith("-"):
            command.downgrade(cfg, revision[1:])
        else:
            command.upgrade(cfg, revision)
    engine.dispose()


def legacy_database(db_urls: DatabaseUrls) -> URL:
    """A database of version 0010 with two clients' secrets in clear, then migrated to head:
    the migration has no key, so the secrets are still in clear."""
    owner = db_urls.owner.set(database=f"legacy_{uuid.uuid4().hex[:8]}")
    ensure_database(owner)
    upgrade_to(owner, "0010")
    engine = create_engine_sync(owner)
    with engine.begin() as conn:
        for (client_id, secret), role in zip(CLEAR.items(), ("operator", "regulator"), strict=True):
            conn.execute(
                sa.text(
                    "INSERT INTO api_clients (client_id, role, display_name, secret, created_at)"
                    " VALUES (:c, :r, 'legacy', :s, now())"
                ),
                {"c": client_id, "r": role, "s": secret},
            )
    migrate(owner)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM api_clients WHERE secret IS NULL")) == 0
    engine.dispose()
    return owner


def assert_sealed_once(owner: URL, sealer: Sealer) -> None:
    """Every clear secret is gone from the table, its sealed form opens to it, and one
    `client.secret_sealed` event per client says when it happened."""
    engine = create_engine_sync(owner)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT client_id, secret, secret_sealed, t::text AS whole FROM api_clients t")
        ).all()
        sealed_events = conn.scalars(
            sa.text(
                "SELECT envelope->'data'->>'client_id' FROM journal_events"
                " WHERE event = 'client.secret_sealed' ORDER BY 1"
            )
        ).all()
    engine.dispose()
    assert {row.client_id for row in rows} == set(CLEAR)
    for row in rows:
        assert row.secret is None
        assert CLEAR[row.client_id] not in row.whole
        opened = sealer.unseal(row.secret_sealed, context=f"api_client:{row.client_id}")
        assert opened == CLEAR[row.client_id].encode()
    assert sealed_events == sorted(CLEAR)


async def test_clear_secrets_of_an_older_version_are_sealed_at_start_up(
    db_urls: DatabaseUrls,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    clock: Clock,
) -> None:
    """The clear secrets keep verifying after the migration; the server's start-up seals each
    once, journaled; after that no downgrade can throw them away."""
    owner = await asyncio.to_thread(legacy_database, db_urls)
    app_engine = create_app_engine(app_url_for(owner, None), pool_size=2)
    uows = UnitOfWorkFactory(async_sessionmaker(app_engine, expire_on_commit=False), clock)
    sealer = client_secrets(settings)
    try:
        async with uows() as uow:  # before start-up, the clear secret still verifies
            caller = await clients.active_client(uow, "legacy-ops", sealer=sealer)
        assert caller is not None
        assert caller.secrets == (CLEAR["legacy-ops"],)

        app = create_app(
            settings=Settings(
                data_dir=settings.data_dir,
                client_secrets_key_file=settings.client_secrets_key_file,
                audit_in_server=False,
                deposit_expiry_minutes=0,
            ),
            uow_factory=uows,
            vault_uow_factory=vault_uows,
            vault_key_provider=vault_keys,
        )
        async with app.router.lifespan_context(app):  # the server starting
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                legacy = PitwardenClient(
                    "http://test", "legacy-ops", CLEAR["legacy-ops"], http=http
                )
                assert (await legacy.get(SIGNED_GET)).status_code == 200
        async with app.router.lifespan_context(app):  # a second start seals nothing more
            pass
    finally:
        await app_engine.dispose()
    assert_sealed_once(owner, sealer)
    with pytest.raises(sa.exc.DBAPIError, match="would lose them"):
        await asyncio.to_thread(upgrade_to, owner, "-0010")


async def test_pitwarden_migrate_seals_clear_secrets_too(
    db_urls: DatabaseUrls, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await asyncio.to_thread(legacy_database, db_urls)
    monkeypatch.setenv("DATABASE_URL", owner.render_as_string(hide_password=False))
    monkeypatch.setenv("PITWARDEN_DATA_DIR", str(tmp_path))
    assert settings.client_secrets_key_file is not None
    monkeypatch.setenv("PITWARDEN_CLIENT_SECRETS_KEY_FILE", str(settings.client_secrets_key_file))
    first = await invoke("migrate")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[1] == "sealed the clear secrets of 2 API client(s)"
    again = await invoke("migrate")
    assert again.exit_code == 0, again.output
    assert len(again.stdout.splitlines()) == 1  # nothing left to seal
    assert_sealed_once(owner, client_secrets(settings))


async def test_two_processes_starting_at_once_seal_each_secret_once(
    db_urls: DatabaseUrls, settings: Settings
) -> None:
    """The second waits on the first's row locks, then finds nothing left in clear."""
    owner = await asyncio.to_thread(legacy_database, db_urls)
    app_engine = create_app_engine(app_url_for(owner, None), pool_size=2)
    uows = UnitOfWorkFactory(async_sessionmaker(app_engine, expire_on_commit=False))
    sealer = client_secrets(settings)
    try:
        async with uows() as first, uows() as second:
            assert await clients.seal_clear_secrets(first, sealer=sealer, ctx=CTX) == 2
            waiting = asyncio.create_task(
                clients.seal_clear_secrets(second, sealer=sealer, ctx=CTX)
            )
            await asyncio.sleep(0.2)
            assert not waiting.done()  # held by the first one's row locks
            await first.commit()
            assert await waiting == 0
            await second.commit()
    finally:
        await app_engine.dispose()
    assert_sealed_once(owner, sealer)


async def test_rotating_a_clear_secret_seals_it_as_the_previous_one(
    db_urls: DatabaseUrls, settings: Settings
) -> None:
    """Rotated before any start-up: the clear secret is sealed first, then keeps verifying for
    the overlap like any previous secret."""
    owner = await asyncio.to_thread(legacy_database, db_urls)
    app_engine = create_app_engine(app_url_for(owner, None), pool_size=2)
    uows = UnitOfWorkFactory(async_sessionmaker(app_engine, expire_on_commit=False))
    sealer = client_secrets(settings)
    try:
        async with uows() as uow:
            issued = await clients.rotate_secret(
                uow, client_id="legacy-ops", overlap=timedelta(hours=1), sealer=sealer, ctx=CTX
            )
            await uow.commit()
        async with uows() as uow:
            caller = await clients.active_client(uow, "legacy-ops", sealer=sealer)
            journaled = await uow.session.scalars(
                sa.text(
                    "SELECT event FROM journal_events"
                    " WHERE envelope->'data'->>'client_id' = 'legacy-ops' ORDER BY id"
                )
            )
            assert list(journaled) == ["client.secret_sealed", "client.secret_rotated"]
            stored = await uow.session.scalar(
                sa.text("SELECT secret FROM api_clients WHERE client_id = 'legacy-ops'")
            )
    finally:
        await app_engine.dispose()
    assert caller is not None
    assert caller.secrets == (issued.secret, CLEAR["legacy-ops"])
    assert stored is None
