"""The console's decisions, rulesets and audit pages as an officer meets them: find a refusal,
read why, replay it and try it under another version; see which ruleset decides where and what
changed between two; check that an entry is in the signed log, download the export, and see who
did what in the console. Each page is a console action the console ruleset decides."""

import ast
import dataclasses
import io
import re
import tarfile
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.console import audit_view, decision_search, ruleset_view
from audit import verify
from audit.note import Checkpoint, Signer, sign_checkpoint
from core import sql
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from policies import decisions, registry, ruleset
from tests import console_support, factories
from tests.audit_support import ORIGIN, SIGNER, catch_up
from tests.conftest import CONSOLE_RULESET, CTX, ROOT, RULESET, Api, Clock
from tests.console_support import Browser

REFUSED = "Your role does not allow this."


class OfficerBrowser(Browser):
    """A browser and the officer signed in with it."""

    officer: console_support.Officer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The app signs and checks checkpoints with the audit tests' key and origin."""
    return dataclasses.replace(settings, audit_signing_keys=SIGNER.to_string(), audit_origin=ORIGIN)


@pytest.fixture
async def sign_in(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> AsyncIterator[Callable[..., Any]]:
    """A browser signed in as a new officer of `role` (the clock stands still: one instant)."""
    clock.now = clock()
    opened: list[OfficerBrowser] = []

    async def signed_in(role: str) -> OfficerBrowser:
        browser = OfficerBrowser(api.app, clock)
        opened.append(browser)
        browser.officer = await console_support.officer(uows, role)
        await browser.sign_in(browser.officer)
        return browser

    yield signed_in
    for browser in opened:
        await browser.aclose()


async def refused_bet(api: Api, uows: UnitOfWorkFactory) -> tuple[uuid.UUID, str]:
    """A self-excluded player's stake, refused by the gate: (player, decision id)."""
    player = await factories.committed_player(uows, cash="100.00")
    excluded = await api.operator.post(
        f"/v1/admin/players/{player}/exclusions",
        {"kind": "self_exclusion", "until": None, "reason": "asked"},
    )
    assert excluded.status_code == 200, excluded.text
    bet = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "1.00"))
    assert bet.status_code == 403, bet.text
    return player, bet.json()["error"]["details"]["decision_id"]


def section(page: httpx.Response | str, start: str, end: str = "</section>") -> str:
    """The part of a page from `start` to the next `end`."""
    text = page if isinstance(page, str) else page.text
    assert start in text, text
    after = text[text.index(start) :]
    return after[: after.index(end)] if end in after else after


@pytest.mark.parametrize(
    ("role", "path", "action"),
    [
        ("administrator", "/console/decisions", "console.decisions.view"),
        ("administrator", "/console/decisions/{decision}", "console.decisions.view"),
        ("dpo", "/console/decisions/{decision}/replay", "console.decision.replay"),
        (
            "dpo",
            "/console/decisions/{decision}/what-if?version=2026-11-v1",
            "console.decision.replay",
        ),
        ("administrator", "/console/rulesets", "console.rulesets.view"),
        ("dpo", "/console/rulesets/compare?from=2026-11-v1&to=2026-11-v3", "console.rulesets.view"),
        ("administrator", "/console/audit?index=0", "console.audit.view"),
        ("officer", "/console/audit/export.tar.gz", "console.audit.export"),
        ("officer", "/console/activity", "console.activity.view"),
    ],
)
async def test_a_role_without_the_action_is_refused_and_the_refusal_recorded(
    api: Api,
    uows: UnitOfWorkFactory,
    sign_in: Callable[..., Any],
    role: str,
    path: str,
    action: str,
) -> None:
    _, decision = await refused_bet(api, uows)
    browser = await sign_in(role)
    answer = await browser.get(path.format(decision=decision))
    assert answer.status_code == 403
    assert REFUSED in answer.text
    shown = re.search(r"<dt>Decision</dt><dd><code>([0-9a-f-]{36})</code>", answer.text)
    assert shown, answer.text  # the refusal names its decision record
    async with uows() as uow:
        recorded = await sql.one(
            uow,
            "SELECT action, effect, reason_code, version, facts FROM policy_decisions"
            " WHERE id = %(id)s",
            {"id": uuid.UUID(shown.group(1))},
        )
    assert recorded is not None
    assert (recorded["action"], recorded["effect"], recorded["reason_code"]) == (
        action,
        "deny",
        "role_not_allowed",
    )
    assert recorded["facts"]["role"] == role
    assert recorded["version"] == CONSOLE_RULESET


