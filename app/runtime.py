"""CLI plumbing: run async work as the application role on a ready database."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker

from compliance.vault.keys import KeyProvider, LocalKeyFile
from core import clients
from core.database import DatabaseUrls, create_app_engine, prepare
from core.journal import EventContext
from core.sealing import LocalSealingKey, Sealer
from core.settings import Settings
from core.uow import UnitOfWorkFactory

T = TypeVar("T")


Work = Callable[[UnitOfWorkFactory], Awaitable[T]]


async def with_uow_factory(url: URL, work: Work[T]) -> T:
    """Run async work as the application role on a small engine, then dispose of it."""
    engine = create_app_engine(url, pool_size=2)
    try:
        return await work(UnitOfWorkFactory(async_sessionmaker(engine, expire_on_commit=False)))
    finally:
        await engine.dispose()


def run_with_uow(settings: Settings, work: Work[T]) -> T:
    urls, _server = prepare(settings)
    return asyncio.run(with_uow_factory(urls.app, work))


VaultWork = Callable[[UnitOfWorkFactory, UnitOfWorkFactory], Awaitable[T]]


async def with_both(urls: DatabaseUrls, work: VaultWork[T]) -> T:
    """Run async work with units of work for the application role and for the vault role."""
    vault_engine = create_app_engine(urls.vault, pool_size=2)
    try:
        vault = UnitOfWorkFactory(async_sessionmaker(vault_engine, expire_on_commit=False))
        return await with_uow_factory(urls.app, lambda app: work(app, vault))
    finally:
        await vault_engine.dispose()


def run_with_vault(settings: Settings, work: VaultWork[T]) -> T:
    urls, _server = prepare(settings)
    return asyncio.run(with_both(urls, work))


def vault_keys(settings: Settings) -> KeyProvider:
    """The vault's key provider: the local key file unless configured elsewhere."""
    return LocalKeyFile(settings.vault_key_file or settings.data_dir / "secrets" / "vault-keys")


def client_secrets(settings: Settings) -> Sealer:
    """What seals the API clients' secrets: the local key file unless configured elsewhere."""
    return LocalSealingKey(
        settings.client_secrets_key_file or settings.data_dir / "secrets" / "client-secrets-key"
    )


async def seal_clear_client_secrets(uows: UnitOfWorkFactory, sealer: Sealer, actor: str) -> int:
    """Seal the clear secrets left from before migration 0011 (decision 0017), in one commit."""
    async with uows() as uow:
        sealed = await clients.seal_clear_secrets(
            uow, sealer=sealer, ctx=EventContext(actor=actor, trace_id=uuid.uuid4().hex)
        )
        await uow.commit()
    return sealed
