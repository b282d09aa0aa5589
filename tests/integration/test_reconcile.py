"""Reconciliation against real payments: moved through the payments service, posted by the
ledger, read back in one query, and the command's exit status."""

import asyncio
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from app import payments_cli as payments_cli_module
from app.payments_cli import payments_cli
from app.runtime import with_uow_factory
from compliance import kyc
from core import sql
from core.database import DatabaseUrls
from core.money import parse_amount
from core.payments import service
from core.payments.reconcile import (
    Period,
    Report,
    StatementLine,
    against_ledger,
    our_side,
    read_statement,
)
from core.payments.service import Payment
from core.settings import Settings
from core.uow import UnitOfWork, UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, GATE, Clock

HEADER = "provider_ref,payment_id,kind,amount,currency,status,settled_at"
T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def new_provider() -> str:
    return f"psp-{uuid.uuid4().hex[:8]}"


async def deposit(
    uow: UnitOfWork, provider: str, amount: str = "12.50", *, confirm: bool = True
) -> Payment:
    """A deposit the provider took and, with `confirm`, confirmed by webhook."""
    player_id = await factories.player(uow)
    opened = await service.open_deposit(
        uow,
        player_id=player_id,
        amount=parse_amount(amount, "EUR"),
        method="card",
        routes=[provider],
        ctx=CTX,
        guard=GATE,
    )
    payment = await service.bind(
        uow,
        opened.id,
        provider=provider,
        provider_ref=f"ref-{opened.id.hex[:12]}",
        redirect_url=None,
        ctx=CTX,
    )
    if confirm:
        payment = await _apply(uow, payment, "confirmed")
    return payment


async def withdrawal(uow: UnitOfWork, provider: str, amount: str = "30.00") -> Payment:
    """A withdrawal of a verified player, approved, sent and confirmed by the provider."""
    player_id = await factories.player(uow, cash="100.00")
    await kyc.set_level(
        uow, player_id=player_id, level="verified", actor="officer", reason="test", ctx=CTX
    )
    opened = await service.open_withdrawal(
        uow,
        player_id=player_id,
        amount=parse_amount(amount, "EUR"),
        method="bank_transfer",
        destination="acct_tok_4242",
        routes=[provider],
        needs_review=False,
        ctx=CTX,
        guard=GATE,
    )
    payment = await service.bind(
        uow,
        opened.id,
        provider=provider,
        provider_ref=f"ref-{opened.id.hex[:12]}",
        redirect_url=None,
        ctx=CTX,
    )
    payment = await _apply(uow, payment, "sent")
    return await _apply(uow, payment, "confirmed")


async def _apply(uow: UnitOfWork, payment: Payment, event: Any) -> Payment:
    applied = await service.apply(
        uow, payment.id, event, cause="webhook", actor="psp", ctx=CTX, guard=GATE
    )
    assert applied.moved
    return applied.payment


def row(
    payment: Payment,
    *,
    status: str = "confirmed",
    amount: str | None = None,
    settled_at: datetime | None = T0,
) -> str:
    """The provider's statement line for one of our payments, as the PSP simulator writes it."""
    return ",".join(
        [
            payment.provider_ref or "",
            str(payment.id),
            payment.kind,
            amount or payment.amount.decimal_string,
            payment.amount.currency,
            status,
            settled_at.isoformat().replace("+00:00", "Z") if settled_at else "",
        ]
    )


def lines(*rows: str) -> list[StatementLine]:
    return list(read_statement(io.StringIO("\n".join([HEADER, *rows]) + "\n")))


async def reconciled(
    uows: UnitOfWorkFactory, provider: str, *rows: str, period: Period | None = None
) -> Report:
    async with uows() as uow:
        return await against_ledger(uow, provider=provider, statement=lines(*rows), period=period)


async def test_a_statement_that_agrees(uows: UnitOfWorkFactory) -> None:
    provider = new_provider()
    async with uows() as uow:
        paid_in = await deposit(uow, provider, "12.50")
        paid_out = await withdrawal(uow, provider, "30.00")
        await uow.commit()
    report = await reconciled(uows, provider, row(paid_in), row(paid_out))
    assert report.ok, report.as_dict()
    assert report.matched == 2
    totals = report.as_dict()["totals"]["EUR"]
    assert totals["statement"] == totals["ledger"] == {"deposits": "12.50", "withdrawals": "30.00"}


async def test_our_side_reads_the_clearing_account(uows: UnitOfWorkFactory) -> None:
    provider = new_provider()
    async with uows() as uow:
        paid_in = await deposit(uow, provider, "12.50")
        paid_out = await withdrawal(uow, provider, "30.00")
        waiting = await deposit(uow, provider, "5.00", confirm=False)
        ours = await our_side(uow, provider=provider, payment_ids=[waiting.id], provider_refs=[])
    found = {item.payment_id: item for item in ours}
    assert set(found) == {paid_in.id, paid_out.id, waiting.id}
    assert found[paid_in.id].ledger_minor == 1250  # taken out of clearing, read as +12.50
    assert found[paid_out.id].ledger_minor == 3000
    assert found[paid_out.id].confirmed_at is not None
    assert (found[waiting.id].state, found[waiting.id].ledger_minor) == ("initiated", None)


