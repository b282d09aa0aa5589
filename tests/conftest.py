"""Test session: one private embedded PostgreSQL, migrated once; each test rolls back.

Tests that need real commits (concurrency, deferred triggers) use `committed_uows` and create
uniquely keyed data of their own; the whole database is deleted with the server at the end.
"""

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.client import PitwardenClient
from app.main import create_app
from app.runtime import with_uow_factory
from compliance import jurisdictions, kyt
from compliance.gate import Gate
from compliance.vault.keys import LocalKeyFile
from core import clients
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
from core.journal import EventContext
from core.payments import routing
from core.settings import Settings
from core.uow import UnitOfWork, UnitOfWorkFactory
from policies import registry

ROOT = Path(__file__).resolve().parent.parent
CTX = EventContext(actor="test", trace_id="test")
RULESET = "2026-12-v1"  # the newest money ruleset, as the demo activates it
CONSOLE_RULESET = "console-2026-12-v2"


class Clock:
    """A settable clock: tests move time explicitly."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)

    def advance(self, **kwargs: float) -> None:
        self.now = self() + timedelta(**kwargs)

    def freeze(self) -> datetime:
        """Stop at the present (whole seconds): what the test then commits is never dated
        after what later tests see as now, however far this test moves its own clock after."""
        self.now = datetime.now(UTC).replace(microsecond=0)
        return self.now


@pytest.fixture(scope="session")
def db_urls() -> Iterator[DatabaseUrls]:
    server = start_embedded(ROOT / "var" / f"test-pg-{os.getpid()}", cleanup_mode="delete")
    owner = embedded_owner_url(server, database="pitwarden_test")
    ensure_database(owner)
    migrate(owner)
    urls = DatabaseUrls(owner=owner, app=app_url_for(owner, None), vault=vault_url_for(owner, None))
    asyncio.run(with_uow_factory(urls.app, _activate_rules))
    yield urls
    server.cleanup()


async def _activate_rules(uows: UnitOfWorkFactory) -> None:
    """The ruleset every test's money moves under, as an operator would activate it."""
    async with uows() as uow:
        await registry.activate(
            uow, version=RULESET, jurisdiction="*", actor="test", reason="test session", ctx=CTX
        )
        await registry.activate(
            uow,
            version=CONSOLE_RULESET,
            jurisdiction=registry.CONSOLE,
            actor="test",
            reason="test session",
            ctx=CTX,
        )
        await uow.commit()


class NoAgesOnFile:
    """Players made by the factories have no personal data, so no date of birth."""

    async def age_years(self, player_id: uuid.UUID, on: date) -> int | None:
        del player_id, on
        return None


# The real gate, for tests that move money through the core directly (the API builds its own).
GATE = Gate(ages=NoAgesOnFile(), jurisdictions=jurisdictions.load(), kyt=kyt.load())


@pytest.fixture(scope="session")
async def app_engine(db_urls: DatabaseUrls) -> AsyncIterator[AsyncEngine]:
    # Races of hundreds of requests on two shared cores may wait seconds for a connection: the
    # tests of a bounded wait (test_database_outage.py) make engines of their own.
    engine = create_app_engine(db_urls.app, pool_size=30, wait_s=60)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def owner_engine(db_urls: DatabaseUrls) -> AsyncIterator[AsyncEngine]:
    """The migration owner: only for tests that play a database superuser."""
    engine = create_app_engine(db_urls.owner, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def vault_engine(db_urls: DatabaseUrls) -> AsyncIterator[AsyncEngine]:
    """The vault role: the only way to personal data."""
    engine = create_app_engine(db_urls.vault, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def vault_keys() -> Iterator[LocalKeyFile]:
    path = ROOT / "var" / f"test-vault-keys-{os.getpid()}"
    yield LocalKeyFile(path / "vault-keys")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vault_uows(vault_engine: AsyncEngine, clock: "Clock") -> UnitOfWorkFactory:
    """Vault units of work commit for real: each test uses players of its own."""
    return UnitOfWorkFactory(async_sessionmaker(vault_engine, expire_on_commit=False), clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def uows(app_engine: AsyncEngine, clock: Clock) -> AsyncIterator[UnitOfWorkFactory]:
    """Units of work inside one outer transaction that is rolled back after the test."""
    async with app_engine.connect() as conn:
        outer = await conn.begin()
        sessions = async_sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        yield UnitOfWorkFactory(sessions, clock)
        await outer.rollback()


@pytest.fixture
def committed_uows(app_engine: AsyncEngine, clock: Clock) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(async_sessionmaker(app_engine, expire_on_commit=False), clock)


@pytest.fixture
async def uow(uows: UnitOfWorkFactory) -> AsyncIterator[UnitOfWork]:
    async with uows() as unit:
        yield unit


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=ROOT / "var",
        player_token_key_file=tmp_path / "player-token-key",
        payments_config=routing.EXAMPLE_CONFIG,  # the simulator's providers, public secrets
        client_secrets_key_file=tmp_path / "client-secrets-key",
    )


class Api:
    """The app in-process, with a registered game provider and operator client."""

    def __init__(
        self,
        app: FastAPI,
        http: httpx.AsyncClient,
        provider: PitwardenClient,
        operator: PitwardenClient,
        provider_code: str,
    ) -> None:
        self.app = app
        self.http = http
        self.provider = provider
        self.operator = operator
        self.provider_code = provider_code


async def make_api(
    uows: UnitOfWorkFactory,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> Api:
    app = create_app(
        settings=settings,
        uow_factory=uows,
        vault_uow_factory=vault_uows,
        vault_key_provider=vault_keys,
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    suffix = uuid.uuid4().hex[:8]
    async with uows() as unit:
        provider = await clients.register(
            unit,
            client_id=f"provider-{suffix}",
            role="game_provider",
            display_name="P",
            provider_code=f"prov{suffix}",
            sealer=app.state.client_secrets,
            ctx=CTX,
        )
        operator = await clients.register(
            unit,
            client_id=f"operator-{suffix}",
            role="operator",
            display_name="O",
            provider_code=None,
            sealer=app.state.client_secrets,
            ctx=CTX,
        )
        await unit.commit()
    return Api(
        app,
        http,
        # the callers sign by the test's clock, as real ones sign by a clock in step with ours
        PitwardenClient(
            "http://test", provider.client_id, provider.secret, http=http, clock=uows.clock
        ),
        PitwardenClient(
            "http://test", operator.client_id, operator.secret, http=http, clock=uows.clock
        ),
        f"prov{suffix}",
    )


@pytest.fixture
async def api(
    uows: UnitOfWorkFactory,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> AsyncIterator[Api]:
    made = await make_api(uows, settings, vault_uows, vault_keys)
    yield made
    await made.http.aclose()


@pytest.fixture
async def committed_api(
    committed_uows: UnitOfWorkFactory,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> AsyncIterator[Api]:
    made = await make_api(committed_uows, settings, vault_uows, vault_keys)
    yield made
    await made.http.aclose()
