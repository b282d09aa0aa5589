"""Appeals in the console (issue 15, slice 2): the queue by deadline with the SLA clock, an
appeal's page, the officer's steps, four-eyes for an AML or KYC overturn, the player told and
shown; every bad input refused with nothing changed; two officers at once make one decision."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from compliance import appeals, jurisdictions
from core import sql
from core.journal import EventContext
from core.uow import UnitOfWorkFactory
from tests import console_support, factories
from tests.conftest import Api, Clock
from tests.console_support import Browser
from tests.payments_support import use_fake_providers
from tests.player_support import Player

SETTINGS = jurisdictions.load()
MGA = "Malta Gaming Authority"


@pytest.fixture
async def present(api: Api, clock: Clock) -> Api:
    clock.freeze()  # what the test commits is dated now, never later
    return api


async def withdraw(api: Api, player: uuid.UUID, amount: str = "10.00") -> httpx.Response:
    body = {
        "player_id": str(player),
        "amount": amount,
        "currency": "EUR",
        "method": "bank_transfer",
        "destination": "acct_tok_4242",
    }
    return await api.operator.post("/v1/payments/withdrawals", body)


async def kyc_refusal(api: Api, uows: UnitOfWorkFactory) -> tuple[uuid.UUID, str]:
    use_fake_providers(api)
    player = await factories.committed_player(uows, cash="100.00")
    refused = await withdraw(api, player)
    assert refused.json()["error"]["code"] == "kyc_required", refused.text
    return player, str(refused.json()["error"]["details"]["decision_id"])


async def limit_refusal(api: Api, uows: UnitOfWorkFactory) -> tuple[uuid.UUID, str]:
    player = await factories.committed_player(uows, cash="100.00")
    limited = await api.operator.post(
        f"/v1/admin/players/{player}/limits", {"kind": "wager", "period": "24h", "amount": "1.00"}
    )
    assert limited.status_code == 200, limited.text
    bet = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "5.00"))
    assert bet.json()["error"]["code"] == "wager_limit_24h", bet.text
    return player, str(bet.json()["error"]["details"]["decision_id"])


async def appealed(api: Api, player: uuid.UUID, decision: str, words: str) -> tuple[Player, str]:
    """The player opens their page from a minted token and appeals."""
    browser = Player(api, player)
    await browser.open()
    filed = await browser.appeal(decision, words)
    assert filed.status_code == 303, filed.text
    return browser, filed.headers["location"].rsplit("/", 1)[1]


async def signed_in(api: Api, uows: UnitOfWorkFactory, clock: Clock, role: str) -> Browser:
    browser = Browser(api.app, clock)
    await browser.sign_in(await console_support.officer(uows, role))
    return browser


async def state_of(uows: UnitOfWorkFactory, appeal: str) -> dict[str, Any]:
    async with uows() as uow:
        row = await sql.one(
            uow,
            "SELECT state, outcome, acknowledged_at, clock_paused_at, resolution_due_at,"
            " (SELECT count(*) FROM appeal_transitions t WHERE t.appeal_id = a.id) AS steps,"
            " (SELECT count(*) FROM overrides o WHERE o.appeal_id = a.id) AS overrides"
            " FROM appeals a WHERE id = %(a)s",
            {"a": uuid.UUID(appeal)},
        )
    assert row is not None
    return row


async def events(uows: UnitOfWorkFactory, event: str, player: uuid.UUID) -> list[dict[str, Any]]:
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT envelope->'data' FROM journal_events WHERE event = :e AND player_id = :p"
                " ORDER BY id"
            ),
            {"e": event, "p": player},
        )
        return [row[0] for row in rows]


def text_of(page: httpx.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page.text).split())


async def four_eyes(
    api: Api, uows: UnitOfWorkFactory, clock: Clock, asker: Browser, appeal: str
) -> None:
    """The overturn's request: not by its asker, not by an officer, then by a senior officer."""
    async with uows() as uow:
        request_id = await sql.scalar(
            uow, "SELECT id FROM approval_requests WHERE subject = %(s)s", {"s": appeal}
        )
    own = await asker.submit(  # a senior officer, but their own request
        f"/console/approvals/{request_id}/approve", {"reason": "me"}, of="/console/approvals"
    )
    assert own.status_code == 403
    assert "Nobody decides their own request" in own.text
    colleague = await signed_in(api, uows, clock, "officer")
    not_senior = await colleague.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "ok"}, of="/console/approvals"
    )
    assert not_senior.status_code == 403
    assert (await state_of(uows, appeal))["state"] == "acknowledged"
    mlro = await signed_in(api, uows, clock, "senior_officer")
    approved = await mlro.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "agreed"}, of="/console/approvals"
    )
    assert approved.status_code == 303, approved.text
    await colleague.aclose()
    await mlro.aclose()


