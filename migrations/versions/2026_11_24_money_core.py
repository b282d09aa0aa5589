"""Money core: players, accounts, ledger, journal, rounds, bets, API clients, idempotency.

Besides the tables, this migration writes the money invariants into PostgreSQL itself
(see INVARIANTS_SQL) and creates the restricted application role with its grants.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


class XID8(sa.types.UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("provider_code", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(role = 'game_provider') = (provider_code IS NOT NULL)",
            name=op.f("ck_api_clients_providers_have_code"),
        ),
        sa.CheckConstraint(
            "role IN ('game_provider', 'operator')", name=op.f("ck_api_clients_role")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("provider_code", name=op.f("uq_api_clients_provider_code")),
    )
    op.create_table(
        "bet_tombstones",
        sa.Column("provider_code", sa.Text(), nullable=False),
        sa.Column("bet_ref", sa.Text(), nullable=False),
        sa.Column("transaction_uuid", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider_code", "bet_ref", name=op.f("pk_bet_tombstones")),
    )
    op.create_table(
        "fx_rates",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.Numeric(precision=30, scale=12), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("base <> quote", name=op.f("ck_fx_rates_distinct_currencies")),
        sa.CheckConstraint("rate > 0", name=op.f("ck_fx_rates_rate_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fx_rates")),
    )
    op.create_index("ix_fx_rates_pair_as_of", "fx_rates", ["base", "quote", "as_of"], unique=False)
    op.create_table(
        "idempotency_records",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "key", name=op.f("pk_idempotency_records")),
    )
    op.create_table(
        "journal_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("txid", XID8(), server_default=sa.text("pg_current_xact_id()"), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=True),
        sa.Column("envelope", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_events")),
    )
    op.create_index(op.f("ix_journal_events_event"), "journal_events", ["event"], unique=False)
    op.create_index(
        op.f("ix_journal_events_player_id"), "journal_events", ["player_id"], unique=False
    )
    op.create_index(op.f("ix_journal_events_txid"), "journal_events", ["txid"], unique=False)
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("txid", XID8(), server_default=sa.text("pg_current_xact_id()"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=True),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("operator", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("fx_rate", sa.Numeric(precision=30, scale=12), nullable=True),
        sa.Column("fx_source", sa.Text(), nullable=True),
        sa.Column("fx_as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("original_amount", sa.BigInteger(), nullable=True),
        sa.Column("original_currency", sa.String(length=3), nullable=True),
        sa.CheckConstraint(
            "(fx_rate IS NULL) = (fx_source IS NULL) AND (fx_rate IS NULL) = (fx_as_of IS NULL) AND (fx_rate IS NULL) = (original_amount IS NULL) AND (fx_rate IS NULL) = (original_currency IS NULL)",
            name=op.f("ck_ledger_transactions_fx_complete"),
        ),
        sa.CheckConstraint("fx_rate > 0", name=op.f("ck_ledger_transactions_fx_rate_positive")),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_reverses_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_ledger_transactions_reverses_id")),
    )
    op.create_index(
        op.f("ix_ledger_transactions_created_at"),
        "ledger_transactions",
        ["created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_transactions_player_id"), "ledger_transactions", ["player_id"], unique=False
    )
    op.create_table(
        "players",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("jurisdiction", sa.String(length=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wallet_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_players")),
    )
    op.create_table(
        "request_nonces",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "nonce", name=op.f("pk_request_nonces")),
    )
    op.create_index(op.f("ix_request_nonces_seen_at"), "request_nonces", ["seen_at"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=True),
        sa.Column("provider_code", sa.Text(), nullable=True),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("balance_shards", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind LIKE 'player_%%') = (player_id IS NOT NULL)",
            name=op.f("ck_accounts_player_accounts_have_player"),
        ),
        sa.CheckConstraint(
            "kind IN ('player_cash', 'player_bonus', 'game_revenue', 'psp_clearing', 'bonus_liability', 'manual_adjustment')",
            name=op.f("ck_accounts_kind"),
        ),
        sa.CheckConstraint(
            "kind NOT LIKE 'player_%%' OR (NOT allow_negative AND balance_shards = 1)",
            name=op.f("ck_accounts_player_accounts_never_negative"),
        ),
        sa.CheckConstraint(
            "balance_shards BETWEEN 1 AND 256", name=op.f("ck_accounts_balance_shards")
        ),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_accounts_player_id_players")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_accounts_code")),
        sa.UniqueConstraint("id", "currency", name="uq_accounts_id_currency"),
    )
    op.create_index(op.f("ix_accounts_player_id"), "accounts", ["player_id"], unique=False)
    op.create_table(
        "rounds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("provider_code", sa.Text(), nullable=False),
        sa.Column("round_ref", sa.Text(), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=False),
        sa.Column("game_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('OPEN', 'CLOSED')", name=op.f("ck_rounds_status")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_rounds_player_id_players")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rounds")),
        sa.UniqueConstraint(
            "provider_code", "round_ref", name=op.f("uq_rounds_provider_code_round_ref")
        ),
    )
    op.create_index(op.f("ix_rounds_player_id"), "rounds", ["player_id"], unique=False)
    op.create_table(
        "balances",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("allow_negative OR balance >= 0", name=op.f("ck_balances_non_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_balances_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "shard", name=op.f("pk_balances")),
    )
    op.create_table(
        "bets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("provider_code", sa.Text(), nullable=False),
        sa.Column("bet_ref", sa.Text(), nullable=False),
        sa.Column("round_id", sa.BigInteger(), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stake", sa.BigInteger(), nullable=False),
        sa.Column("stake_cash", sa.BigInteger(), nullable=False),
        sa.Column("stake_bonus", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("payout", sa.BigInteger(), nullable=True),
        sa.Column("stake_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("settle_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'OPEN') = (settled_at IS NULL)", name=op.f("ck_bets_settled_at")
        ),
        sa.CheckConstraint(
            "status IN ('OPEN', 'WIN', 'LOSE', 'PUSH', 'VOID')", name=op.f("ck_bets_status")
        ),
        sa.CheckConstraint(
            "payout IS NULL OR payout >= 0", name=op.f("ck_bets_payout_not_negative")
        ),
        sa.CheckConstraint(
            "stake > 0 AND stake_cash >= 0 AND stake_bonus >= 0 AND stake = stake_cash + stake_bonus",
            name=op.f("ck_bets_stake_sources"),
        ),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_bets_player_id_players")
        ),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("fk_bets_round_id_rounds")),
        sa.ForeignKeyConstraint(
            ["settle_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_bets_settle_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["stake_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_bets_stake_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bets")),
        sa.UniqueConstraint("provider_code", "bet_ref", name=op.f("uq_bets_provider_code_bet_ref")),
    )
    op.create_index(op.f("ix_bets_player_id"), "bets", ["player_id"], unique=False)
    op.create_index(op.f("ix_bets_round_id"), "bets", ["round_id"], unique=False)
    op.create_table(
        "postings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_postings_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["accounts.id", "accounts.currency"],
            name="fk_postings_account_currency",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_postings_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    op.create_index(
        "ix_postings_account_id_posted_at", "postings", ["account_id", "posted_at"], unique=False
    )
    op.create_index(
        op.f("ix_postings_transaction_id"), "postings", ["transaction_id"], unique=False
    )
    op.create_table(
        "wallet_transactions",
        sa.Column("provider_code", sa.Text(), nullable=False),
        sa.Column("transaction_uuid", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.LargeBinary(), nullable=False),
        sa.Column("player_id", sa.UUID(), nullable=False),
        sa.Column("bet_id", sa.BigInteger(), nullable=True),
        sa.Column("ledger_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('bet', 'win', 'rollback')", name=op.f("ck_wallet_transactions_kind")
        ),
        sa.ForeignKeyConstraint(
            ["bet_id"], ["bets.id"], name=op.f("fk_wallet_transactions_bet_id_bets")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_wallet_transactions_ledger_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint(
            "provider_code", "transaction_uuid", name=op.f("pk_wallet_transactions")
        ),
    )

    op.execute(INVARIANTS_SQL)
    op.execute(ROLE_SQL)


def downgrade() -> None:
    op.drop_table("wallet_transactions")
    op.drop_index(op.f("ix_postings_transaction_id"), table_name="postings")
    op.drop_index("ix_postings_account_id_posted_at", table_name="postings")
    op.drop_table("postings")
    op.drop_index(op.f("ix_bets_round_id"), table_name="bets")
    op.drop_index(op.f("ix_bets_player_id"), table_name="bets")
    op.drop_table("bets")
    op.drop_table("balances")
    op.drop_index(op.f("ix_rounds_player_id"), table_name="rounds")
    op.drop_table("rounds")
    op.drop_index(op.f("ix_accounts_player_id"), table_name="accounts")
    op.drop_table("accounts")
    op.drop_index(op.f("ix_request_nonces_seen_at"), table_name="request_nonces")
    op.drop_table("request_nonces")
    op.drop_table("players")
    op.drop_index(op.f("ix_ledger_transactions_player_id"), table_name="ledger_transactions")
    op.drop_index(op.f("ix_ledger_transactions_created_at"), table_name="ledger_transactions")
    op.drop_table("ledger_transactions")
    op.drop_index(op.f("ix_journal_events_txid"), table_name="journal_events")
    op.drop_index(op.f("ix_journal_events_player_id"), table_name="journal_events")
    op.drop_index(op.f("ix_journal_events_event"), table_name="journal_events")
    op.drop_table("journal_events")
    op.drop_table("idempotency_records")
    op.drop_index("ix_fx_rates_pair_as_of", table_name="fx_rates")
    op.drop_table("fx_rates")
    op.drop_table("bet_tombstones")
    op.drop_table("api_clients")
    op.execute(
        "DROP FUNCTION pw_open_balances, pw_apply_posting, pw_check_balanced,"
        " pw_check_posting_txn, pw_refuse_change"
    )


APPEND_ONLY_TABLES = ("accounts", "ledger_transactions", "postings", "journal_events", "fx_rates")

INVARIANTS_SQL = (
    """
