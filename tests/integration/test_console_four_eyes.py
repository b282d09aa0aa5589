"""Four-eyes in the console: a protection is added by one officer at once, lifted only when a
second officer with the right role approves a request, never their own, within 24 hours."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from compliance import kyc
from core import sql
from core.uow import UnitOfWorkFactory
from policies import killswitch, registry
from tests import console_support, factories
from tests.conftest import RULESET, Api, Clock
from tests.console_support import Browser
from tests.payments_support import journal, use_fake_providers


@pytest.fixture
async def two(api: Api, clock: Clock) -> AsyncIterator[tuple[Browser, Browser]]:
    clock.freeze()
    first, second = Browser(api.app, clock), Browser(api.app, clock)
    yield first, second
    await first.aclose()
    await second.aclose()


async def zone_state(uows: UnitOfWorkFactory, zone: str) -> killswitch.Switch | None:
    async with uows() as uow:
        return (await killswitch.states(uow)).get(zone)


async def open_request_id(uows: UnitOfWorkFactory, subject: str) -> str:
    async with uows() as uow:
        found = await sql.scalar(
            uow,
            "SELECT id FROM approval_requests WHERE subject = %(s)s AND decided_at IS NULL"
            " ORDER BY requested_at DESC LIMIT 1",
            {"s": subject},
        )
    assert found is not None
    return str(found)


async def test_a_kill_switch_goes_off_at_once_and_back_on_with_a_second_senior_officer(
    two: tuple[Browser, Browser], uows: UnitOfWorkFactory
) -> None:
    alice, bob = two
    first = await console_support.officer(uows, "senior_officer")
    second = await console_support.officer(uows, "senior_officer")
    await alice.sign_in(first)
    await bob.sign_in(second)
    off = await alice.submit(
        "/console/kill-switches/withdrawal/off", {"reason": "provider incident"},
        of="/console/kill-switches",
    )  # fmt: skip
    assert off.headers["location"] == "/console/kill-switches"
    state = await zone_state(uows, "withdrawal")
    assert state is not None
    assert state.off

    asked = await alice.submit(
        "/console/kill-switches/withdrawal/on", {"reason": "incident over"},
        of="/console/kill-switches",
    )  # fmt: skip
    assert asked.headers["location"] == "/console/approvals"
    mine = await alice.get("/console/approvals")
    assert "your request: another officer decides" in mine.text
    request_id = await open_request_id(uows, "withdrawal")
    own = await alice.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "me"}, of="/console/approvals"
    )
    assert own.status_code == 403
    assert "Nobody decides their own request" in own.text
    assert (await zone_state(uows, "withdrawal")).off  # type: ignore[union-attr]

    approved = await bob.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "checked with the PSP"},
        of="/console/approvals",
    )  # fmt: skip
    assert approved.headers["location"] == "/console/approvals"
    state = await zone_state(uows, "withdrawal")
    assert state is not None
    assert not state.off
    assert " approved by officer:" in state.set_by  # both names on the record
    again = await bob.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "twice"}, of="/console/approvals"
    )
    assert again.status_code == 409
    assert "decided already or has expired" in again.text


async def test_clearing_an_aml_hold_needs_a_senior_officer_in_24_hours(
    api: Api, two: tuple[Browser, Browser], uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player = await factories.committed_player(uows)
    page = f"/console/players/{player}"
    caseworker, mlro = two
    officer = await console_support.officer(uows, "officer")
    senior = await console_support.officer(uows, "senior_officer")
    await caseworker.sign_in(officer)
    held = await caseworker.submit(f"{page}/aml-hold", {"reason": "source of funds"}, of=page)
    assert held.headers["location"] == page
    assert "on hold" in (await caseworker.get(page)).text
    await caseworker.submit(f"{page}/aml-hold/clear", {"reason": "documents received"}, of=page)
    request_id = await open_request_id(uows, str(player))
    colleague = await console_support.officer(uows, "officer")
    other = Browser(api.app, clock)
    try:
        await other.sign_in(colleague)
        not_senior = await other.submit(
            f"/console/approvals/{request_id}/approve", {"reason": "ok"}, of="/console/approvals"
        )
        assert not_senior.status_code == 403
        assert "Your role does not allow this." in not_senior.text
    finally:
        await other.aclose()

    clock.advance(hours=24)
    await mlro.sign_in(senior)
    late = await mlro.http.post(
        f"/console/approvals/{request_id}/approve",
        data={"reason": "late", "csrf": console_support.csrf_of(await mlro.get("/console"))},
    )
    assert late.status_code == 409
    assert "expired" in late.text
    async with uows() as uow:
        assert (await kyc.standing(uow, player)).aml_hold

    await caseworker.sign_in(officer)
    await caseworker.submit(f"{page}/aml-hold/clear", {"reason": "documents checked"}, of=page)
    request_id = await open_request_id(uows, str(player))
    await mlro.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "verified"}, of="/console/approvals"
    )
    async with uows() as uow:
        assert not (await kyc.standing(uow, player)).aml_hold


async def test_postgresql_refuses_deciding_ones_own_request_or_deciding_twice(
    app_engine: AsyncEngine, committed_uows: UnitOfWorkFactory
) -> None:
    asker = await console_support.officer(committed_uows, "senior_officer")
    async with app_engine.connect() as conn:
        officer = await conn.scalar(
            sa.text("SELECT id FROM officers WHERE username = :u"), {"u": asker.username}
        )
        request_id = uuid.uuid4()
        now = datetime.now(UTC)
        await conn.execute(
            sa.text(
                "INSERT INTO approval_requests (id, kind, subject, payload, reason, requested_by,"
                " requested_at, expires_at) VALUES (:id, 'killswitch_on', 'bet', '{}', 'r', :o,"
                " :now, :until)"
            ),
            {"id": request_id, "o": officer, "now": now, "until": now + timedelta(hours=24)},
        )
        own = sa.text(
            "UPDATE approval_requests SET decided_by = requested_by, decided_at = :now,"
            " outcome = 'approved' WHERE id = :id"
        )
        with pytest.raises(sa.exc.IntegrityError, match="not_own"):
            async with conn.begin_nested():
                await conn.execute(own, {"now": now, "id": request_id})
        other = await console_support.officer(committed_uows, "senior_officer")
        second = await conn.scalar(
            sa.text("SELECT id FROM officers WHERE username = :u"), {"u": other.username}
        )
        decide = sa.text(
            "UPDATE approval_requests SET decided_by = :by, decided_at = :now,"
            " outcome = :o WHERE id = :id"
        )
        await conn.execute(decide, {"by": second, "now": now, "o": "rejected", "id": request_id})
        with pytest.raises(sa.exc.DBAPIError, match="decided already") as raised:
            await conn.execute(
                decide, {"by": second, "now": now, "o": "approved", "id": request_id}
            )
        assert isinstance(raised.value.orig, psycopg.errors.RaiseException)
        await conn.rollback()


async def test_a_large_withdrawal_is_rejected_by_one_officer_or_approved_by_two(
    api: Api, two: tuple[Browser, Browser], uows: UnitOfWorkFactory
) -> None:
    fastpay, _ = use_fake_providers(api)
    player = await factories.committed_player(uows, cash="7000.00")
    verified = await api.operator.post(
        f"/v1/admin/players/{player}/kyc",
        {"level": "verified", "reason": "checked"},
    )
    assert verified.status_code == 200, verified.text
    large, other = [
        (
            await api.operator.post(
                "/v1/payments/withdrawals",
                {"player_id": str(player), "amount": amount, "currency": "EUR",
                 "method": "bank_transfer", "destination": "acct_tok_4242"},
            )
        ).json()
        for amount in ("2500.00", "3000.00")
    ]  # fmt: skip
    assert large["state"] == other["state"] == "requested"
    first, second = two
    asker = await console_support.officer(uows, "officer")
    approver = await console_support.officer(uows, "officer")
    await first.sign_in(asker)
    await second.sign_in(approver)
    queue = await first.get("/console/payments")
    assert "2500.00 EUR" in queue.text
    assert "3000.00 EUR" in queue.text

    rejected = await first.submit(
        f"/console/payments/{other['payment_id']}/reject", {"reason": "unknown destination"},
        of="/console/payments",
    )  # fmt: skip
    assert rejected.headers["location"] == "/console/payments"
    assert "3000.00 EUR" not in (await first.get("/console/payments")).text

    asked = await first.submit(
        f"/console/payments/{large['payment_id']}/approve", {"reason": "source of funds ok"},
        of="/console/payments",
    )  # fmt: skip
    assert asked.headers["location"] == "/console/approvals"
    assert uuid.UUID(large["payment_id"]) not in fastpay.orders  # nothing leaves on one word
    request_id = await open_request_id(uows, large["payment_id"])
    approved = await second.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "agreed"}, of="/console/approvals"
    )
    assert approved.headers["location"] == "/console/approvals"
    assert uuid.UUID(large["payment_id"]) in fastpay.orders  # sent after the approval's commit
    shown = (await api.operator.get(f"/v1/payments/{large['payment_id']}")).json()
    assert shown["state"] == "sent"
    reviewed = await journal(uows, "payment.reviewed", large["payment_id"])
    assert " approved by officer:" in reviewed[0]["officer"]


async def test_a_ruleset_is_activated_only_when_a_second_senior_officer_approves(
    api: Api, two: tuple[Browser, Browser], uows: UnitOfWorkFactory
) -> None:
    asker, approver = two
    first = await console_support.officer(uows, "senior_officer")
    second = await console_support.officer(uows, "senior_officer")
    await asker.sign_in(first)
    await approver.sign_in(second)
    page = "/console/rulesets/2026-11-v2"
    asked = await asker.submit(
        f"{page}/activate", {"jurisdiction": "SE", "reason": "try v2 in Sweden"}, of=page
    )
    assert asked.headers["location"] == "/console/approvals"
    async with uows() as uow:
        assert (await registry.active(uow, "SE")).version == RULESET  # not yet
    request_id = await open_request_id(uows, "2026-11-v2@SE")
    own = await asker.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "me"}, of="/console/approvals"
    )
    assert own.status_code == 403
    approved = await approver.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "agreed"}, of="/console/approvals"
    )
    assert approved.headers["location"] == "/console/approvals"
    async with uows() as uow:
        active = await registry.active(uow, "SE")
    assert active.version == "2026-11-v2"
    money_for_console = await asker.submit(
        f"{page}/activate", {"jurisdiction": "console", "reason": "wrong kind"}, of=page
    )
    request_id = await open_request_id(uows, "2026-11-v2@console")
    refused = await approver.submit(
        f"/console/approvals/{request_id}/approve", {"reason": "ok"}, of="/console/approvals"
    )
    assert money_for_console.headers["location"] == "/console/approvals"
    assert refused.status_code == 422
    assert "money ruleset" in refused.text