# -- the whole path ----------------------------------------------------------------------------


async def test_a_kyc_refusal_overturned_under_four_eyes_lets_the_withdrawal_through(
    present: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    api = present
    player, refusal = await kyc_refusal(api, uows)
    words = "My documents were sent last week; please check them again."
    browser, appeal = await appealed(api, player, refusal, words)
    page = f"/console/appeals/{appeal}"

    caseworker = await signed_in(api, uows, clock, "senior_officer")
    queue = await caseworker.get("/console/appeals")
    assert queue.status_code == 200
    assert f'data-appeal="{appeal}"' in queue.text
    assert 'href="/console/appeals"' in queue.text  # the menu offers it
    shown = await caseworker.get(page)
    assert shown.status_code == 200
    assert words not in shown.text  # sealed until revealed
    assert 'data-replay="same"' in shown.text  # the refusal replays to itself
    assert 'data-what-if="same"' in shown.text
    assert f'href="/console/players/{player}"' in shown.text
    assert (await caseworker.submit(f"{page}/acknowledge", {}, of=page)).status_code == 303
    revealed = await caseworker.submit(f"{page}/reveal", {}, of=page)
    assert revealed.status_code == 200
    assert words in revealed.text

    asked = await caseworker.submit(
        f"{page}/decide",
        {"outcome": "overturned", "remedy": "once", "reason": "Documents checked: in order."},
        of=page,
    )
    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == "/console/approvals"
    assert (await state_of(uows, appeal))["state"] == "acknowledged"  # not yet decided
    still = await withdraw(api, player)
    assert still.json()["error"]["code"] == "kyc_required"
    await four_eyes(api, uows, clock, caseworker, appeal)
    decided = await state_of(uows, appeal)
    assert (decided["state"], decided["outcome"], decided["overrides"]) == (
        "decided",
        "overturned",
        1,
    )

    passed = await withdraw(api, player)
    assert passed.status_code == 200, passed.text
    async with uows() as uow:
        facts = await sql.scalar(
            uow,
            "SELECT d.facts FROM payments y JOIN policy_decisions d ON d.id = y.decision_id"
            " WHERE y.id = %(id)s",
            {"id": uuid.UUID(passed.json()["payment_id"])},
        )
    assert f"of appeal {appeal}" in facts["overrides"]
    decided_event = (await events(uows, "appeal.decided", player))[0]
    assert decided_event["outcome"] == "overturned"
    assert decided_event["approved_by"] is not None
    assert decided_event["remedy"] == "once"
    assert [e["appeal_id"] for e in await events(uows, "override.used", player)] == [appeal]

    mine = await browser.page(f"/player/appeals/{appeal}")
    assert 'data-outcome="overturned"' in mine.text
    assert "Documents checked: in order." in mine.text
    assert "data-adr" not in mine.text
    home = await browser.page()
    assert 'data-notice="appeal.decided"' in home.text
    assert 'data-notice="appeal.acknowledged"' in home.text
    await caseworker.aclose()


async def test_an_appeal_upheld_after_more_information_gives_the_player_the_adr_body(
    present: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    api = present
    player, refusal = await limit_refusal(api, uows)
    browser, appeal = await appealed(api, player, refusal, "My limit was meant to be 100.")
    page = f"/console/appeals/{appeal}"
    officer = await signed_in(api, uows, clock, "officer")
    asked = await officer.submit(
        f"{page}/information", {"message": "When did you ask for the higher limit?"}, of=page
    )
    assert asked.status_code == 303, asked.text
    waiting = await state_of(uows, appeal)
    assert waiting["state"] == "info_requested"
    assert waiting["clock_paused_at"] is not None
    early = await officer.submit(
        f"{page}/decide", {"outcome": "upheld", "reason": "too early"}, of=page
    )
    assert early.status_code == 409  # it waits for the player

    mine = await browser.page(f"/player/appeals/{appeal}")
    assert "When did you ask for the higher limit?" in mine.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', mine.text)
    assert csrf
    answered = await browser.http.post(
        f"/player/appeals/{appeal}/answer",
        data={"csrf": csrf.group(1), "message": "Yesterday evening."},
        files={"document": ("", b"", "")},
    )
    assert answered.status_code == 303, answered.text
    assert (await state_of(uows, appeal))["state"] == "answered"
    assert (await events(uows, "appeal.answered", player))[0]["paused_s"] == 0

    upheld = await officer.submit(
        f"{page}/decide",
        {"outcome": "upheld", "reason": "The limit you set applied; the raise waits 24 hours."},
        of=page,
    )
    assert upheld.status_code == 303, upheld.text
    decided = await state_of(uows, appeal)
    assert (decided["outcome"], decided["overrides"]) == ("upheld", 0)
    shown = await browser.page(f"/player/appeals/{appeal}")
    assert 'data-outcome="upheld"' in shown.text
    assert "The limit you set applied" in shown.text
    assert MGA in shown.text  # the player is a Maltese player: the MGA's player support
    assert (await events(uows, "appeal.decided", player))[0]["adr_body"].startswith("The Malta")
    still = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "5.00"))
    assert still.json()["error"]["code"] == "wager_limit_24h"
    await officer.aclose()