async def test_the_menu_offers_the_pages_a_role_may_open(sign_in: Callable[..., Any]) -> None:
    def menu(page: httpx.Response) -> list[str]:
        nav = section(page, '<nav aria-label="Main">', "</nav>")
        return re.findall(r">([A-Z][a-z ]+)</a>", nav)

    pages = {"Decisions", "Rulesets", "Audit log", "Activity"}
    for role, offered in (
        ("officer", {"Decisions", "Rulesets", "Audit log"}),
        ("auditor", pages),
        ("administrator", {"Activity"}),
        ("dpo", {"Decisions"}),
    ):
        browser = await sign_in(role)
        assert pages & set(menu(await browser.get("/console"))) == offered, role


async def test_a_refusal_is_found_by_reason_rule_and_outcome_and_its_record_says_why(
    api: Api, uows: UnitOfWorkFactory, sign_in: Callable[..., Any]
) -> None:
    player, decision = await refused_bet(api, uows)
    browser = await sign_in("officer")
    for query in (
        "reason=self_excluded",
        f"reason=self_excluded&player={player}",
        "rule=deny-bet-place-self-excluded",
        f"outcome=deny&player={player}",
        f"action=bet.place&outcome=deny&version={RULESET}",
    ):
        found = await browser.get(f"/console/decisions?{query}")
        assert found.status_code == 200, found.text
        assert f"/console/decisions/{decision}" in found.text, query
    funding = section(
        await browser.get(f"/console/decisions?player={player}&outcome=allow"), "<h2>Found</h2>"
    )
    assert f"/console/decisions/{decision}" not in funding
    assert "<code>adjustment.credit</code>" in funding  # the factory's credit, allowed
    for query in (
        "reason=self_excluded&version=2026-11-v1",
        f"reason=timed_out&player={player}",
        f"rule=deny-bet-place-timed-out&player={player}",
        f"action=deposit&player={player}",
    ):
        elsewhere = await browser.get(f"/console/decisions?{query}")
        assert elsewhere.status_code == 200, elsewhere.text
        assert f"/console/decisions/{decision}" not in elsewhere.text, query

    record = await browser.get(f"/console/decisions/{decision}")
    assert record.status_code == 200
    assert "refused" in record.text
    assert "Your account is self-excluded" in record.text  # the reason in words
    assert "deny-bet-place-self-excluded" in record.text
    assert "r.sub.self_excluded == True" in record.text  # the rule's condition
    assert ruleset.content_hash(ruleset.RULESETS / RULESET) in record.text
    assert f'href="/console/players/{player}"' in record.text


async def test_replay_gives_the_same_answer_and_what_if_shows_where_another_version_differs(
    api: Api, uows: UnitOfWorkFactory, sign_in: Callable[..., Any]
) -> None:
    _, decision = await refused_bet(api, uows)
    browser = await sign_in("auditor")
    assert (await browser.get("/console")).status_code == 200  # a console decision too
    replayed = await browser.get(f"/console/decisions/{decision}/replay")
    assert replayed.status_code == 200
    assert "Same outcome: refused (self_excluded)." in replayed.text
    # v1 took a player with no date of birth on file for a minor (v2 fixed that)
    v1 = await browser.get(f"/console/decisions/{decision}/what-if?version=2026-11-v1")
    assert v1.status_code == 200
    assert "Different outcome: stored refused (self_excluded), under 2026-11-v1 refused" in (
        " ".join(v1.text.split())
    )
    assert "You must be 18 or older" in v1.text
    # a money ruleset has no rule for a console action
    console = await _console_decision(uows)
    cannot = await browser.get(f"/console/decisions/{console}/what-if?version=2026-11-v3")
    assert cannot.status_code == 200
    assert "2026-11-v3 cannot decide on what was recorded" in cannot.text
    assert "has no rule for &#39;console.home.view&#39;" in cannot.text

    # a stake by a player with no date of birth on file, recorded with the facts of both
    v3 = registry.engine_for("2026-11-v3", ruleset.content_hash(ruleset.RULESETS / "2026-11-v3"))
    facts: dict[str, Any] = factories.policy_facts(age_years=-1) | {
        "due_diligence_total_eur_minor": 0,
        "due_diligence_threshold_eur_minor": 200_000,
        "due_diligence_amount_eur_minor": 100,
    }
    async with uows() as uow:
        allowed = decisions.evaluate(
            v3, action="bet.place", facts=facts, player_id=None, at=uow.now
        )
        await decisions.store(uow, allowed, CTX)
        await uow.commit()
    assert allowed.decision.allowed
    tried = await browser.get(f"/console/decisions/{allowed.id}/what-if?version=2026-11-v1")
    assert "Different outcome: stored allowed (ok), under 2026-11-v1 refused (underage)." in (
        " ".join(tried.text.split())
    )
    same = await browser.get(f"/console/decisions/{allowed.id}/what-if?version=2026-11-v2")
    assert "Same outcome: allowed (ok)." in same.text

    for path, status in (
        (f"/console/decisions/{allowed.id}/what-if?version=2027-01-v9", 404),
        (f"/console/decisions/{allowed.id}/what-if?version=../2026-11-v1", 404),
        ("/console/decisions/not-a-decision", 404),
        (f"/console/decisions/{uuid.uuid4()}/replay", 404),
    ):
        answer = await browser.get(path)
        assert answer.status_code == status, path
        assert "Back to the console" in answer.text


