"""Reconciliation: a payment provider's statement against our payments and our ledger.

The statement (CSV, one payment a line, `STATEMENT_COLUMNS`) says what the provider settled. Our
side is each payment with that provider, with the ledger transaction that moved its money
through the provider's clearing account `house:psp_clearing:<provider>:<currency>` (a deposit
takes the amount out of it, a withdrawal's payout puts it in). Money counts as settled only when
"confirmed": the statement's status; our payment's state, with its confirming transaction.

Each statement line is paired with our payment by payment id (our id is the provider's
merchant reference), or else by the provider's reference. A pair, or one side alone, is:

- missing: the statement settled it and we did not (no such payment, or not confirmed here);
- extra: we settled it and the statement did not (absent, or not confirmed there);
- mismatched: both settled it (or neither), but kind, amount, currency, provider, the pairing
  of provider_ref and payment_id, or a final status differs; or our ledger moved another amount
  than the payment's; or the line repeats a payment of an earlier line;
- matched: none of these. A line neither side has settled matches while both are still on
  their way (a statement "pending" beside our "initiated" is not a finding).

A line for a payment we do not know that the statement has not settled either is not
reported: no money moved on either side.

A period (start inclusive, end exclusive) keeps the pairs that either side settled within it,
so a payment the provider settled at 23:59 and we confirmed at 00:01 is still compared, not
reported missing from one day and extra in the next. Without a period, everything is compared:
the statement is taken to be the provider's whole record.

The matching (`reconcile`) is pure; `our_side` is the one SQL query that feeds it.
"""

import csv
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

from core import sql
from core.errors import InvalidRequest
from core.journal import rfc3339
from core.ledger import house_account_code
from core.money import Money, check_currency, parse_amount
from core.payments.lifecycle import DepositState, Kind, State, WithdrawalState, is_terminal
from core.uow import UnitOfWork

STATEMENT_COLUMNS = (
    "provider_ref",
    "payment_id",
    "kind",
    "amount",
    "currency",
    "status",
    "settled_at",
)
SETTLED = "confirmed"
_STATES: Mapping[str, frozenset[str]] = {
    "deposit": frozenset(get_args(DepositState)),
    "withdrawal": frozenset(get_args(WithdrawalState)),
}

Class = Literal["matched", "missing", "extra", "mismatched"]


class StatementError(ValueError):
    """The statement is malformed: nothing is reconciled against it."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class StatementLine:
    line: int  # in the file, for the reader of the report
    provider_ref: str
    payment_id: uuid.UUID
    kind: Kind
    amount: Money
    status: State
    settled_at: datetime | None

    @property
    def settled(self) -> bool:
        return self.status == SETTLED


@dataclass(frozen=True, slots=True)
class Ours:
    """Our payment, as the reconciliation sees it."""

    payment_id: uuid.UUID
    provider: str | None
    provider_ref: str | None
    kind: Kind
    amount: Money
    state: State
    confirmed_at: datetime | None
    # What the confirming ledger transaction moved through the provider's clearing account in
    # the payment's currency, signed so that a deposit or a payout of X reads X; None when it
    # posted nothing there (or the payment is not confirmed).
    ledger_minor: int | None

    @property
    def settled(self) -> bool:
        return self.state == SETTLED

    @property
    def clearing_account(self) -> str:
        return house_account_code("psp_clearing", self.amount.currency, self.provider)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    def covers(self, at: datetime | None) -> bool:
        """Whether something settled at `at` is in the period; without bounds, anything is."""
        if not self.bounded:
            return True
        return (
            at is not None
            and (self.start is None or at >= self.start)
            and (self.end is None or at < self.end)
        )


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing the two sides disagree on. `field` is for machines: payment (we have none),
    statement (it has none), status, kind, amount, currency, provider, provider_ref,
    payment_id (the reference is another payment's), ledger_amount, duplicate."""

    field: str
    detail: str


@dataclass(frozen=True, slots=True)
class Item:
    statement: StatementLine | None
    ours: Ours | None
    differences: tuple[Difference, ...]

    @property
    def payment_id(self) -> uuid.UUID:
        source = self.statement or self.ours
        assert source is not None  # noqa: S101 - an item has at least one side
        return source.payment_id


@dataclass(slots=True)
class Totals:
    """Settled money of one currency on one side, in minor units."""

    deposits: int = 0
    withdrawals: int = 0

    def add(self, kind: Kind, minor: int) -> None:
        if kind == "deposit":
            self.deposits += minor
        else:
            self.withdrawals += minor