# -- bad input -----------------------------------------------------------------------------------


async def test_every_bad_decision_is_refused_with_nothing_changed(
    present: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    api = present
    player, refusal = await limit_refusal(api, uows)
    _, appeal = await appealed(api, player, refusal, "Please look again.")
    page = f"/console/appeals/{appeal}"
    officer = await signed_in(api, uows, clock, "officer")
    before = await state_of(uows, appeal)

    async def refused(form: dict[str, str], status: int, words: str) -> None:
        answer = await officer.submit(f"{page}/decide", form, of=page)
        assert answer.status_code == status, answer.text
        assert words in text_of(answer)
        assert await state_of(uows, appeal) == before

    await refused({"outcome": "upheld", "reason": "  "}, 422, "write the reason")
    await refused({"outcome": "maybe", "reason": "x"}, 422, "upheld or overturned")
    await refused({"outcome": "overturned", "remedy": "pardon", "reason": "x"}, 422, "remedies")
    await refused(
        {"outcome": "overturned", "remedy": "kyc_verified", "reason": "x"}, 422, "KYC refusal"
    )
    await refused(
        {"outcome": "overturned", "remedy": "period", "days": "365", "reason": "x"}, 422, "1 to 90"
    )
    assert await events(uows, "appeal.decided", player) == []

    for role in ("auditor", "administrator", "dpo"):
        other = await signed_in(api, uows, clock, role)
        answer = await other.submit(
            f"{page}/decide", {"outcome": "upheld", "reason": "no"}, of="/console"
        )
        assert answer.status_code == 403, role
        assert "Your role does not allow this." in answer.text
        await other.aclose()
    administrator = await signed_in(api, uows, clock, "administrator")
    assert (await administrator.get("/console/appeals")).status_code == 403
    assert (await administrator.get(page)).status_code == 403
    await administrator.aclose()
    unknown = await officer.get(f"/console/appeals/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert (await officer.get("/console/appeals/not-an-id")).status_code == 404

    done = await officer.submit(f"{page}/decide", {"outcome": "upheld", "reason": "no"}, of=page)
    assert done.status_code == 303
    after = await state_of(uows, appeal)
    again = await officer.submit(
        f"{page}/decide", {"outcome": "overturned", "remedy": "once", "reason": "y"}, of=page
    )
    assert again.status_code == 409
    assert "decided or withdrawn" in text_of(again)
    ack = await officer.submit(f"{page}/acknowledge", {}, of=page)
    assert ack.status_code == 409
    assert await state_of(uows, appeal) == after
    await officer.aclose()


# -- the SLA clock ---------------------------------------------------------------------------


async def file_directly(uows: UnitOfWorkFactory, player: uuid.UUID, decision: str) -> uuid.UUID:
    """An appeal filed with a stand-in token (nothing sealed: the vault commits for real, and
    this test moves its clock into the future)."""
    async with uows() as uow:
        filing = await appeals.check_filing(
            uow, player_id=player, decision_id=uuid.UUID(decision), settings=SETTINGS
        )
        done = await appeals.file(
            uow, filing=filing, explanation_token=f"pii_{uuid.uuid4().hex}", document_tokens=[],
            settings=SETTINGS, notifier=appeals.Outbox(),
            ctx=EventContext(actor=f"player:{player}", trace_id="test"),
        )  # fmt: skip
        await uow.commit()
    return done.appeal_id


def row_of(queue: httpx.Response, appeal: uuid.UUID) -> str:
    found = re.search(rf'<tr data-appeal="{appeal}"[^>]*>.*?</tr>', queue.text, re.DOTALL)
    assert found, queue.text
    return found.group(0)


async def test_the_sla_clock_acknowledgement_pause_and_resolution_with_breaches_flagged(
    present: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    api = present
    filed_at = clock()
    player, refusal = await limit_refusal(api, uows)
    appeal = await file_directly(uows, player, refusal)
    ctx = EventContext(actor="officer:test", trace_id="test")

    async def queue_row() -> str:
        officer = await signed_in(api, uows, clock, "officer")  # sessions idle out in 15 minutes
        try:
            return row_of(await officer.get("/console/appeals"), appeal)
        finally:
            await officer.aclose()

    ack_due = filed_at.replace(microsecond=0) + SETTINGS.of("MT").appeal_ack_days * _DAY
    assert ack_due.strftime("%Y-%m-%d %H:%M") in await queue_row()
    assert "breach" not in await queue_row()
    clock.advance(days=5, seconds=1)  # the acknowledgement is overdue
    late = await queue_row()
    assert 'class="breach"' in late
    assert 'data-breach="ack"' in late
    async with uows() as uow:
        await appeals.acknowledge(uow, appeal_id=appeal, notifier=appeals.Outbox(), ctx=ctx)
        await uow.commit()
    assert 'data-breach="ack-late"' in await queue_row()  # a breach stays on record
    assert (await events(uows, "appeal.acknowledged", player))[0]["late"] is True

    async with uows() as uow:
        await appeals.request_info(
            uow, appeal_id=appeal, message_token=f"pii_{uuid.uuid4().hex}",
            notifier=appeals.Outbox(), ctx=ctx,
        )  # fmt: skip
        await uow.commit()
    resolution_due = filed_at + SETTINGS.of("MT").appeal_resolution_days * _DAY
    clock.advance(days=60)  # past the deadline, but the clock stands still for the player
    paused = await queue_row()
    assert "(the player)" in paused  # its next deadline is the player's
    assert 'data-breach="resolution"' not in paused
    async with uows() as uow:
        due = await appeals.answer(
            uow, player_id=player, appeal_id=appeal, message_token=f"pii_{uuid.uuid4().hex}",
            document_tokens=[], notifier=appeals.Outbox(), ctx=ctx,
        )  # fmt: skip
        await uow.commit()
    assert due == resolution_due + 60 * _DAY  # moved on by the 60 days it stood still
    assert 'data-breach="resolution"' not in await queue_row()
    clock.advance(days=51)  # 5 + 51 days of running clock: past the 56
    overdue = await queue_row()
    assert 'data-breach="resolution"' in overdue
    assert (await events(uows, "appeal.answered", player))[0]["paused_s"] == 60 * 86400


_DAY = __import__("datetime").timedelta(days=1)


# -- two officers at once ----------------------------------------------------------------------


@pytest.fixture
async def two_officers(
    committed_api: Api, committed_uows: UnitOfWorkFactory, clock: Clock
) -> AsyncIterator[tuple[Browser, Browser]]:
    clock.freeze()
    first = await signed_in(committed_api, committed_uows, clock, "officer")
    second = await signed_in(committed_api, committed_uows, clock, "officer")
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.mark.commits
async def test_two_officers_deciding_one_appeal_at_once_make_one_decision(
    committed_api: Api,
    committed_uows: UnitOfWorkFactory,
    two_officers: tuple[Browser, Browser],
) -> None:
    api = committed_api
    player, refusal = await limit_refusal(api, committed_uows)
    _, appeal = await appealed(api, player, refusal, "Please look again.")
    page = f"/console/appeals/{appeal}"
    first, second = two_officers
    forms = [
        await first.get(page),
        await second.get(page),
    ]
    tokens = [console_support.csrf_of(f) for f in forms]
    answers = await asyncio.gather(
        first.http.post(
            f"{page}/decide",
            data={"csrf": tokens[0], "outcome": "upheld", "reason": "It stands."},
        ),
        second.http.post(
            f"{page}/decide",
            data={
                "csrf": tokens[1],
                "outcome": "overturned",
                "remedy": "period",
                "days": "3",
                "reason": "Lift it.",
            },
        ),
    )
    assert sorted(a.status_code for a in answers) == [303, 409], [a.text for a in answers]
    decided = await state_of(committed_uows, appeal)
    assert decided["state"] == "decided"
    assert len(await events(committed_uows, "appeal.decided", player)) == 1
    assert decided["overrides"] == (1 if decided["outcome"] == "overturned" else 0)
    async with committed_uows() as uow:
        to_decided = await sql.scalar(
            uow,
            "SELECT count(*) FROM appeal_transitions WHERE appeal_id = %(a)s"
            " AND to_state = 'decided'",
            {"a": uuid.UUID(appeal)},
        )
    assert to_decided == 1