async def _console_decision(uows: UnitOfWorkFactory) -> uuid.UUID:
    async with uows() as uow:
        found = await sql.scalar(
            uow,
            "SELECT id FROM policy_decisions WHERE action = 'console.home.view'"
            " ORDER BY decided_at DESC, id DESC LIMIT 1",
            {},
        )
    assert isinstance(found, uuid.UUID)
    return found


async def test_pages_of_a_search_follow_each_other_without_gaps_or_repeats(
    api: Api, uows: UnitOfWorkFactory, sign_in: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decision_search, "PAGE", 2)
    player = await factories.committed_player(uows, cash="100.00")
    for _ in range(4):  # stakes of one instant: the id orders them
        bet = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "1.00"))
        assert bet.status_code == 200
    async with uows() as uow:
        ids = [
            str(row["id"])
            for row in await sql.all_rows(
                uow,
                "SELECT id FROM policy_decisions WHERE player_id = %(p)s"
                " ORDER BY decided_at DESC, id DESC",
                {"p": player},
            )
        ]
    assert len(ids) == 5  # four stakes and the factory's credit
    browser = await sign_in("regulator")
    seen: list[str] = []
    link: str | None = f"/console/decisions?player={player}"
    while link:
        page = await browser.get(link.replace("&amp;", "&"))
        assert page.status_code == 200, page.text
        seen += re.findall(r'href="/console/decisions/([0-9a-f-]{36})"', page.text)
        older = re.search(r'<a href="([^"]+)" rel="next">Older decisions</a>', page.text)
        link = older.group(1) if older else None
    assert seen == ids


async def test_a_search_that_cannot_be_made_is_a_422_that_says_why(
    sign_in: Callable[..., Any],
) -> None:
    browser = await sign_in("officer")
    for query, says in (
        ("player=not-a-player", "A player id is a UUID"),
        ("version=2027-01-v9", "No ruleset version &#39;2027-01-v9&#39;."),
        ("rule=no-such-rule", "No ruleset on file has a rule"),
        ("from=2026-12-02T10:00&to=2026-12-01T10:00", "The start of the window is after its end."),
        ("from=2026-10-01T00:00&to=2026-12-01T00:00", "A search covers at most 31 days"),
        ("from=yesterday", "The start is a date and time"),
        ("before=garbage", "That page link is damaged"),
    ):
        answer = await browser.get(f"/console/decisions?{query}")
        assert answer.status_code == 422, query
        assert says in answer.text, (query, answer.text)


