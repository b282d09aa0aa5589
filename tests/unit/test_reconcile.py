"""Reconciliation without a database: statement parsing, and the matching of both sides."""

import io
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from app.payments_cli import payments_cli
from core.money import Money
from core.payments.reconcile import (
    Ours,
    Period,
    Report,
    StatementError,
    StatementLine,
    read_statement,
    reconcile,
)

PSP = "payrail"
HEADER = "provider_ref,payment_id,kind,amount,currency,status,settled_at"
T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def statement(*rows: str, header: str = HEADER) -> list[StatementLine]:
    return list(read_statement(io.StringIO("\n".join([header, *rows]) + "\n")))


def refused(*rows: str, header: str = HEADER) -> StatementError:
    with pytest.raises(StatementError) as raised:
        statement(*rows, header=header)
    return raised.value


def pair(
    *, amount: str = "12.50", kind: str = "deposit", **changes: Any
) -> tuple[StatementLine, Ours]:
    """A settled statement line and our confirmed payment that agree in everything."""
    payment_id = uuid.uuid4()
    money = Money(int(amount.replace(".", "")), "EUR")
    line = StatementLine(2, f"ref-{payment_id.hex[:8]}", payment_id, kind, money, "confirmed", T0)  # type: ignore[arg-type]
    ours = Ours(payment_id, PSP, line.provider_ref, kind, money, "confirmed", T0, money.minor)  # type: ignore[arg-type]
    return line, replace(ours, **changes)


def only(report: Report, kind: str) -> list[str]:
    """The one item of class `kind` (and nothing anywhere else), as its difference fields."""
    classes = {"missing": report.missing, "extra": report.extra, "mismatched": report.mismatched}
    assert [name for name, items in classes.items() if items] == [kind]
    (item,) = classes[kind]
    return [d.field for d in item.differences]


# --- the statement ---------------------------------------------------------------------------


def test_a_statement_reads_line_by_line() -> None:
    payment_id = uuid.uuid4()
    lines = statement(
        f"ps_1,{payment_id},deposit,12.50,EUR,confirmed,2026-11-26T12:00:00Z",
        "",
        f"ps_2,{uuid.uuid4()},withdrawal,7,JPY,sent,",
    )
    assert lines[0] == StatementLine(
        2, "ps_1", payment_id, "deposit", Money(1250, "EUR"), "confirmed", T0
    )
    assert (lines[1].line, lines[1].amount, lines[1].settled_at) == (4, Money(7, "JPY"), None)


def test_the_header_may_come_in_any_order() -> None:
    (line,) = statement(
        f"EUR,1.00,{uuid.uuid4()},ps_1,deposit,pending,",
        header="currency,amount,payment_id,provider_ref,kind,status,settled_at",
    )
    assert (line.provider_ref, line.amount, line.status) == ("ps_1", Money(100, "EUR"), "pending")


def test_reading_is_lazy() -> None:
    """The statement is never held as text: each line is parsed as it is read."""
    read: list[int] = []

    def rows() -> Iterator[str]:
        for number, row in enumerate(
            [HEADER, f"ps_1,{uuid.uuid4()},deposit,1.00,EUR,pending,", "garbage"], start=1
        ):
            read.append(number)
            yield row + "\n"

    lines = read_statement(rows())
    assert next(lines).line == 2
    assert read == [1, 2]
    with pytest.raises(StatementError, match="line 3: 1 fields"):
        next(lines)


GOOD = f"ps_1,{uuid.uuid4()},deposit,12.50,EUR,confirmed,2026-11-26T12:00:00Z"


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("ps_1,x,deposit,12.50,EUR,confirmed,", "payment_id 'x' is not a UUID"),
        (GOOD.replace("ps_1", ""), "provider_ref is empty"),
        (GOOD.replace("deposit", "refund"), "kind 'refund' is neither deposit nor withdrawal"),
        (GOOD.replace("12.50", "12.505"), "EUR allows at most 2 decimals"),
        (GOOD.replace("12.50", "1.25e1"), "amount must be a decimal string"),
        (GOOD.replace("12.50", "-12.50"), "amount must be a decimal string"),
        (GOOD.replace("12.50", "0"), "greater than zero"),
        (GOOD.replace("EUR", "XYZ"), "'XYZ' is not an ISO 4217 currency"),
        (GOOD.replace("confirmed", "sent"), "status 'sent' is not a state of a deposit"),
        (GOOD.replace("2026-11-26T12:00:00Z", "yesterday"), "'yesterday' is not RFC 3339"),
        (GOOD.replace("T12:00:00Z", "T12:00:00"), "has no UTC offset"),
        (GOOD + ",extra", "8 fields, expected 7"),
        (GOOD.replace("ps_1", '"ps_1'), "not CSV"),
    ],
)
def test_a_malformed_line_is_named(row: str, why: str) -> None:
    error = refused(GOOD, row)
    assert error.line == 3
    assert str(error).startswith("line 3: ")
    assert why in str(error)


