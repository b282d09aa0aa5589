"""ORM models of the money core. Invariants are also enforced by the migration's SQL.

Conventions: money columns are BIGINT minor units with a sibling `currency`; every money table
carries `player_id` where a player is involved, so that sharding by player stays possible.
"""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TS = sa.DateTime(timezone=True)
CURRENCY = sa.String(3)


class Xid8(sa.types.UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id type."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"


# Let reflection (the migration drift check) recognise the type too.
ischema_names["xid8"] = Xid8


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Player(Base):
    __tablename__ = "players"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    currency: Mapped[str] = mapped_column(CURRENCY)
    jurisdiction: Mapped[str] = mapped_column(sa.String(2))
    created_at: Mapped[datetime] = mapped_column(TS)
    # Touched by every money movement: the row lock on the player serializes its wallet.
    wallet_version: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        sa.UniqueConstraint("id", "currency", name="uq_accounts_id_currency"),
        sa.CheckConstraint(
            "kind IN ('player_cash', 'player_bonus', 'player_held', 'game_revenue',"
            " 'psp_clearing', 'bonus_liability', 'manual_adjustment')",
            name="kind",
        ),
        sa.CheckConstraint(
            "(kind LIKE 'player_%') = (player_id IS NOT NULL)", name="player_accounts_have_player"
        ),
        sa.CheckConstraint(
            "kind NOT LIKE 'player_%' OR (NOT allow_negative AND balance_shards = 1)",
            name="player_accounts_never_negative",
        ),
        sa.CheckConstraint("balance_shards BETWEEN 1 AND 256", name="balance_shards"),
        sa.Index(
            "uq_accounts_player_id_kind",
            "player_id",
            "kind",
            unique=True,
            postgresql_where=sa.text("player_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.Text, unique=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(CURRENCY)
    player_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("players.id"), index=True)
    provider_code: Mapped[str | None] = mapped_column(sa.Text)
    allow_negative: Mapped[bool] = mapped_column(sa.Boolean)
    balance_shards: Mapped[int] = mapped_column(sa.SmallInteger)
    created_at: Mapped[datetime] = mapped_column(TS)


class Balance(Base):
    """Current balance, maintained only by the database from postings (see the migration)."""

    __tablename__ = "balances"
    __table_args__ = (sa.CheckConstraint("allow_negative OR balance >= 0", name="non_negative"),)

    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), primary_key=True)
    shard: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    allow_negative: Mapped[bool] = mapped_column(sa.Boolean)
    balance: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        sa.CheckConstraint(
            "(fx_rate IS NULL) = (fx_source IS NULL) AND (fx_rate IS NULL) = (fx_as_of IS NULL)"
            " AND (fx_rate IS NULL) = (original_amount IS NULL)"
            " AND (fx_rate IS NULL) = (original_currency IS NULL)",
            name="fx_complete",
        ),
        sa.CheckConstraint("fx_rate > 0", name="fx_rate_positive"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    # Postings may only join a transaction created by the same database transaction.
    txid: Mapped[int] = mapped_column(Xid8, server_default=sa.text("pg_current_xact_id()"))
    kind: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS, index=True)
    player_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    # A correction is a new transaction linked to the one it reverses; each is reversed once.
    reverses_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"), unique=True
    )
    reference: Mapped[str | None] = mapped_column(sa.Text)
    operator: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    fx_rate: Mapped[Decimal | None] = mapped_column(sa.Numeric(30, 12))
    fx_source: Mapped[str | None] = mapped_column(sa.Text)
    fx_as_of: Mapped[datetime | None] = mapped_column(TS)
    original_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    original_currency: Mapped[str | None] = mapped_column(CURRENCY)
    # The decision that allowed it; one decision allows one transaction. A trigger (migration
    # 0006) requires one, allowing, for this player and kind, on every new player transaction.
    decision_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("policy_decisions.id"), unique=True
    )


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["accounts.id", "accounts.currency"],
            name="fk_postings_account_currency",
        ),
        sa.CheckConstraint("amount <> 0", name="amount_not_zero"),
        sa.Index("ix_postings_account_id_posted_at", "account_id", "posted_at"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(sa.BigInteger)
    shard: Mapped[int] = mapped_column(sa.SmallInteger)
    currency: Mapped[str] = mapped_column(CURRENCY)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    player_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    posted_at: Mapped[datetime] = mapped_column(TS)


class JournalEvent(Base):
    """The one append-only event stream: outbox for the bus and input of the audit log."""

    __tablename__ = "journal_events"
    __table_args__ = (
        sa.Index("ix_journal_events_txid_id", "txid", "id"),
        # An event's rows newest first (the console's activity); serves `event = ...` too.
        sa.Index("ix_journal_events_event_id", "event", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    # The writing transaction's id: readers use snapshots of it, because ids are not commit order.
    txid: Mapped[int] = mapped_column(Xid8, server_default=sa.text("pg_current_xact_id()"))
    event: Mapped[str] = mapped_column(sa.Text)
    ts: Mapped[datetime] = mapped_column(TS)
    player_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB)


class FxRate(Base):
    """Append-only: the rate in force at T is the newest row with as_of <= T."""

    __tablename__ = "fx_rates"
    __table_args__ = (
        sa.CheckConstraint("rate > 0", name="rate_positive"),
        sa.CheckConstraint("base <> quote", name="distinct_currencies"),
        sa.Index("ix_fx_rates_pair_as_of", "base", "quote", "as_of"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    base: Mapped[str] = mapped_column(CURRENCY)
    quote: Mapped[str] = mapped_column(CURRENCY)
    rate: Mapped[Decimal] = mapped_column(sa.Numeric(30, 12))
    source: Mapped[str] = mapped_column(sa.Text)
    as_of: Mapped[datetime] = mapped_column(TS)
    recorded_by: Mapped[str] = mapped_column(sa.Text)
    recorded_at: Mapped[datetime] = mapped_column(TS)


class ApiClient(Base):
    """A caller of the API: a game provider, an operator tool or a regulator, with its secret.

    The secret is stored sealed (core/sealing.py); `secret` holds a clear one only from before
    migration 0011, until start-up seals it, and PostgreSQL refuses to write a new one there.
    During a rotation's overlap the previous secret verifies too, until `previous_secret_until`.
    """

    __tablename__ = "api_clients"
    __table_args__ = (
        sa.CheckConstraint("role IN ('game_provider', 'operator', 'regulator')", name="role"),
        sa.CheckConstraint(
            "(role = 'game_provider') = (provider_code IS NOT NULL)", name="providers_have_code"
        ),
        # Never a colon: the player API scopes idempotency records as `player:<uuid>`.
        sa.CheckConstraint("client_id ~ '^[A-Za-z0-9._-]{1,64}$'", name="client_id"),
        sa.CheckConstraint("num_nonnulls(secret, secret_sealed) = 1", name="one_secret"),
        sa.CheckConstraint(
            "(previous_secret_sealed IS NULL) = (previous_secret_until IS NULL)"
            " AND (previous_secret_sealed IS NULL OR secret_sealed IS NOT NULL)",
            name="previous_secret",
        ),
    )

    client_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    role: Mapped[str] = mapped_column(sa.Text)
    display_name: Mapped[str] = mapped_column(sa.Text)
    provider_code: Mapped[str | None] = mapped_column(sa.Text, unique=True)
    secret: Mapped[str | None] = mapped_column(sa.Text)  # legacy clear secret: to be dropped
    secret_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    previous_secret_until: Mapped[datetime | None] = mapped_column(TS)
    active: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(TS)


class RequestNonce(Base):
    """Nonces seen within the signature window; they survive restarts."""

    __tablename__ = "request_nonces"

    client_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    nonce: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(TS, index=True)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    client_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(sa.LargeBinary)
    status_code: Mapped[int | None] = mapped_column(sa.SmallInteger)
    # The exact bytes answered: a replay must be byte-identical, and JSONB would reorder keys.
    response: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(TS)


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (
        sa.UniqueConstraint("provider_code", "round_ref"),
        sa.CheckConstraint("status IN ('OPEN', 'CLOSED')", name="status"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    provider_code: Mapped[str] = mapped_column(sa.Text)
    round_ref: Mapped[str] = mapped_column(sa.Text)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"), index=True)
    game_id: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    opened_at: Mapped[datetime] = mapped_column(TS)
    closed_at: Mapped[datetime | None] = mapped_column(TS)


class Bet(Base):
    __tablename__ = "bets"
    __table_args__ = (
        sa.UniqueConstraint("provider_code", "bet_ref"),
        sa.CheckConstraint("status IN ('OPEN', 'WIN', 'LOSE', 'PUSH', 'VOID')", name="status"),
        sa.CheckConstraint(
            "stake > 0 AND stake_cash >= 0 AND stake_bonus >= 0"
            " AND stake = stake_cash + stake_bonus",
            name="stake_sources",
        ),
        sa.CheckConstraint("(status = 'OPEN') = (settled_at IS NULL)", name="settled_at"),
        sa.CheckConstraint("payout IS NULL OR payout >= 0", name="payout_not_negative"),
        # A player's windowed usage (responsible-gambling limits, due diligence) read from
        # the index alone.
        sa.Index(
            "ix_bets_player_id_placed_at",
            "player_id",
            "placed_at",
            postgresql_include=["stake", "payout", "status", "currency"],
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    provider_code: Mapped[str] = mapped_column(sa.Text)
    bet_ref: Mapped[str] = mapped_column(sa.Text)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"), index=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    currency: Mapped[str] = mapped_column(CURRENCY)
    stake: Mapped[int] = mapped_column(sa.BigInteger)
    stake_cash: Mapped[int] = mapped_column(sa.BigInteger)
    stake_bonus: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.Text)
    payout: Mapped[int | None] = mapped_column(sa.BigInteger)
    stake_transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    settle_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    placed_at: Mapped[datetime] = mapped_column(TS)
    settled_at: Mapped[datetime | None] = mapped_column(TS)


class BetTombstone(Base):
    """A rollback arrived for a bet we never saw: the late bet with this id must be refused."""

    __tablename__ = "bet_tombstones"

    provider_code: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    bet_ref: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    transaction_uuid: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)


class WalletTransaction(Base):
    """A provider's business action by `transaction_uuid`, with the outcome we answered."""

    __tablename__ = "wallet_transactions"
    __table_args__ = (sa.CheckConstraint("kind IN ('bet', 'win', 'rollback')", name="kind"),)

    provider_code: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    transaction_uuid: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[bytes] = mapped_column(sa.LargeBinary)
    player_id: Mapped[uuid.UUID] = mapped_column(UUID)
    bet_id: Mapped[int | None] = mapped_column(sa.ForeignKey("bets.id"))
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    created_at: Mapped[datetime] = mapped_column(TS)


DEPOSIT_STATES = ("initiated", "pending", "confirmed", "failed", "expired")
WITHDRAWAL_STATES = ("requested", "approved", "rejected", "sent", "confirmed", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Payment(Base):
    """A deposit or a withdrawal; its state moves only along core.payments.lifecycle's edges.

    The migration (0009) refuses, as a trigger, a state change that is not an edge or has no
    transition row, and any change to what the payment is (player, kind, amount, destination...).
    """

    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("id", "kind", name="uq_payments_id_kind"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_payments_provider_provider_ref"),
        sa.CheckConstraint("kind IN ('deposit', 'withdrawal')", name="kind"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("method IN ('card', 'bank_transfer', 'crypto')", name="method"),
        sa.CheckConstraint(
            f"(kind = 'deposit' AND {_in('state', DEPOSIT_STATES)})"
            f" OR (kind = 'withdrawal' AND {_in('state', WITHDRAWAL_STATES)})",
            name="state",
        ),
        sa.CheckConstraint("(provider IS NULL) = (provider_ref IS NULL)", name="provider_ref"),
        sa.CheckConstraint(
            "redirect_url IS NULL OR provider IS NOT NULL", name="redirect_with_provider"
        ),
        sa.CheckConstraint("provider IS NULL OR provider = ANY (routes)", name="provider_routed"),
        sa.Index(
            "ix_payments_player_id_created_at",
            "player_id",
            "created_at",
            postgresql_include=["kind", "state", "amount"],
        ),
        # The officers' review queue (migration 0013): only what waits is indexed.
        sa.Index(
            "ix_payments_review_queue",
            "created_at",
            "id",
            postgresql_where=sa.text("state = 'requested' AND needs_review"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(CURRENCY)
    method: Mapped[str] = mapped_column(sa.Text)
    country: Mapped[str] = mapped_column(sa.String(2))
    destination: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)
    # The providers in the order the route gave at creation; `provider` is the one that took it.
    routes: Mapped[list[str]] = mapped_column(sa.ARRAY(sa.Text))
    provider: Mapped[str | None] = mapped_column(sa.Text)
    provider_ref: Mapped[str | None] = mapped_column(sa.Text)
    redirect_url: Mapped[str | None] = mapped_column(sa.Text)  # a deposit's hosted page
    # The decision that allowed the request; the deposit's credit or the withdrawal's hold
    # posts under it.
    decision_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("policy_decisions.id"), unique=True
    )
    needs_review: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)


class PaymentTransition(Base):
    """Every step of every payment, with the ledger transaction when money moved (append-only).

    A payment reaches each state at most once (the lifecycles have no cycles), so the unique
    (payment, state) pair is what makes a redelivered "confirmed" unable to credit twice.
    """

    __tablename__ = "payment_transitions"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["payment_id", "kind"],
            ["payments.id", "payments.kind"],
            name="fk_payment_transitions_payment_kind",
        ),
        sa.UniqueConstraint("payment_id", "to_state", name="uq_payment_transitions_payment_state"),
        sa.CheckConstraint(
            "(ledger_transaction_id IS NOT NULL) = ("
            "(kind = 'deposit' AND to_state = 'confirmed') OR (kind = 'withdrawal'"
            " AND to_state IN ('requested', 'rejected', 'failed', 'confirmed')))",
            name="money_moves_where_the_lifecycle_says",
        ),
        sa.CheckConstraint(
            "cause IN ('request', 'provider', 'webhook', 'officer', 'timer', 'kyt')", name="cause"
        ),
        sa.CheckConstraint(
            "from_state IS NOT NULL OR (kind = 'deposit' AND to_state = 'initiated')"
            " OR (kind = 'withdrawal' AND to_state = 'requested')",
            name="opens_in_the_first_state",
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID)
    kind: Mapped[str] = mapped_column(sa.Text)
    from_state: Mapped[str | None] = mapped_column(sa.Text)
    to_state: Mapped[str] = mapped_column(sa.Text)
    cause: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.Text)
    webhook_id: Mapped[str | None] = mapped_column(sa.Text)
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"), unique=True
    )
    at: Mapped[datetime] = mapped_column(TS)


class PaymentAttempt(Base):
    """What came of each call to a provider for a payment: the failover's trail."""

    __tablename__ = "payment_attempts"
    __table_args__ = (sa.Index("ix_payment_attempts_payment_id_id", "payment_id", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id"))
    provider: Mapped[str] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[int | None] = mapped_column(sa.SmallInteger)
    at: Mapped[datetime] = mapped_column(TS)


class WebhookReceipt(Base):
    """The replay store: each provider message id is acted on once, across restarts."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        sa.CheckConstraint(
            "outcome IN ('moved', 'ignored', 'refused', 'unknown_payment')", name="outcome"
        ),
    )

    provider: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    message_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    event: Mapped[str] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.Text)
    body_sha256: Mapped[bytes] = mapped_column(sa.LargeBinary)
    received_at: Mapped[datetime] = mapped_column(TS)
