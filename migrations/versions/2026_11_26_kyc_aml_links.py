"""The gate in the database, and what it needs besides limits: a player's ledger transactions
must name the policy decision that allowed them; KYC levels, AML holds, linked accounts; an
index that makes a player's windowed usage an index-only read.

All three are append-only histories: the state is the newest row, and what was in force at any
instant can be recomputed. A link joins two players that share an email, phone, national id or
IBAN (found through the vault's blind indexes at registration): the basis is the kind of data,
never its value.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("kyc_levels", "aml_holds", "player_links")


def _history(name: str, *columns: sa.Column[object], checks: Sequence[sa.CheckConstraint]) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        *columns,
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        *checks,
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f(f"fk_{name}_player_id_players")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    op.create_index(f"ix_{name}_player_id_id", name, ["player_id", "id"])


def upgrade() -> None:
    _history(
        "kyc_levels",
        sa.Column("level", sa.Text(), nullable=False),
        checks=[
            sa.CheckConstraint(
                "level IN ('unverified', 'basic', 'verified')", name=op.f("ck_kyc_levels_level")
            )
        ],
    )
    _history("aml_holds", sa.Column("on_hold", sa.Boolean(), nullable=False), checks=[])
    op.create_table(
        "player_links",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("linked_player_id", sa.Uuid(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "basis IN ('email', 'phone', 'national_id', 'iban', 'officer')",
            name=op.f("ck_player_links_basis"),
        ),
        sa.CheckConstraint("player_id <> linked_player_id", name=op.f("ck_player_links_distinct")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_player_links_player_id_players")
        ),
        sa.ForeignKeyConstraint(
            ["linked_player_id"],
            ["players.id"],
            name=op.f("fk_player_links_linked_player_id_players"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_player_links")),
        sa.UniqueConstraint(
            "player_id",
            "linked_player_id",
            "basis",
            name=op.f("uq_player_links_player_id_linked_player_id_basis"),
        ),
    )
    op.create_index("ix_player_links_linked_player_id", "player_links", ["linked_player_id"])
    op.create_index(
        "ix_bets_player_id_placed_at",
        "bets",
        ["player_id", "placed_at"],
        postgresql_include=["stake", "payout", "status", "currency"],
    )
    _gate_the_ledger()
    for table in TABLES:
        op.execute(f"""
CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_update_delete;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate;
GRANT SELECT, INSERT ON {table} TO pitwarden_app;
""")


# Every new ledger transaction of a player names the decision that allowed it: a decision that
# allowed, for that player, for that kind of movement, and no other transaction (a trigger, not
# a CHECK, so transactions from before the gate stay as they were). Kinds of movement without a
# mapped action are refused: payments add theirs with their own migration.
GATED_KINDS = {
    "stake": ["bet.place"],
    "payout": ["bet.settle"],
    "rollback": ["bet.rollback"],
    "adjustment": ["adjustment.credit", "adjustment.debit"],
}


def _gate_the_ledger() -> None:
    op.add_column("ledger_transactions", sa.Column("decision_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_ledger_transactions_decision_id_policy_decisions"),
        "ledger_transactions",
        "policy_decisions",
        ["decision_id"],
        ["id"],
    )
    op.create_unique_constraint(
        op.f("uq_ledger_transactions_decision_id"), "ledger_transactions", ["decision_id"]
    )
    cases = " ".join(
        f"WHEN '{kind}' THEN ARRAY[{', '.join(repr(a) for a in actions)}]"
        for kind, actions in GATED_KINDS.items()
    )
    op.execute(f"""
CREATE FUNCTION pw_require_allowing_decision() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER ledger_transactions_gated BEFORE INSERT ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION pw_require_allowing_decision();
ALTER TABLE ledger_transactions ENABLE ALWAYS TRIGGER ledger_transactions_gated;

-- ...and a player's money moves only in a transaction of that player: otherwise a transaction
-- naming no player (or another one, with that one's decision) could post to their accounts.
CREATE FUNCTION pw_posting_of_the_transactions_player() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner uuid;
BEGIN
    SELECT player_id INTO owner FROM accounts WHERE id = NEW.account_id;
    IF owner IS NOT NULL AND owner IS DISTINCT FROM
        (SELECT player_id FROM ledger_transactions WHERE id = NEW.transaction_id) THEN
        RAISE EXCEPTION 'a posting to an account of player % needs a transaction of that player',
            owner USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER postings_of_the_transactions_player BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION pw_posting_of_the_transactions_player();
ALTER TABLE postings ENABLE ALWAYS TRIGGER postings_of_the_transactions_player;
""")


def downgrade() -> None:
    op.execute("DROP TRIGGER postings_of_the_transactions_player ON postings")
    op.execute("DROP FUNCTION pw_posting_of_the_transactions_player()")
    op.execute("DROP TRIGGER ledger_transactions_gated ON ledger_transactions")
    op.execute("DROP FUNCTION pw_require_allowing_decision()")
    op.drop_constraint("uq_ledger_transactions_decision_id", "ledger_transactions")
    op.drop_constraint("fk_ledger_transactions_decision_id_policy_decisions", "ledger_transactions")
    op.drop_column("ledger_transactions", "decision_id")
    op.drop_index("ix_bets_player_id_placed_at", table_name="bets")
    for table in reversed(TABLES):
        op.drop_table(table)