@dataclass(frozen=True)
class Report:
    provider: str
    period: Period
    matched: int
    missing: tuple[Item, ...]
    extra: tuple[Item, ...]
    mismatched: tuple[Item, ...]
    # By currency: what the statement settled, and what our ledger moved through clearing.
    statement_totals: Mapping[str, Totals] = field(default_factory=dict)
    ledger_totals: Mapping[str, Totals] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def as_dict(self) -> dict[str, Any]:
        """The report for machines: money as decimal strings, instants in RFC 3339."""
        currencies = sorted(set(self.statement_totals) | set(self.ledger_totals))
        return {
            "provider": self.provider,
            "from": _instant(self.period.start),
            "to": _instant(self.period.end),
            "ok": self.ok,
            "matched": self.matched,
            "missing": [_item(item) for item in self.missing],
            "extra": [_item(item) for item in self.extra],
            "mismatched": [_item(item) for item in self.mismatched],
            "totals": {
                currency: {
                    side: _totals(totals.get(currency, Totals()), currency)
                    for side, totals in (
                        ("statement", self.statement_totals),
                        ("ledger", self.ledger_totals),
                    )
                }
                for currency in currencies
            },
        }


def read_statement(rows: Iterable[str]) -> Iterator[StatementLine]:
    """Parse a statement lazily, line by line (a file opened with newline=""); StatementError
    names the first malformed line. Blank lines are skipped."""
    reader = csv.reader(rows, strict=True)
    positions: dict[str, int] | None = None
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise StatementError(reader.line_num, f"not CSV: {error}") from None
        if not any(value.strip() for value in fields):
            continue
        if positions is None:
            positions = _header(fields, reader.line_num)
            continue
        yield _statement_line(fields, positions, reader.line_num)
    if positions is None:
        raise StatementError(1, f"empty: the header {','.join(STATEMENT_COLUMNS)} is missing")


def _header(fields: list[str], line: int) -> dict[str, int]:
    names = [name.strip() for name in fields]
    if sorted(names) != sorted(STATEMENT_COLUMNS):
        raise StatementError(line, f"the header must name {','.join(STATEMENT_COLUMNS)}")
    return {name: i for i, name in enumerate(names)}


def _statement_line(fields: list[str], positions: dict[str, int], line: int) -> StatementLine:
    if len(fields) != len(STATEMENT_COLUMNS):
        raise StatementError(line, f"{len(fields)} fields, expected {len(STATEMENT_COLUMNS)}")
    value = {name: fields[i].strip() for name, i in positions.items()}
    if not value["provider_ref"]:
        raise StatementError(line, "provider_ref is empty")
    try:
        payment_id = uuid.UUID(value["payment_id"])
    except ValueError:
        raise StatementError(line, f"payment_id {value['payment_id']!r} is not a UUID") from None
    kind = value["kind"]
    if kind not in _STATES:
        raise StatementError(line, f"kind {kind!r} is neither deposit nor withdrawal")
    try:
        amount = parse_amount(value["amount"], check_currency(value["currency"]))
    except InvalidRequest as error:
        problem = f"{error.message} ({value['amount']} {value['currency']})"
        raise StatementError(line, problem) from None
    status = value["status"]
    if status not in _STATES[kind]:
        raise StatementError(line, f"status {status!r} is not a state of a {kind}")
    return StatementLine(
        line=line,
        provider_ref=value["provider_ref"],
        payment_id=payment_id,
        kind=cast("Kind", kind),  # checked above
        amount=amount,
        status=cast("State", status),  # checked above
        settled_at=_settled_at(value["settled_at"], line),
    )


def _settled_at(text: str, line: int) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise StatementError(line, f"settled_at {text!r} is not RFC 3339") from None
    if at.tzinfo is None:
        raise StatementError(line, f"settled_at {text!r} has no UTC offset")
    return at


