"""Double-entry ledger: accounts, balanced transactions, current and historical balances.

A ledger transaction is a set of postings summing to zero per currency. The database keeps
current balances from postings (trigger) and refuses unbalanced or altered transactions; this
module refuses them first, with a clear error.

House accounts spread their current balance over several shard rows so that concurrent stakes
do not queue on one row (docs/decisions/0003-house-balance-shards.md).
"""

import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from psycopg.types.json import Jsonb

from core import journal, sql
from core.errors import InvalidRequest, NotFound
from core.journal import EventContext
from core.models import Account, Posting
from core.money import Money, format_minor
from core.uow import UnitOfWork

HOUSE_KINDS = ("game_revenue", "psp_clearing", "bonus_liability", "manual_adjustment")
DEFAULT_HOUSE_SHARDS = 16


@dataclass(frozen=True, slots=True)
class AccountRef:
    id: int
    code: str
    currency: str
    balance_shards: int


@dataclass(frozen=True, slots=True)
class Leg:
    account: AccountRef
    amount: int  # signed minor units in the account's currency


@dataclass(frozen=True, slots=True)
class FxApplied:
    """The conversion a transaction used, fixed on it for good."""

    rate: Decimal
    source: str
    as_of: datetime
    original: Money


def player_account_code(player_id: uuid.UUID, source: str) -> str:
    return f"player:{player_id}:{source}"


def house_account_code(kind: str, currency: str, provider_code: str | None = None) -> str:
    return (
        f"house:{kind}:{provider_code}:{currency}" if provider_code else f"house:{kind}:{currency}"
    )


def _ref(account: Account) -> AccountRef:
    return AccountRef(account.id, account.code, account.currency, account.balance_shards)


async def open_player_accounts(uow: UnitOfWork, *, player_id: uuid.UUID, currency: str) -> None:
    await uow.session.execute(
        sa.insert(Account),
        [
            {
                "code": player_account_code(player_id, source),
                "kind": f"player_{source}",
                "currency": currency,
                "player_id": player_id,
                "allow_negative": False,
                "balance_shards": 1,
                "created_at": uow.now,
            }
            for source in ("cash", "bonus", "held")
        ],
    )


async def account_by_id(uow: UnitOfWork, account_id: int) -> AccountRef:
    account = await uow.session.get(Account, account_id)
    if account is None:
        raise NotFound("unknown_account", f"no account {account_id}", account=account_id)
    return _ref(account)


async def account_by_code(uow: UnitOfWork, code: str) -> AccountRef:
    account = await uow.session.scalar(sa.select(Account).where(Account.code == code))
    if account is None:
        raise NotFound("unknown_account", f"no account {code!r}", account=code)
    return _ref(account)


async def house_account(
    uow: UnitOfWork,
    *,
    kind: str,
    currency: str,
    provider_code: str | None = None,
    shards: int = DEFAULT_HOUSE_SHARDS,
) -> AccountRef:
    """The house account of this kind and currency, opened on first use."""
    if kind not in HOUSE_KINDS:
        raise ValueError(f"not a house account kind: {kind}")
    code = house_account_code(kind, currency, provider_code)
    found = await sql.one(uow, _HOUSE_ACCOUNT, {"code": code})
    if found is None:
        await sql.run(
            uow,
            "INSERT INTO accounts (code, kind, currency, provider_code, allow_negative,"
            " balance_shards, created_at) VALUES (%(code)s, %(kind)s, %(currency)s,"
            " %(provider)s, true, %(shards)s, %(now)s) ON CONFLICT (code) DO NOTHING",
            {
                "code": code,
                "kind": kind,
                "currency": currency,
                "provider": provider_code,
                "shards": shards,
                "now": uow.now,
            },
        )
        found = await sql.one(uow, _HOUSE_ACCOUNT, {"code": code})
        assert found is not None  # noqa: S101 - inserted or found by the statement above
    return AccountRef(**found)


_HOUSE_ACCOUNT = "SELECT id, code, currency, balance_shards FROM accounts WHERE code = %(code)s"