async def test_every_search_walks_an_index(owner_engine: AsyncEngine) -> None:
    """Each kind of search is served by the index meant for it: with the time index gone and
    sequential scans off, the planner has that index or a full scan to choose from."""
    known = ruleset_view.vocabulary()
    window = decision_search.parse(decision_search.Form(), now=datetime.now(UTC), known=known)
    shapes = {
        "ix_policy_decisions_player_id_decided_at": {"player_id": uuid.uuid4()},
        "ix_policy_decisions_action_decided_at": {"action": "withdrawal.pay_out"},
        "ix_policy_decisions_refused_decided_at": {"reason_code": "self_excluded"},
    }
    shapes_too = [
        ("ix_policy_decisions_action_decided_at", {"rule_id": "allow-withdrawal-pay-out"}),
        ("ix_policy_decisions_refused_decided_at", {"effect": "deny"}),
        ("ix_policy_decisions_refused_decided_at", {"rule_id": "deny-bet-place-self-excluded"}),
    ]
    cursor = (window.until, uuid.uuid4())
    async with owner_engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")  # fail, never hang
            await conn.exec_driver_sql("DROP INDEX ix_policy_decisions_decided_at")
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            for index, filters in [*shapes.items(), *shapes_too]:
                for before in (None, cursor):
                    search = dataclasses.replace(window, before=before, **filters)
                    query, params = decision_search.statement(search, known)
                    plan = await _plan(conn, query, params)
                    assert index in plan, (filters, plan)
                    assert "Seq Scan" not in plan, (filters, plan)
            activity = await _plan(
                conn,
                audit_view._NEWEST_OF_EACH,
                {"events": list(audit_view.CONSOLE_EVENTS), "before": 10**12, "n": 51},
            )
            assert "ix_journal_events_event_id" in activity, activity
            assert "Seq Scan on journal_events" not in activity, activity
        finally:
            await transaction.rollback()


async def _plan(conn: Any, query: str, params: dict[str, Any]) -> str:
    rows = (await conn.exec_driver_sql("EXPLAIN " + query, params)).all()
    return "\n".join(row[0] for row in rows)


async def test_which_ruleset_decides_where_and_what_changed_between_two(
    sign_in: Callable[..., Any],
) -> None:
    browser = await sign_in("senior_officer")
    listed = await browser.get("/console/rulesets")
    assert listed.status_code == 200
    active = section(listed, "<h2>Active where</h2>")
    assert RULESET in active
    assert CONSOLE_RULESET in active
    assert "match the activation's hash" in active
    assert "changed since activation" not in active
    for version in ruleset.available():
        assert f'href="/console/rulesets/{version}"' in listed.text

    changed = await browser.get("/console/rulesets/compare?from=2026-11-v1&to=2026-11-v3")
    assert changed.status_code == 200
    rules = section(changed, "<h2>Rules</h2>")
    added = section(changed, "Only in 2026-11-v3 (added)", "</table>")
    assert "deny-withdrawal-destination-denied" in added
    assert "allow-withdrawal-pay-out" in added
    assert "deny-withdrawal-destination-denied" not in rules.split("(added)")[0]
    underage = section(changed, "<code>deny-bet-place-underage</code>", "</tr>")
    assert "r.sub.age_years &lt; 18" in underage
    facts = section(changed, "<h2>Facts</h2>")
    assert "due_diligence_reached" in section(facts, "(removed)", "</table>")
    assert "destination_denied" in section(facts, "(added)", "</table>")

    alike = await browser.get("/console/rulesets/compare?from=2026-11-v3&to=2026-11-v3")
    assert "The two versions decide alike" in alike.text
    one = await browser.get("/console/rulesets/2026-11-v3")
    assert "deny-withdrawal-destination-denied" in one.text
    for path in (
        "/console/rulesets/compare?from=2026-11-v1&to=2027-01-v9",
        "/console/rulesets/2027-01-v9",
        "/console/rulesets/compare?from=..&to=2026-11-v3",
    ):
        missing = await browser.get(path)
        assert missing.status_code == 404, path
        assert "No ruleset version" in missing.text


async def test_an_entry_is_proven_into_the_signed_checkpoint_and_an_index_beyond_it_refused(
    uows: UnitOfWorkFactory, sign_in: Callable[..., Any]
) -> None:
    published = (await catch_up(uows, force=True)).published
    assert published is not None
    size = published.checkpoint.size
    browser = await sign_in("auditor")
    shown = await browser.get("/console/audit")
    assert shown.status_code == 200
    assert f"{size} entries" in shown.text
    assert "verified</span> with test.pitwarden.example/audit" in shown.text

    checked = await browser.get(f"/console/audit?index={size - 1}")
    assert checked.status_code == 200
    assert f"Verified: entry {size - 1} is in the tree of {size} entries" in checked.text
    for index, says in (
        (str(size), f"numbered 0 to {size - 1}"),
        ("-1", "a whole number from 0"),
        ("one", "a whole number from 0"),
        ("9" * 30, "a whole number from 0"),
    ):
        refused = await browser.get(f"/console/audit?index={index}")
        assert refused.status_code == 422, index
        assert says in refused.text

    # a checkpoint signed by the log's key over a root the entries do not lead to
    forged = Checkpoint(ORIGIN, size, b"\x07" * 32, time=published.checkpoint.time)
    async with uows() as uow:
        await sql.run(
            uow,
            "INSERT INTO audit_checkpoints (tree_size, root_hash, published_at, note)"
            " VALUES (%(size)s, %(root)s, %(at)s, %(note)s)",
            {
                "size": size,
                "root": forged.root,
                "at": published.checkpoint.time,
                "note": sign_checkpoint(forged, [SIGNER]),
            },
        )
        await uow.commit()
    disproved = await browser.get("/console/audit?index=0")
    assert "Not verified: inclusion proof does not lead to the root" in disproved.text

    # one signed by a key the log does not hold
    stranger = Signer.generate(ORIGIN)
    async with uows() as uow:
        await sql.run(
            uow,
            "INSERT INTO audit_checkpoints (tree_size, root_hash, published_at, note)"
            " VALUES (%(size)s, %(root)s, %(at)s, %(note)s)",
            {
                "size": size,
                "root": published.checkpoint.root,
                "at": published.checkpoint.time,
                "note": sign_checkpoint(published.checkpoint, [stranger]),
            },
        )
        await uow.commit()
    unsigned = await browser.get("/console/audit?index=0")
    assert unsigned.status_code == 409
    assert "does not verify: no trusted key signed the note" in unsigned.text