class _Matcher:
    """One pass over the statement; what is left of our side afterwards is extra."""

    def __init__(self, provider: str, ours: Iterable[Ours], period: Period) -> None:
        self.provider = provider
        self.period = period
        self.by_id = {payment.payment_id: payment for payment in ours}
        self.by_ref = {
            payment.provider_ref: payment
            for payment in self.by_id.values()
            if payment.provider == provider and payment.provider_ref
        }
        self.first_line: dict[uuid.UUID | str, int] = {}  # payment id or provider ref -> line
        self.paired: set[uuid.UUID] = set()
        self.found: dict[Class, list[Item]] = defaultdict(list)
        self.statement_totals: dict[str, Totals] = defaultdict(Totals)
        self.ledger_totals: dict[str, Totals] = defaultdict(Totals)

    def line(self, line: StatementLine) -> None:
        ours = self.by_id.get(line.payment_id) or self.by_ref.get(line.provider_ref)
        repeats = self._repeats(line, ours)
        in_period = self.period.covers(line.settled_at) or (
            ours is not None and ours.settled and self.period.covers(ours.confirmed_at)
        )
        if not in_period:
            return
        if line.settled:
            self.statement_totals[line.amount.currency].add(line.kind, line.amount.minor)
        if ours is None:
            if line.settled:
                self._found(
                    "missing", line, None, [Difference("payment", "we have no such payment")]
                )
            return
        first_pairing = ours.payment_id not in self.paired
        self.paired.add(ours.payment_id)
        if ours.settled and first_pairing and ours.provider == self.provider:
            self.ledger_totals[ours.amount.currency].add(ours.kind, ours.ledger_minor or 0)
        differences = self._differences(line, ours)
        if repeats is not None:
            differences.append(Difference("duplicate", f"repeats line {repeats}"))
        self._found(_class(line, ours, differences), line, ours, differences)

    def unpaired(self) -> None:
        """Our settled payments that no statement line named."""
        for ours in self.by_id.values():
            if (
                ours.settled
                and ours.provider == self.provider
                and ours.payment_id not in self.paired
                and self.period.covers(ours.confirmed_at)
            ):
                self.ledger_totals[ours.amount.currency].add(ours.kind, ours.ledger_minor or 0)
                differences = [Difference("statement", "the statement does not list it")]
                differences += _ledger_differences(ours)
                self._found("extra", None, ours, differences)

    def _repeats(self, line: StatementLine, ours: Ours | None) -> int | None:
        """The earlier line naming the same payment (by either id), if any."""
        keys: list[uuid.UUID | str] = [line.payment_id, line.provider_ref]
        if ours is not None:
            keys.append(ours.payment_id)
        earlier = [self.first_line[key] for key in keys if key in self.first_line]
        for key in keys:
            self.first_line.setdefault(key, line.line)
        return min(earlier) if earlier else None

    def _differences(self, line: StatementLine, ours: Ours) -> list[Difference]:
        found: list[Difference] = []
        if ours.provider != self.provider:
            found.append(Difference("provider", f"ours is with {ours.provider or 'no provider'}"))
        elif ours.payment_id != line.payment_id:
            found.append(
                Difference("payment_id", f"{line.provider_ref} is our payment {ours.payment_id}")
            )
        elif ours.provider_ref != line.provider_ref:
            found.append(Difference("provider_ref", f"ours is {ours.provider_ref}"))
        if ours.kind != line.kind:
            found.append(Difference("kind", f"ours is a {ours.kind}"))
        if ours.amount.currency != line.amount.currency:
            found.append(Difference("currency", f"ours is {ours.amount}"))
        elif ours.amount.minor != line.amount.minor:
            found.append(Difference("amount", f"statement {line.amount}, ours {ours.amount}"))
        if line.status != ours.state and (
            line.settled
            or ours.settled
            or is_terminal(line.kind, line.status)
            or is_terminal(ours.kind, ours.state)
        ):
            found.append(Difference("status", f"statement {line.status}, ours {ours.state}"))
        return found + _ledger_differences(ours)

    def _found(
        self, kind: Class, line: StatementLine | None, ours: Ours | None, found: list[Difference]
    ) -> None:
        self.found[kind].append(Item(line, ours, tuple(found)))


def _class(line: StatementLine, ours: Ours, differences: list[Difference]) -> Class:
    if line.settled and not ours.settled:
        return "missing"
    if ours.settled and not line.settled:
        return "extra"
    return "mismatched" if differences else "matched"


def _ledger_differences(ours: Ours) -> list[Difference]:
    if not ours.settled:
        return []
    if ours.ledger_minor is None:
        return [Difference("ledger_amount", f"nothing posted on {ours.clearing_account}")]
    if ours.ledger_minor != ours.amount.minor:
        moved = Money(ours.ledger_minor, ours.amount.currency)
        return [
            Difference("ledger_amount", f"the ledger moved {moved}, the payment is {ours.amount}")
        ]
    return []


