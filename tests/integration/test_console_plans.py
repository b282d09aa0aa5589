"""No console page scans a table that grows with play: every statement the main pages run has
an index to use. With sequential scans disabled, PostgreSQL still plans a `Seq Scan` only when
no index can serve the query, so a test database of any size tells."""

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from core.database import DatabaseUrls
from core.uow import UnitOfWorkFactory
from tests import console_support, factories
from tests.conftest import Api, Clock
from tests.console_support import Browser

# Tables that grow with play, payments, decisions, sign-ins and time.
GROWING = frozenset(
    {
        "accounts", "balances", "postings", "ledger_transactions", "journal_events", "bets",
        "rounds", "wallet_transactions", "payments", "payment_transitions", "payment_attempts",
        "policy_decisions", "rg_limits", "rg_exclusions", "kyc_levels", "aml_holds",
        "player_links", "players", "console_sessions", "console_sign_in_failures",
        "approval_requests", "officers", "idempotency_records", "request_nonces",
        "audit_entries", "kill_switches",
    }
)  # fmt: skip
PAGES = (
    "/console",
    "/console/players/{player}",
    "/console/sessions",
    "/console/approvals",
    "/console/kill-switches",
    "/console/payments",
    "/console/decisions",
    "/console/decisions?player={player}",
    "/console/decisions?outcome=deny",
    "/console/rulesets",
    "/console/audit",
    "/console/activity",
    "/console/security",
)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every statement psycopg executes while the test runs, with its parameters."""
    statements: list[tuple[str, Any]] = []
    execute = psycopg.AsyncCursor.execute

    async def recording(
        self: psycopg.AsyncCursor[Any],
        query: Any,
        params: Any = None,
        **kw: Any,
    ) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        statements.append((text, params))
        return await execute(self, query, params, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", recording)
    return statements


def seq_scans(plan: dict[str, Any]) -> Iterator[str]:
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in GROWING:
        yield str(plan["Relation Name"])
    for child in plan.get("Plans", ()):
        yield from seq_scans(child)


async def test_the_main_pages_use_an_index_for_every_growing_table(
    api: Api, uows: UnitOfWorkFactory, clock: Clock, db_urls: DatabaseUrls,
    recorded: list[tuple[str, Any]],
) -> None:  # fmt: skip
    player = await factories.committed_player(uows, cash="50.00")
    await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "5.00"))
    officer = await console_support.officer(uows, "senior_officer")
    browser = Browser(api.app, clock)
    try:
        await browser.sign_in(officer)
        recorded.clear()
        for page in PAGES:
            answer = await browser.get(page.format(player=player))
            assert answer.status_code == 200, (page, answer.text)
    finally:
        await browser.aclose()
    selects = {
        (query, json.dumps(params, default=str, sort_keys=True)): params
        for query, params in recorded
        if query.lstrip().upper().startswith(("SELECT", "WITH"))
    }
    assert selects, "the pages ran no query at all?"
    owner = db_urls.owner.set(drivername="postgresql")
    conninfo = owner.render_as_string(hide_password=False)
    scanning: list[tuple[list[str], str]] = []
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await conn.execute("SET enable_seqscan = off")
        for (query, _), params in selects.items():
            plan = await (await conn.execute("EXPLAIN (FORMAT JSON) " + query, params)).fetchone()
            assert plan is not None
            found = list(seq_scans(plan[0][0]["Plan"]))
            if found:
                scanning.append((found, query))
    assert [(tables, " ".join(query.split())) for tables, query in scanning] == [], (
        "no index serves these statements"
    )
