"""Payments: deposits and withdrawals, their transitions, provider attempts, the webhook replay
store; a held-funds account per player; the gate's map learns the payment kinds of movement.

What PostgreSQL refuses, whatever the code does:

- a payment changing what it is (player, kind, amount, currency, method, country, destination,
  routes, decision, creation time), or its provider once set; a provider not on its routes; a
  payment committed without its opening transition;
- a payment in another currency than its player's wallet;
- a transition whose ledger transaction is not its payment's own (reference, player, exactly
  the step's postings of the payment's amount on the player's accounts — cash +, cash - and
  held +, held - and cash +, held -) or not of the kind its step moves (deposit,
  withdrawal_hold, withdrawal_release, withdrawal_payout); an opening transition to anything
  but the first state (so a withdrawal always opens with its hold);
- a ledger transaction of a payment kind committed without the payment step that names it;
- a second account of one kind for a player;
- a state change that is not an edge of the lifecycle (core/payments/lifecycle.py, copied here
  as it stands today; tests/integration/test_payments_db.py checks that both agree), or that has
  no transition row written before it;
- a payment reaching the same state twice (unique payment + state): a redelivered "confirmed"
  cannot credit twice;
- a transition that moves money without a ledger transaction, or one that does not and has one
  (deposit confirmed; withdrawal requested, rejected, failed, confirmed);
- UPDATE, DELETE, TRUNCATE of transitions, attempts and webhook receipts; DELETE and TRUNCATE of
  payments (ENABLE ALWAYS).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEPOSIT_STATES = ("initiated", "pending", "confirmed", "failed", "expired")
WITHDRAWAL_STATES = ("requested", "approved", "rejected", "sent", "confirmed", "failed")
EDGES = {
    "deposit": [
        ("initiated", "pending"),
        ("initiated", "confirmed"),
        ("initiated", "failed"),
        ("initiated", "expired"),
        ("pending", "confirmed"),
        ("pending", "failed"),
        ("pending", "expired"),
    ],
    "withdrawal": [
        ("requested", "approved"),
        ("requested", "rejected"),
        ("approved", "sent"),
        ("approved", "failed"),
        ("sent", "confirmed"),
        ("sent", "failed"),
    ],
}
# Migration 0006's map, with the payment kinds: which action's decision a ledger transaction
# of each kind needs.
GATED_KINDS = {
    "stake": ["bet.place"],
    "payout": ["bet.settle"],
    "rollback": ["bet.rollback"],
    "adjustment": ["adjustment.credit", "adjustment.debit"],
    "deposit": ["deposit"],
    "withdrawal_hold": ["withdrawal"],
    "withdrawal_release": ["withdrawal.release"],
    "withdrawal_payout": ["withdrawal.pay_out"],
}
APPEND_ONLY = ("payment_transitions", "payment_attempts", "webhook_receipts")
ACCOUNT_KINDS_BEFORE = (
    "kind IN ('player_cash', 'player_bonus', 'game_revenue', 'psp_clearing',"
    " 'bonus_liability', 'manual_adjustment')"
)
ACCOUNT_KINDS = (
    "kind IN ('player_cash', 'player_bonus', 'player_held', 'game_revenue',"
    " 'psp_clearing', 'bonus_liability', 'manual_adjustment')"
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    _held_accounts()
    _tables()
    _payment_rules()
    _payment_links()
    _gate_map(GATED_KINDS)
    for table in APPEND_ONLY:
        op.execute(f"""
CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_update_delete;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate;
GRANT SELECT, INSERT ON {table} TO pitwarden_app;
""")
    op.execute("""
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE payments ENABLE ALWAYS TRIGGER payments_no_delete;
ALTER TABLE payments ENABLE ALWAYS TRIGGER payments_no_truncate;
GRANT SELECT, INSERT, UPDATE ON payments TO pitwarden_app;
""")


def _held_accounts() -> None:
    """Money a withdrawal holds is still the player's (a liability), but no longer playable."""
    op.drop_constraint(op.f("ck_accounts_kind"), "accounts")
    op.create_check_constraint(op.f("ck_accounts_kind"), "accounts", ACCOUNT_KINDS)
    # One account of each kind per player: the wallet finds them by kind.
    op.create_index(
        "uq_accounts_player_id_kind",
        "accounts",
        ["player_id", "kind"],
        unique=True,
        postgresql_where=sa.text("player_id IS NOT NULL"),
    )
    op.execute("""
INSERT INTO accounts (code, kind, currency, player_id, allow_negative, balance_shards, created_at)
SELECT concat('player', chr(58), p.id, chr(58), 'held'), 'player_held', p.currency, p.id, false, 1, now()
FROM players p
""")


