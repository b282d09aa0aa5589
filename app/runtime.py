"""CLI plumbing: run async work as the application role on a ready database."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker

from core.database import create_app_engine, prepare
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