def test_a_statement_needs_its_header() -> None:
    assert "header must name" in str(refused(GOOD, header="provider_ref,payment_id,kind"))
    assert "header must name" in str(refused(header=HEADER.replace("status", "state")))
    with pytest.raises(StatementError, match="line 1: empty"):
        list(read_statement(io.StringIO("")))
    assert statement() == []  # a header and no payments: a quiet day


# --- matching --------------------------------------------------------------------------------


def test_everything_matches() -> None:
    deposit, ours_deposit = pair()
    withdrawal, ours_withdrawal = pair(kind="withdrawal", amount="30.00")
    report = reconcile(PSP, [deposit, withdrawal], [ours_deposit, ours_withdrawal])
    assert report.ok
    assert report.matched == 2
    assert report.statement_totals == report.ledger_totals
    assert report.statement_totals["EUR"].deposits == 1250
    assert report.statement_totals["EUR"].withdrawals == 3000


def test_settled_by_the_provider_and_unknown_to_us_is_missing() -> None:
    line, _ = pair()
    assert only(reconcile(PSP, [line], []), "missing") == ["payment"]


def test_settled_by_the_provider_and_not_by_us_is_missing() -> None:
    line, ours = pair(state="pending", confirmed_at=None, ledger_minor=None)
    report = reconcile(PSP, [line], [ours])
    assert only(report, "missing") == ["status"]
    assert report.statement_totals["EUR"].deposits == 1250
    assert "EUR" not in report.ledger_totals


def test_settled_by_us_and_absent_from_the_statement_is_extra() -> None:
    _, ours = pair()
    report = reconcile(PSP, [], [ours])
    assert only(report, "extra") == ["statement"]
    assert report.ledger_totals["EUR"].deposits == 1250


def test_settled_by_us_and_not_by_the_provider_is_extra() -> None:
    line, ours = pair()
    assert only(reconcile(PSP, [replace(line, status="failed")], [ours]), "extra") == ["status"]


def test_another_providers_payments_are_not_extra() -> None:
    _, ours = pair(provider="other")
    assert reconcile(PSP, [], [ours]).ok


@pytest.mark.parametrize(
    ("change_line", "change_ours", "fields"),
    [
        ({"amount": Money(1200, "EUR")}, {}, ["amount"]),
        ({"amount": Money(1250, "USD")}, {}, ["currency"]),
        ({"kind": "withdrawal"}, {}, ["kind"]),
        ({"provider_ref": "someone-else"}, {}, ["provider_ref"]),
        ({}, {"provider": "other"}, ["provider"]),
        ({}, {"ledger_minor": 1200}, ["ledger_amount"]),
        ({}, {"ledger_minor": None}, ["ledger_amount"]),
        ({"amount": Money(1300, "EUR")}, {"ledger_minor": 1300}, ["amount", "ledger_amount"]),
    ],
)
def test_both_settled_but_differing_is_mismatched(
    change_line: dict[str, Any], change_ours: dict[str, Any], fields: list[str]
) -> None:
    line, ours = pair(**change_ours)
    assert only(reconcile(PSP, [replace(line, **change_line)], [ours]), "mismatched") == fields


def test_a_reference_paired_with_another_payment_is_mismatched() -> None:
    line, ours = pair()
    report = reconcile(PSP, [replace(line, payment_id=uuid.uuid4())], [ours])
    assert only(report, "mismatched") == ["payment_id"]
    assert report.mismatched[0].ours == ours


def test_final_states_that_differ_are_mismatched() -> None:
    line, ours = pair(state="expired", confirmed_at=None, ledger_minor=None)
    failed = replace(line, status="failed", settled_at=None)
    assert only(reconcile(PSP, [failed], [ours]), "mismatched") == ["status"]
    stuck = replace(ours, state="pending")
    assert only(reconcile(PSP, [failed], [stuck]), "mismatched") == ["status"]


def test_payments_on_their_way_match() -> None:
    line, ours = pair(state="initiated", confirmed_at=None, ledger_minor=None)
    report = reconcile(PSP, [replace(line, status="pending", settled_at=None)], [ours])
    assert (report.ok, report.matched) == (True, 1)
    assert report.statement_totals == report.ledger_totals == {}


