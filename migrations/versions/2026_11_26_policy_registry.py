"""Policy engine: which ruleset version is active where, every decision, and kill-switches.

All three tables are append-only (the same REVOKE + ENABLE ALWAYS triggers as the ledger): the
active version of a jurisdiction is its newest activation, the state of a zone is its newest
switch, and a decision, once taken, is a fact.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("policy_activations", "policy_decisions", "kill_switches")


def upgrade() -> None:
    op.create_table(
        "policy_activations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("jurisdiction", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "jurisdiction ~ '^([A-Z]{2}|[*])$'", name=op.f("ck_policy_activations_jurisdiction")
        ),
        sa.CheckConstraint(
            "content_hash ~ '^sha256:[0-9a-f]{64}$'", name=op.f("ck_policy_activations_hash")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_activations")),
    )
    op.create_index(
        "ix_policy_activations_jurisdiction_id", "policy_activations", ["jurisdiction", "id"]
    )
    op.create_table(
        "policy_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=True),
        sa.Column("facts", postgresql.JSONB(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("rule_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("effect", sa.Text(), nullable=False),
        sa.Column("reason_code", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("effect IN ('allow', 'deny')", name=op.f("ck_policy_decisions_effect")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_decisions")),
    )
    op.create_index(op.f("ix_policy_decisions_decided_at"), "policy_decisions", ["decided_at"])
    op.create_index(
        "ix_policy_decisions_player_id_decided_at", "policy_decisions", ["player_id", "decided_at"]
    )
    op.create_table(
        "kill_switches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("zone", sa.Text(), nullable=False),
        sa.Column("off", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kill_switches")),
    )
    op.create_index("ix_kill_switches_zone_id", "kill_switches", ["zone", "id"])
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


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
