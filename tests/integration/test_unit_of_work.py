"""A unit of work on the real connection pool (not the tests' one shared connection): what it
writes after a commit is committed by its next commit, on its own connection.

The console's single sign-on commits the used-up sign-in before it asks the provider, then signs
the officer in and commits again. Before the fix, the second part ran its plain SQL on the
connection the first commit had given back to the pool: the sign-in was committed or lost by
whichever request took that connection next (seen in Chromium, in
tests/e2e/test_console_browser_sso.py, now and then).
"""

import hashlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.console import sessions
from core.uow import UnitOfWorkFactory


async def test_what_a_unit_writes_after_a_commit_is_committed_by_its_next_commit(
    committed_uows: UnitOfWorkFactory, owner_engine: AsyncEngine
) -> None:
    async with committed_uows() as uow:
        first, _ = await sessions.start(uow, address="127.0.0.1", user_agent="before the commit")
        await uow.commit()
        second, _ = await sessions.start(uow, address="127.0.0.1", user_agent="after the commit")
        await uow.commit()

    async with owner_engine.connect() as other:  # another connection sees only what is committed
        agents = await other.scalars(
            sa.text("SELECT user_agent FROM console_sessions WHERE token_hash = ANY(:hashes)"),
            {"hashes": [hashlib.sha256(token.encode()).digest() for token in (first, second)]},
        )
        assert sorted(agents) == ["after the commit", "before the commit"]