def _tables() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("destination", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("routes", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_ref", sa.Text(), nullable=True),
        sa.Column("redirect_url", sa.Text(), nullable=True),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('deposit', 'withdrawal')", name=op.f("ck_payments_kind")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "method IN ('card', 'bank_transfer', 'crypto')", name=op.f("ck_payments_method")
        ),
        sa.CheckConstraint(
            f"(kind = 'deposit' AND {_in('state', DEPOSIT_STATES)})"
            f" OR (kind = 'withdrawal' AND {_in('state', WITHDRAWAL_STATES)})",
            name=op.f("ck_payments_state"),
        ),
        sa.CheckConstraint(
            "(provider IS NULL) = (provider_ref IS NULL)", name=op.f("ck_payments_provider_ref")
        ),
        sa.CheckConstraint(
            "redirect_url IS NULL OR provider IS NOT NULL",
            name=op.f("ck_payments_redirect_with_provider"),
        ),
        sa.CheckConstraint(
            "provider IS NULL OR provider = ANY (routes)", name=op.f("ck_payments_provider_routed")
        ),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_payments_player_id_players")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["policy_decisions.id"],
            name=op.f("fk_payments_decision_id_policy_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("id", "kind", name="uq_payments_id_kind"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_payments_provider_provider_ref"),
        sa.UniqueConstraint("decision_id", name=op.f("uq_payments_decision_id")),
    )
    op.create_index(
        "ix_payments_player_id_created_at",
        "payments",
        ["player_id", "created_at"],
        postgresql_include=["kind", "state", "amount"],
    )
    op.create_table(
        "payment_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("webhook_id", sa.Text(), nullable=True),
        sa.Column("ledger_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(ledger_transaction_id IS NOT NULL) = ("
            "(kind = 'deposit' AND to_state = 'confirmed') OR (kind = 'withdrawal'"
            " AND to_state IN ('requested', 'rejected', 'failed', 'confirmed')))",
            name=op.f("ck_payment_transitions_money_moves_where_the_lifecycle_says"),
        ),
        sa.CheckConstraint(
            "cause IN ('request', 'provider', 'webhook', 'officer', 'timer', 'kyt')",
            name=op.f("ck_payment_transitions_cause"),
        ),
        sa.CheckConstraint(
            "from_state IS NOT NULL OR (kind = 'deposit' AND to_state = 'initiated')"
            " OR (kind = 'withdrawal' AND to_state = 'requested')",
            name=op.f("ck_payment_transitions_opens_in_the_first_state"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id", "kind"],
            ["payments.id", "payments.kind"],
            name="fk_payment_transitions_payment_kind",
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_payment_transitions_ledger_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_transitions")),
        sa.UniqueConstraint("payment_id", "to_state", name="uq_payment_transitions_payment_state"),
        sa.UniqueConstraint(
            "ledger_transaction_id", name=op.f("uq_payment_transitions_ledger_transaction_id")
        ),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_attempts_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_attempts")),
    )
    op.create_index("ix_payment_attempts_payment_id_id", "payment_attempts", ["payment_id", "id"])
    op.create_table(
        "webhook_receipts",
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('moved', 'ignored', 'refused', 'unknown_payment')",
            name=op.f("ck_webhook_receipts_outcome"),
        ),
        sa.PrimaryKeyConstraint("provider", "message_id", name=op.f("pk_webhook_receipts")),
    )


def _payment_rules() -> None:
    edges = ", ".join(
        f"('{kind}', '{a}', '{b}')" for kind, pairs in EDGES.items() for a, b in pairs
    )
    openings = "('deposit', 'initiated'), ('withdrawal', 'requested')"
    op.execute(f"""
CREATE FUNCTION pw_payment_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (NEW.kind, NEW.state) NOT IN (VALUES {openings}) THEN
            RAISE EXCEPTION 'a % opens in its first state, not %', NEW.kind, NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.currency IS DISTINCT FROM
           (SELECT currency FROM players WHERE id = NEW.player_id) THEN
            RAISE EXCEPTION 'payment % is not in the currency of its player''s wallet', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.kind, NEW.player_id, NEW.amount, NEW.currency, NEW.method, NEW.country,
        NEW.destination, NEW.routes, NEW.decision_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.kind, OLD.player_id, OLD.amount, OLD.currency, OLD.method, OLD.country,
        OLD.destination, OLD.routes, OLD.decision_id, OLD.created_at) THEN
        RAISE EXCEPTION 'payment % cannot change what it is', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.provider IS NOT NULL
       AND (NEW.provider, NEW.provider_ref, NEW.redirect_url)
           IS DISTINCT FROM (OLD.provider, OLD.provider_ref, OLD.redirect_url) THEN
        RAISE EXCEPTION 'payment % already belongs to provider %', OLD.id, OLD.provider
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF (NEW.kind, OLD.state, NEW.state) NOT IN (VALUES {edges}) THEN
            RAISE EXCEPTION 'a % that is % cannot become %', NEW.kind, OLD.state, NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM payment_transitions t WHERE t.payment_id = NEW.id
                       AND t.from_state = OLD.state AND t.to_state = NEW.state) THEN
            RAISE EXCEPTION 'payment % moves to % only with its transition recorded',
                NEW.id, NEW.state USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payments_rules BEFORE INSERT OR UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION pw_payment_rules();
ALTER TABLE payments ENABLE ALWAYS TRIGGER payments_rules;
""")


def _payment_links() -> None:
    """A transition's ledger transaction is its payment's own, of the kind its step moves; and
    a payment exists only with its opening transition (a withdrawal, so, with its hold)."""
    op.execute("""
CREATE FUNCTION pw_payment_transition_money() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    expected text := CASE WHEN NEW.kind = 'deposit' THEN 'deposit'
                          WHEN NEW.to_state = 'requested' THEN 'withdrawal_hold'
                          WHEN NEW.to_state = 'confirmed' THEN 'withdrawal_payout'
                          ELSE 'withdrawal_release' END;
    -- What the step does to the player's own accounts (kind:signed amount, sorted), no more.
    legs text[] := CASE expected
        WHEN 'deposit' THEN ARRAY['player_cash:+']
        WHEN 'withdrawal_hold' THEN ARRAY['player_cash:-', 'player_held:+']
        WHEN 'withdrawal_release' THEN ARRAY['player_cash:+', 'player_held:-']
        ELSE ARRAY['player_held:-'] END;
BEGIN
    IF NEW.ledger_transaction_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM ledger_transactions t JOIN payments p ON p.id = NEW.payment_id
        WHERE t.id = NEW.ledger_transaction_id AND t.kind = expected
          AND t.player_id = p.player_id AND t.reference = 'payment:' || p.id::text
          -- and on the player's side it moves exactly the payment's amount, the step's way
          AND (SELECT array_agg(a.kind || ':' || CASE WHEN x.amount > 0 THEN '+' ELSE '-' END
                                ORDER BY a.kind)
               FROM postings x JOIN accounts a ON a.id = x.account_id
               WHERE x.transaction_id = t.id AND a.player_id = p.player_id
                 AND x.currency = p.currency AND abs(x.amount) = p.amount) = legs
          AND (SELECT count(*) FROM postings x JOIN accounts a ON a.id = x.account_id
               WHERE x.transaction_id = t.id AND a.player_id = p.player_id)
              = cardinality(legs)
    ) THEN
        RAISE EXCEPTION 'the % of payment % needs its own % ledger transaction',
            NEW.to_state, NEW.payment_id, expected USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payment_transitions_money BEFORE INSERT ON payment_transitions
    FOR EACH ROW EXECUTE FUNCTION pw_payment_transition_money();
ALTER TABLE payment_transitions ENABLE ALWAYS TRIGGER payment_transitions_money;

CREATE FUNCTION pw_payment_opened() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM payment_transitions
                   WHERE payment_id = NEW.id AND from_state IS NULL) THEN
        RAISE EXCEPTION 'payment % was opened without its opening transition', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payments_opened AFTER INSERT ON payments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pw_payment_opened();
ALTER TABLE payments ENABLE ALWAYS TRIGGER payments_opened;

-- The other way round: a payment kind of ledger transaction exists only as a payment's step.
CREATE FUNCTION pw_payment_money_has_its_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM payment_transitions WHERE ledger_transaction_id = NEW.id) THEN
        RAISE EXCEPTION 'ledger transaction % (%) moves payment money outside a payment''s step',
            NEW.id, NEW.kind USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transactions_payment_step AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.kind IN ('deposit', 'withdrawal_hold', 'withdrawal_release', 'withdrawal_payout'))
    EXECUTE FUNCTION pw_payment_money_has_its_step();
ALTER TABLE ledger_transactions ENABLE ALWAYS TRIGGER ledger_transactions_payment_step;
""")


def _gate_map(kinds: dict[str, list[str]]) -> None:
    cases = " ".join(
        f"WHEN '{kind}' THEN ARRAY[{', '.join(repr(a) for a in actions)}]"
        for kind, actions in kinds.items()
    )
    op.execute(f"""
CREATE OR REPLACE FUNCTION pw_require_allowing_decision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.player_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM policy_decisions d
        WHERE d.id = NEW.decision_id AND d.effect = 'allow'
          AND d.player_id IS NOT DISTINCT FROM NEW.player_id
          AND d.action = ANY (CASE NEW.kind {cases} ELSE ARRAY[]::text[] END)
    ) THEN
        RAISE EXCEPTION 'ledger transaction of kind % for player % needs a decision that allowed it',
            NEW.kind, NEW.player_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
""")


def downgrade() -> None:
    _gate_map(
        {k: v for k, v in GATED_KINDS.items() if k in ("stake", "payout", "rollback", "adjustment")}
    )
    for table in ("webhook_receipts", "payment_attempts", "payment_transitions", "payments"):
        op.drop_table(table)
    op.execute("DROP TRIGGER ledger_transactions_payment_step ON ledger_transactions")
    op.execute(
        "DROP FUNCTION pw_payment_rules(), pw_payment_transition_money(), pw_payment_opened(),"
        " pw_payment_money_has_its_step()"
    )
    op.drop_index("uq_accounts_player_id_kind", table_name="accounts")
    op.execute(
        "DELETE FROM balances b USING accounts a WHERE b.account_id = a.id"
        " AND a.kind = 'player_held'"
    )
    op.execute("DELETE FROM accounts WHERE kind = 'player_held'")
    op.drop_constraint(op.f("ck_accounts_kind"), "accounts")
    op.create_check_constraint(op.f("ck_accounts_kind"), "accounts", ACCOUNT_KINDS_BEFORE)