-- Balances are derived by the database from postings; the application cannot write them.
CREATE FUNCTION pw_open_balances() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO balances (account_id, shard, allow_negative, balance)
    SELECT NEW.id, s, NEW.allow_negative, 0 FROM generate_series(0, NEW.balance_shards - 1) AS s;
    RETURN NULL;
END $$;
CREATE TRIGGER accounts_open_balances AFTER INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION pw_open_balances();

CREATE FUNCTION pw_apply_posting() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE balances SET balance = balance + NEW.amount
     WHERE account_id = NEW.account_id AND shard = NEW.shard;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'posting % names shard % that account % does not have',
            NEW.id, NEW.shard, NEW.account_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_apply AFTER INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION pw_apply_posting();

-- Double entry, checked once per ledger transaction at commit: at least two postings, and
-- they sum to zero per currency. Postings cannot join a transaction later (next trigger), so
-- checking each transaction when its database transaction commits covers every posting.
CREATE FUNCTION pw_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    IF (SELECT count(*) FROM postings WHERE transaction_id = NEW.id) < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has fewer than two postings', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT currency, sum(amount) AS total INTO bad FROM postings
     WHERE transaction_id = NEW.id GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: % % left over',
            NEW.id, bad.total, bad.currency USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pw_check_balanced();