def check_balanced(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:  # noqa: PLR2004 - double entry
        raise ValueError("a ledger transaction needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if leg.amount == 0:
            raise ValueError("a posting cannot be zero")
        totals[leg.account.currency] += leg.amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise ValueError(f"ledger transaction does not balance: {unbalanced}")


async def post(
    uow: UnitOfWork,
    *,
    kind: str,
    legs: Sequence[Leg],
    ctx: EventContext,
    player_id: uuid.UUID | None = None,
    reference: str | None = None,
    operator: str | None = None,
    reason: str | None = None,
    reverses_id: int | None = None,
    fx: FxApplied | None = None,
    decision_id: uuid.UUID | None = None,
) -> int:
    """Write one balanced ledger transaction, and its `ledger.posted` event, and return its id.

    A transaction that moves a player's money names the policy decision that allowed it
    (`decision_id`): PostgreSQL refuses it otherwise, and refuses a decision that denied, was
    about another player or another kind of movement, or already allowed another transaction.

    The event lists every posting by account code, so the books at any instant can be rebuilt
    from the journal alone (and from the audit log over it).
    """
    legs = [leg for leg in legs if leg.amount != 0]
    check_balanced(legs)
    txn_id: int = await sql.scalar(
        uow,
        "INSERT INTO ledger_transactions (kind, created_at, player_id, reverses_id, reference,"
        " operator, reason, fx_rate, fx_source, fx_as_of, original_amount, original_currency,"
        " decision_id) VALUES (%(kind)s, %(now)s, %(player_id)s, %(reverses_id)s, %(reference)s,"
        " %(operator)s, %(reason)s, %(fx_rate)s, %(fx_source)s, %(fx_as_of)s,"
        " %(original_amount)s, %(original_currency)s, %(decision_id)s) RETURNING id",
        {
            "kind": kind,
            "now": uow.now,
            "player_id": player_id,
            "reverses_id": reverses_id,
            "reference": reference,
            "operator": operator,
            "reason": reason,
            "fx_rate": fx.rate if fx else None,
            "fx_source": fx.source if fx else None,
            "fx_as_of": fx.as_of if fx else None,
            "original_amount": fx.original.minor if fx else None,
            "original_currency": fx.original.currency if fx else None,
            "decision_id": decision_id,
        },
    )
    rows = sorted(
        (
            leg.account.id,
            random.randrange(leg.account.balance_shards),  # noqa: S311 - load spreading only
            leg.account.currency,
            leg.amount,
        )
        for leg in legs
    )
    event = journal.envelope(
        event="ledger.posted",
        ts=uow.now,
        ctx=ctx,
        player_id=player_id,
        amount=None,
        data={
            "ledger_transaction_id": txn_id,
            "kind": kind,
            "reference": reference,
            "reverses_id": reverses_id,
            "postings": [
                {
                    "account": leg.account.code,
                    "amount": format_minor(leg.amount, leg.account.currency),
                    "currency": leg.account.currency,
                }
                for leg in legs
            ],
        },
    )
    # Inserted in (account, shard) order: one global order of balance-row locks keeps
    # concurrent transactions free of deadlocks. The event rides in the same statement (a
    # data-modifying WITH runs to completion whether or not the outer query reads it).
    await sql.run(
        uow,
        "WITH legs AS (INSERT INTO postings (transaction_id, account_id, shard, currency, amount,"
        " player_id, posted_at) SELECT %(txn)s, a, s, c, m, %(player_id)s, %(now)s FROM unnest("
        "%(accounts)s::bigint[], %(shards)s::smallint[], %(currencies)s::varchar[],"
        " %(amounts)s::bigint[]) WITH ORDINALITY AS leg(a, s, c, m, n) ORDER BY n)"
        " INSERT INTO journal_events (event, ts, player_id, envelope)"
        " VALUES ('ledger.posted', %(now)s, %(player_id)s, %(event)s)",
        {
            "txn": txn_id,
            "player_id": player_id,
            "now": uow.now,
            "accounts": [r[0] for r in rows],
            "shards": [r[1] for r in rows],
            "currencies": [r[2] for r in rows],
            "amounts": [r[3] for r in rows],
            "event": Jsonb(event),
        },
    )
    return txn_id


async def balance(uow: UnitOfWork, account_id: int) -> int:
    """The current balance: the sum of at most `balance_shards` rows, whatever the history."""
    total = await sql.scalar(
        uow,
        "SELECT coalesce(sum(balance), 0) FROM balances WHERE account_id = %(id)s",
        {"id": account_id},
    )
    return int(total)


async def balance_at(uow: UnitOfWork, account_id: int, at: datetime) -> int:
    """The balance at instant `at`, recomputed from postings (never from the current balance)."""
    if at.tzinfo is None:
        raise InvalidRequest("naive_datetime", "a point in time needs a UTC offset")
    total = await uow.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Posting.amount), 0)).where(
            Posting.account_id == account_id, Posting.posted_at <= at
        )
    )
    return int(total or 0)


async def balances_at(uow: UnitOfWork, at: datetime) -> dict[str, Money]:
    """Every account's balance at instant `at`, by account code, recomputed from postings."""
    if at.tzinfo is None:
        raise InvalidRequest("naive_datetime", "a point in time needs a UTC offset")
    rows = await sql.all_rows(
        uow,
        "SELECT a.code, a.currency, sum(p.amount) AS balance FROM postings p"
        " JOIN accounts a ON a.id = p.account_id WHERE p.posted_at <= %(at)s"
        " GROUP BY a.code, a.currency",
        {"at": at},
    )
    return {row["code"]: Money(int(row["balance"]), row["currency"]) for row in rows}
