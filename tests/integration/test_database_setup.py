"""DATABASE_URL mode: migrations run as the owner; the server connects as the restricted role."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from core.database import (
    MIGRATIONS_DIR,
    DatabaseUrls,
    create_engine_sync,
    ensure_database,
    migrate,
    prepare,
)
from core.settings import Settings
from tests.conftest import ROOT


def test_an_external_database_gets_a_restricted_app_role(db_urls: DatabaseUrls) -> None:
    name = f"external_{uuid.uuid4().hex[:8]}"
    owner_url = db_urls.owner.set(database=name)
    settings = Settings(
        database_url=owner_url.render_as_string(hide_password=False),
        app_db_password="s3cret-for-test",
        data_dir=ROOT / "var" / name,
    )
    urls, server = prepare(settings)
    assert server is None
    assert urls.app.username == "pitwarden_app"
    assert urls.app.password == "s3cret-for-test"
    assert urls.app.database == name

    app = create_engine_sync(urls.app)
    with app.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_user")) == "pitwarden_app"
        assert (
            conn.scalar(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
            is False
        )
        assert conn.scalar(sa.text("SELECT count(*) FROM postings")) == 0
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("DELETE FROM postings"))
    app.dispose()

    assert urls.vault.username == "pitwarden_vault"
    secrets_dir = ROOT / "var" / name / "secrets"
    assert urls.vault.password == (secrets_dir / "vault-db-password").read_text()
    vault = create_engine_sync(urls.vault)
    with vault.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM vault.fields")) == 0
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("SELECT count(*) FROM postings"))
    vault.dispose()

    prepare(settings)  # a second start migrates nothing and keeps working
    owner = create_engine_sync(owner_url)
    with owner.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == head_revision()
    owner.dispose()


def head_revision() -> str:
    """The newest migration, as Alembic reads the scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_servers_and_commands_starting_together_all_start(db_urls: DatabaseUrls) -> None:
    """Each start migrates and sets the roles' passwords; several at once take turns (without
    the advisory lock PostgreSQL refuses some: "tuple concurrently updated")."""
    name = f"together_{uuid.uuid4().hex[:8]}"
    owner_url = db_urls.owner.set(database=name)
    ensure_database(owner_url)
    migrate(owner_url)

    def start(_: int) -> None:
        for _ in range(5):
            migrate(owner_url, app_password="s3cret-one", vault_password="s3cret-two")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(start, range(6)))  # re-raises the first failure
    app = create_engine_sync(owner_url.set(username="pitwarden_app", password="s3cret-one"))
    with app.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_user")) == "pitwarden_app"
    app.dispose()