-- A posting may only join a transaction created in the same database transaction.
CREATE FUNCTION pw_check_posting_txn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT txid FROM ledger_transactions WHERE id = NEW.transaction_id)
        IS DISTINCT FROM pg_current_xact_id() THEN
        RAISE EXCEPTION 'ledger transaction % is closed: corrections are new transactions',
            NEW.transaction_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER postings_same_transaction BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION pw_check_posting_txn();

-- Append-only tables. ENABLE ALWAYS: these fire even under session_replication_role = replica.
CREATE FUNCTION pw_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is refused: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""
    + "".join(
        f"""
CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_update_delete;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate;
"""
        for table in APPEND_ONLY_TABLES
    )
    + """
ALTER TABLE postings ENABLE ALWAYS TRIGGER postings_apply;
ALTER TABLE postings ENABLE ALWAYS TRIGGER postings_same_transaction;
ALTER TABLE accounts ENABLE ALWAYS TRIGGER accounts_open_balances;
ALTER TABLE ledger_transactions ENABLE ALWAYS TRIGGER ledger_transactions_balanced;
"""
)

# The application role: reads everything it needs, appends to the money and journal tables,
# updates only the mutable state of rounds, bets, players and idempotency records.
ROLE_SQL = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pitwarden_app') THEN
        CREATE ROLE pitwarden_app LOGIN;
    END IF;
END $$;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM pitwarden_app;
GRANT USAGE ON SCHEMA public TO pitwarden_app;
GRANT SELECT, INSERT ON accounts, ledger_transactions, postings, journal_events, fx_rates,
    api_clients, bet_tombstones, wallet_transactions TO pitwarden_app;
GRANT SELECT ON balances TO pitwarden_app;
GRANT SELECT, INSERT, UPDATE ON players, rounds, bets, idempotency_records TO pitwarden_app;
GRANT SELECT, INSERT, DELETE ON request_nonces TO pitwarden_app;
GRANT UPDATE (active) ON api_clients TO pitwarden_app;
"""