def reconcile(
    provider: str,
    statement: Iterable[StatementLine],
    ours: Iterable[Ours],
    period: Period | None = None,
) -> Report:
    """Match a provider's statement against our side of it (rules in the module docstring)."""
    matcher = _Matcher(provider, ours, period or Period())
    for line in statement:
        matcher.line(line)
    matcher.unpaired()
    return Report(
        provider=provider,
        period=matcher.period,
        matched=len(matcher.found["matched"]),
        missing=tuple(matcher.found["missing"]),
        extra=tuple(matcher.found["extra"]),
        mismatched=tuple(matcher.found["mismatched"]),
        statement_totals=dict(matcher.statement_totals),
        ledger_totals=dict(matcher.ledger_totals),
    )


async def our_side(
    uow: UnitOfWork,
    *,
    provider: str,
    payment_ids: Collection[uuid.UUID],
    provider_refs: Collection[str],
    period: Period | None = None,
) -> list[Ours]:
    """In one query: every payment the statement names (by id, whatever its provider; or by the
    provider's reference), and every payment with the provider that we confirmed in the period,
    each with what its confirming transaction moved through the provider's clearing account."""
    period = period or Period()
    rows = await sql.all_rows(
        uow,
        _OUR_SIDE,
        {
            "provider": provider,
            "ids": list(payment_ids),
            "refs": list(provider_refs),
            "start": period.start,
            "end": period.end,
        },
    )
    return [
        Ours(
            payment_id=row["id"],
            provider=row["provider"],
            provider_ref=row["provider_ref"],
            kind=row["kind"],
            amount=Money(row["amount"], row["currency"]),
            state=row["state"],
            confirmed_at=row["confirmed_at"],
            ledger_minor=row["ledger_minor"],
        )
        for row in rows
    ]


async def against_ledger(
    uow: UnitOfWork, *, provider: str, statement: list[StatementLine], period: Period | None = None
) -> Report:
    """Reconcile a parsed statement against our side, read in one query."""
    ours = await our_side(
        uow,
        provider=provider,
        payment_ids={line.payment_id for line in statement},
        provider_refs={line.provider_ref for line in statement},
        period=period,
    )
    return reconcile(provider, statement, ours, period)


_OUR_SIDE = """
SELECT p.id, p.provider, p.provider_ref, p.kind, p.amount, p.currency, p.state,
       t.at AS confirmed_at, moved.minor AS ledger_minor
FROM payments p
LEFT JOIN payment_transitions t ON t.payment_id = p.id AND t.to_state = 'confirmed'
LEFT JOIN LATERAL (
    SELECT (sum(po.amount) * CASE p.kind WHEN 'deposit' THEN -1 ELSE 1 END)::bigint AS minor
    FROM postings po JOIN accounts a ON a.id = po.account_id
    WHERE po.transaction_id = t.ledger_transaction_id
      AND a.code = 'house:psp_clearing:' || p.provider || ':' || p.currency
) moved ON true
WHERE p.id = ANY(%(ids)s::uuid[])
   OR (p.provider = %(provider)s
       AND (p.provider_ref = ANY(%(refs)s::text[])
            OR (p.state = 'confirmed'
                AND t.at >= coalesce(%(start)s::timestamptz, '-infinity')
                AND t.at < coalesce(%(end)s::timestamptz, 'infinity'))))
"""


def _instant(at: datetime | None) -> str | None:
    return rfc3339(at) if at else None


def _totals(totals: Totals, currency: str) -> dict[str, str]:
    return {
        "deposits": Money(totals.deposits, currency).decimal_string,
        "withdrawals": Money(totals.withdrawals, currency).decimal_string,
    }


def _item(item: Item) -> dict[str, Any]:
    line, ours = item.statement, item.ours
    return {
        "payment_id": str(item.payment_id),
        "statement": None
        if line is None
        else {
            "line": line.line,
            "provider_ref": line.provider_ref,
            "payment_id": str(line.payment_id),
            "kind": line.kind,
            "amount": line.amount.decimal_string,
            "currency": line.amount.currency,
            "status": line.status,
            "settled_at": _instant(line.settled_at),
        },
        "ours": None
        if ours is None
        else {
            "payment_id": str(ours.payment_id),
            "provider": ours.provider,
            "provider_ref": ours.provider_ref,
            "kind": ours.kind,
            "amount": ours.amount.decimal_string,
            "currency": ours.amount.currency,
            "state": ours.state,
            "confirmed_at": _instant(ours.confirmed_at),
            "ledger_amount": None
            if ours.ledger_minor is None
            else Money(ours.ledger_minor, ours.amount.currency).decimal_string,
        },
        "differences": [{"field": d.field, "detail": d.detail} for d in item.differences],
    }