def test_an_unknown_line_that_moved_no_money_is_not_a_finding() -> None:
    line, _ = pair()
    assert reconcile(PSP, [replace(line, status="failed")], []).ok


def test_a_repeated_line_is_mismatched_and_counted_once_on_our_side() -> None:
    line, ours = pair()
    again = replace(line, line=9)
    report = reconcile(PSP, [line, again], [ours])
    assert report.matched == 1
    assert only(report, "mismatched") == ["duplicate"]
    assert report.mismatched[0].differences[0].detail == "repeats line 2"
    assert report.statement_totals["EUR"].deposits == 2500  # the provider settled it twice
    assert report.ledger_totals["EUR"].deposits == 1250


def test_a_reference_repeated_under_another_payment_id_is_a_duplicate() -> None:
    line, ours = pair()
    report = reconcile(PSP, [line, replace(line, line=3, payment_id=uuid.uuid4())], [ours])
    assert only(report, "mismatched") == ["payment_id", "duplicate"]


def test_a_period_keeps_what_either_side_settled_in_it() -> None:
    start, end = T0 - timedelta(hours=12), T0 + timedelta(hours=12)
    day = Period(start, end)
    inside, ours_inside = pair()
    # Settled by the provider just before midnight, confirmed by us just after.
    late_line, late_ours = pair(confirmed_at=end + timedelta(seconds=1))
    late_line = replace(late_line, settled_at=end - timedelta(seconds=1))
    # Both the day before: not this day's business.
    before_line, before_ours = pair(confirmed_at=start - timedelta(hours=1))
    before_line = replace(before_line, settled_at=start - timedelta(hours=1))
    # Ours in the day, missing from the statement.
    _, absent = pair()
    report = reconcile(
        PSP,
        [inside, late_line, before_line],
        [ours_inside, late_ours, before_ours, absent],
        day,
    )
    assert report.matched == 2
    assert [item.ours for item in report.extra] == [absent]
    assert report.statement_totals["EUR"].deposits == 2500
    assert report.ledger_totals["EUR"].deposits == 3750


def test_a_period_is_half_open() -> None:
    assert Period(T0, T0 + timedelta(days=1)).covers(T0)
    assert not Period(T0, T0 + timedelta(days=1)).covers(T0 + timedelta(days=1))
    assert not Period(T0).covers(None)
    assert Period().covers(None)


def test_the_report_for_machines() -> None:
    line, ours = pair(ledger_minor=1200)
    document = reconcile(PSP, [line], [ours], Period(T0)).as_dict()
    assert document["ok"] is False
    assert (document["from"], document["to"]) == ("2026-11-26T12:00:00.000000Z", None)
    (item,) = document["mismatched"]
    assert item["statement"]["amount"] == "12.50"
    assert item["ours"]["ledger_amount"] == "12.00"
    assert item["differences"] == [
        {
            "field": "ledger_amount",
            "detail": "the ledger moved 12.00 EUR, the payment is 12.50 EUR",
        }
    ]
    assert document["totals"] == {
        "EUR": {
            "statement": {"deposits": "12.50", "withdrawals": "0.00"},
            "ledger": {"deposits": "12.00", "withdrawals": "0.00"},
        }
    }


# --- the command, before it reaches the database ---------------------------------------------


def cli() -> typer.Typer:
    """As app/cli.py registers it."""
    root = typer.Typer()
    root.add_typer(payments_cli, name="payments")
    return root


def test_a_malformed_statement_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "statement.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{GOOD.replace('12.50', '12,50')}\n")
    result = CliRunner().invoke(
        cli(), ["payments", "reconcile", "--psp", PSP, "--statement", str(path)]
    )
    assert result.exit_code == 2
    assert f"{path}: line 3: " in result.output
    assert "nothing was reconciled" in result.output


def test_an_unreadable_statement_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli(), ["payments", "reconcile", "--psp", PSP, "--statement", str(tmp_path / "none.csv")]
    )
    assert result.exit_code == 2
    assert "cannot read it" in result.output


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--from", "2026-11-26T00:00:00"], "needs a UTC offset"),
        (["--to", "tomorrow"], "is not RFC 3339 or a date"),
        (["--from", "2026-11-27", "--to", "2026-11-26"], "--from must be before --to"),
    ],
)
def test_a_bad_period_exits_2(tmp_path: Path, options: list[str], why: str) -> None:
    path = tmp_path / "statement.csv"
    path.write_text(f"{HEADER}\n")
    result = CliRunner().invoke(
        cli(), ["payments", "reconcile", "--psp", PSP, "--statement", str(path), *options]
    )
    assert result.exit_code == 2
    assert why in result.output