async def test_the_export_downloads_and_verifies_offline(
    uows: UnitOfWorkFactory, sign_in: Callable[..., Any], tmp_path: Path
) -> None:
    size = (await catch_up(uows, force=True)).published.checkpoint.size  # type: ignore[union-attr]
    browser = await sign_in("regulator")
    assert "Download the export" in (await browser.get("/console/audit")).text
    before = _exports_in_progress()
    download = await browser.get("/console/audit/export.tar.gz")
    assert _exports_in_progress() == before  # its working folder is gone
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/gzip"
    name = f"pitwarden-audit-{size}"
    assert f'filename="{name}.tar.gz"' in download.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
        archive.extractall(tmp_path, filter="data")
    entries = (tmp_path / name / "entries.jsonl").read_bytes().splitlines()
    assert len(entries) == size
    report = verify.verify_export(tmp_path / name, [SIGNER.verifier()])
    assert report.ok, report.message
    assert report.size == size


def _exports_in_progress() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("pitwarden-export-*"))


async def test_the_activity_page_shows_who_did_what_in_the_console(
    uows: UnitOfWorkFactory, sign_in: Callable[..., Any]
) -> None:
    officer = await sign_in("officer")
    await officer.get("/console/decisions")
    refused = await officer.http.post("/console/sign-out", data={"csrf": "forged"})
    assert refused.status_code == 403
    auditor = await sign_in("auditor")
    page = await auditor.get("/console/activity")
    assert page.status_code == 200
    rows = section(page, "<tbody>", "</tbody>").split("<tr>")[1:]
    sign_in_row = next(r for r in rows if officer.officer.username in r and "signed in" in r)
    assert "signed in (totp)" in sign_in_row
    async with uows() as uow:
        session = await sql.scalar(
            uow,
            "SELECT envelope->>'session_id' FROM journal_events WHERE event = 'console.signed_in'"
            " AND envelope->>'actor' = %(a)s",
            {"a": f"officer:{await _officer_id(uows, officer.officer.username)}"},
        )
    assert session in sign_in_row
    viewed = next(
        r for r in rows if "console.decisions.view" in r and officer.officer.username in r
    )
    assert "allowed" in viewed
    assert re.search(r'href="/console/decisions/[0-9a-f-]{36}"', viewed)
    assert any("form refused without this session&#39;s token" in r for r in rows)
    assert "127.0.0.1" not in page.text  # addresses are not shown
    assert rows.index(sign_in_row) > rows.index(viewed)  # newest first
    damaged = await auditor.get("/console/activity?before=yesterday")
    assert damaged.status_code == 422


async def _officer_id(uows: UnitOfWorkFactory, username: str) -> uuid.UUID:
    async with uows() as uow:
        found = await sql.scalar(
            uow, "SELECT id FROM officers WHERE username = %(u)s", {"u": username}
        )
    assert isinstance(found, uuid.UUID)
    return found


def test_the_activity_page_reads_every_event_the_console_journals() -> None:
    journaled = set()
    for path in (ROOT / "app" / "console").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and len(node.args) >= 2  # journal.record(uow, event, ...)
                and isinstance(node.args[1], ast.Constant)
            ):
                journaled.add(node.args[1].value)
    assert journaled
    assert journaled <= set(audit_view.CONSOLE_EVENTS)