async def test_every_kind_of_discrepancy(uows: UnitOfWorkFactory) -> None:
    provider = new_provider()
    async with uows() as uow:
        matched = await deposit(uow, provider, "10.00")
        not_on_statement = await deposit(uow, provider, "11.00")
        not_confirmed_here = await deposit(uow, provider, "12.00", confirm=False)
        other_amount = await deposit(uow, provider, "13.00")
        elsewhere = await deposit(uow, new_provider(), "14.00")  # another provider's
        await uow.commit()
    stranger = uuid.uuid4()
    report = await reconciled(
        uows,
        provider,
        row(matched),
        row(not_confirmed_here),
        row(other_amount, amount="13.10"),
        f"ref-unknown,{stranger},deposit,9.99,EUR,confirmed,2026-11-26T12:00:00Z",
    )
    assert not report.ok
    assert report.matched == 1
    assert [(i.payment_id, [d.field for d in i.differences]) for i in report.missing] == [
        (not_confirmed_here.id, ["status"]),
        (stranger, ["payment"]),
    ]
    assert [i.payment_id for i in report.extra] == [not_on_statement.id]
    assert [(i.payment_id, [d.field for d in i.differences]) for i in report.mismatched] == [
        (other_amount.id, ["amount"])
    ]
    assert elsewhere.id not in {i.payment_id for i in report.extra}
    totals = report.as_dict()["totals"]["EUR"]
    assert totals["statement"]["deposits"] == "45.09"  # 10 + 12 + 13.10 + 9.99
    assert totals["ledger"]["deposits"] == "34.00"  # 10 + 11 + 13


async def test_a_statement_naming_another_providers_payment(uows: UnitOfWorkFactory) -> None:
    provider = new_provider()
    async with uows() as uow:
        theirs = await deposit(uow, new_provider())
        await uow.commit()
    report = await reconciled(uows, provider, row(theirs))
    assert [[d.field for d in i.differences] for i in report.mismatched] == [["provider"]]


async def test_a_period_of_settlement(uows: UnitOfWorkFactory, clock: Clock) -> None:
    provider = new_provider()
    made: list[Payment] = []
    for at in (T0 - timedelta(days=1), T0, T0 + timedelta(hours=23, minutes=59)):
        clock.now = at
        async with uows() as uow:
            made.append(await deposit(uow, provider))
            await uow.commit()
    yesterday, today, late = made
    day = Period(T0, T0 + timedelta(days=1))
    # The provider settled `late` just after midnight: compared all the same.
    statement = (
        row(yesterday, settled_at=T0 - timedelta(days=1)),
        row(today, settled_at=T0),
        row(late, settled_at=T0 + timedelta(days=1, minutes=1)),
    )
    report = await reconciled(uows, provider, *statement, period=day)
    assert (report.ok, report.matched) == (True, 2)
    # Without the statement's lines, today's payments are extra; yesterday's is not.
    report = await reconciled(uows, provider, period=day)
    assert {i.payment_id for i in report.extra} == {today.id, late.id}


async def test_our_side_is_one_query(
    uows: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = new_provider()
    async with uows() as uow:
        payments = [await deposit(uow, provider, f"{n}.00") for n in range(1, 6)]
        await uow.commit()
    statements: list[str] = []
    for name in ("one", "all_rows", "scalar", "run"):
        monkeypatch.setattr(sql, name, counting(getattr(sql, name), statements))
    report = await reconciled(uows, provider, *(row(p) for p in payments))
    assert report.matched == 5
    assert len(statements) == 1


def counting(
    function: Callable[..., Awaitable[Any]], seen: list[str]
) -> Callable[..., Awaitable[Any]]:
    async def counted(uow: UnitOfWork, query: str, params: Any) -> Any:
        seen.append(query)
        return await function(uow, query, params)

    return counted


# --- the command, end to end, on committed data ----------------------------------------------


def cli() -> typer.Typer:
    """As app/cli.py registers it."""
    root = typer.Typer()
    root.add_typer(payments_cli, name="payments")
    return root


@pytest.fixture
def cli_database(db_urls: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's database is the test session's (it runs in a thread with its own loop)."""

    def run_with_uow(settings: Settings, work: Callable[[UnitOfWorkFactory], Any]) -> Any:
        del settings
        return asyncio.run(with_uow_factory(db_urls.app, work))

    monkeypatch.setattr(payments_cli_module, "run_with_uow", run_with_uow)


@pytest.mark.commits
@pytest.mark.usefixtures("cli_database")
async def test_the_command_exits_0_then_1(
    committed_uows: UnitOfWorkFactory, tmp_path: Path
) -> None:
    provider = new_provider()
    async with committed_uows() as uow:
        paid_in = await deposit(uow, provider, "12.50")
        paid_out = await withdrawal(uow, provider, "30.00")
        await uow.commit()
    path = tmp_path / "statement.csv"
    path.write_text("\n".join([HEADER, row(paid_in), row(paid_out)]) + "\n")
    args = ["payments", "reconcile", "--psp", provider, "--statement", str(path)]

    result = await asyncio.to_thread(CliRunner().invoke, cli(), args)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(
        f"{provider}: 2 matched, 0 missing, 0 extra, 0 mismatched"
    )

    path.write_text("\n".join([HEADER, row(paid_in, amount="12.00")]) + "\n")
    result = await asyncio.to_thread(CliRunner().invoke, cli(), [*args, "--json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    assert [i["payment_id"] for i in document["mismatched"]] == [str(paid_in.id)]
    assert [i["payment_id"] for i in document["extra"]] == [str(paid_out.id)]

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)  # nothing confirmed since then
    later = ["--from", tomorrow.isoformat(), "--to", (tomorrow + timedelta(days=1)).isoformat()]
    path.write_text(HEADER + "\n")
    result = await asyncio.to_thread(CliRunner().invoke, cli(), [*args, *later])
    assert result.exit_code == 0, result.output
