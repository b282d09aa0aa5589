"""`pitwarden payments`: reconcile a payment provider's statement against our ledger; expire
abandoned deposits; send a stopped payment again.

Registered by app/cli.py as `cli.add_typer(payments_cli, name="payments")`. This module does
not import app.cli (that would be a circular import): it opens the database as its commands
do, through app.runtime.
"""

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import httpx
import typer

from app.gating import PAYMENTS_OFF, build_cashier, build_gate
from app.runtime import run_with_uow, run_with_vault, vault_keys
from compliance.cashier import Cashier
from core.errors import DomainError
from core.journal import EventContext
from core.money import format_minor
from core.payments import reconcile
from core.payments.reconcile import Item, Period, Report, StatementError, StatementLine
from core.settings import Settings
from core.uow import UnitOfWorkFactory

T = TypeVar("T")
payments_cli = typer.Typer(
    help="Payments through payment service providers: reconciliation, expiry, resubmission.",
    no_args_is_help=True,
)

MALFORMED = 2  # a statement we cannot read; 1 is kept for "read, and something is off"


@payments_cli.command("reconcile")
def reconcile_command(
    psp: Annotated[str, typer.Option("--psp", help="The provider's code (routes, accounts)")],
    statement: Annotated[Path, typer.Option("--statement", help="The provider's CSV statement")],
    start: Annotated[
        str | None,
        typer.Option("--from", help="Settled at or after: RFC 3339, or a date (00:00 UTC)"),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Settled before: RFC 3339, or a date (00:00 UTC)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document for machines")] = False,
) -> None:
    """Match a provider's statement against our payments and ledger: missing, extra and
    mismatched items. Exit 0 when all match, 1 when anything is off, 2 on a malformed statement.
    """
    period = Period(_instant(start, "--from"), _instant(end, "--to"))
    if period.start and period.end and period.start >= period.end:
        raise typer.BadParameter("--from must be before --to")
    lines = read(statement)

    async def work(uows: UnitOfWorkFactory) -> Report:
        async with uows() as uow:
            return await reconcile.against_ledger(uow, provider=psp, statement=lines, period=period)

    report = run_with_uow(Settings.from_env(), work)
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else render(report))
    if not report.ok:
        raise typer.Exit(1)


def read(path: Path) -> list[StatementLine]:
    """The whole statement, parsed line by line as it is read; exit 2 on the first bad line."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as rows:
            return list(reconcile.read_statement(rows))
    except StatementError as error:
        problem = str(error)
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 (byte {error.start})"
    except OSError as error:
        problem = f"cannot read it: {error.strerror}"
    typer.echo(f"{path}: {problem}; nothing was reconciled", err=True)
    raise typer.Exit(MALFORMED)


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        if len(text) == len("YYYY-MM-DD"):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{option} {text!r} is not RFC 3339 or a date") from None
    if at.tzinfo is None:
        raise typer.BadParameter(f"{option} {text!r} needs a UTC offset, e.g. Z")
    return at


def render(report: Report) -> str:
    """Readable tables: one per class of finding, the totals, and a summary line last."""
    out: list[str] = []
    for title, items in (
        ("missing: settled by the provider, not by us", report.missing),
        ("extra: settled by us, not by the provider", report.extra),
        ("mismatched", report.mismatched),
    ):
        if items:
            out += [f"{title} ({len(items)})", *_table(_ITEM_HEADER, [_row(i) for i in items]), ""]
    totals = [
        (side, currency, format_minor(t.deposits, currency), format_minor(t.withdrawals, currency))
        for side, by_currency in (
            ("statement", report.statement_totals),
            ("ledger", report.ledger_totals),
        )
        for currency, t in sorted(by_currency.items())
    ]
    if totals:
        out += [*_table(("settled", "currency", "deposits", "withdrawals"), totals), ""]
    counts = (
        f"{report.matched} matched, {len(report.missing)} missing, {len(report.extra)} extra,"
        f" {len(report.mismatched)} mismatched"
    )
    out.append(f"{report.provider}: {counts}" + ("" if report.ok else " - NOT RECONCILED"))
    return "\n".join(out)


_ITEM_HEADER = (
    "line",
    "payment_id",
    "provider_ref",
    "kind",
    "amount",
    "statement",
    "ours",
    "differences",
)


def _row(item: Item) -> tuple[str, ...]:
    line, ours = item.statement, item.ours
    either = line or ours
    assert either is not None  # noqa: S101 - an item has at least one side
    return (
        str(line.line) if line else "-",
        str(item.payment_id),
        (line.provider_ref if line else None) or (ours.provider_ref if ours else None) or "-",
        either.kind,
        str(either.amount),
        line.status if line else "-",
        ours.state if ours else "-",
        "; ".join(f"{d.field}: {d.detail}" for d in item.differences),
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns; the last one runs free."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        fixed = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        return f"  {fixed}  {cells[-1]}".rstrip()

    return [line(header), *(line(row) for row in rows)]


def _with_cashier(settings: Settings, work: Callable[[Cashier], Awaitable[T]]) -> T:
    """Run `work` with the cashier the server builds (gate, providers of the payments config)."""
    if settings.payments_config is None:
        typer.echo(PAYMENTS_OFF, err=True)
        raise typer.Exit(2)

    async def run(uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory) -> T:
        async with httpx.AsyncClient() as client:
            gate = build_gate(settings, vault_uows, vault_keys(settings))
            cashier = build_cashier(settings, uows, gate, client)
            assert cashier is not None  # noqa: S101 - a payments config is set (checked above)
            return await work(cashier)

    return run_with_vault(settings, run)


@payments_cli.command("expire")
def expire_command(
    older_than: Annotated[
        int, typer.Option("--older-than", min=1, help="Minutes since the deposit was initiated")
    ] = 60,
) -> None:
    """End deposits still initiated or pending after --older-than minutes (the player left the
    provider's payment page): they no longer count towards the deposit limits."""
    ctx = EventContext(actor="cli", trace_id="cli-payments-expire")

    async def work(cashier: Cashier) -> int:
        return await cashier.expire(older_than=timedelta(minutes=older_than), ctx=ctx)

    typer.echo(f"expired {_with_cashier(Settings.from_env(), work)} deposit(s)")


@payments_cli.command("submit")
def submit_command(
    payment_id: Annotated[uuid.UUID, typer.Argument(help="The payment to send again")],
) -> None:
    """Send a payment no provider has taken yet (after every provider was unavailable, or a
    payout left in doubt) to its route's providers: the same payment id, so never twice."""
    ctx = EventContext(actor="cli", trace_id="cli-payments-submit")

    async def work(cashier: Cashier) -> str:
        try:
            payment = await cashier.submit(payment_id, ctx)
        except DomainError as error:
            return f"error: {error.code}: {error.message}"
        return f"{payment.id} {payment.kind} {payment.state} provider={payment.provider}"

    answer = _with_cashier(Settings.from_env(), work)
    typer.echo(answer, err=answer.startswith("error:"))
    if answer.startswith("error:"):
        raise typer.Exit(1)
