"""Responsible-gambling state: limits and exclusions, append-only.

A limit request is a row with the moment it takes effect (at once for a decrease, 24 hours
later for an increase or a removal); an exclusion is a row with its start and end. Nothing is
ever edited, so what was in force at any instant can be recomputed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("rg_limits", "rg_exclusions")


def upgrade() -> None:
    op.create_table(
        "rg_limits",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('deposit', 'loss', 'wager')", name=op.f("ck_rg_limits_kind")),
        sa.CheckConstraint("period IN ('24h', '7d', '30d')", name=op.f("ck_rg_limits_period")),
        sa.CheckConstraint("amount IS NULL OR amount >= 0", name=op.f("ck_rg_limits_amount")),
        sa.CheckConstraint("effective_at >= requested_at", name=op.f("ck_rg_limits_order")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_rg_limits_player_id_players")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rg_limits")),
    )
    op.create_index("ix_rg_limits_player_id_kind", "rg_limits", ["player_id", "kind", "period"])
    op.create_table(
        "rg_exclusions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('time_out', 'self_exclusion')", name=op.f("ck_rg_exclusions_kind")
        ),
        sa.CheckConstraint(
            "ends_at IS NULL OR ends_at > starts_at", name=op.f("ck_rg_exclusions_order")
        ),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_rg_exclusions_player_id_players")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rg_exclusions")),
    )
    op.create_index(op.f("ix_rg_exclusions_player_id"), "rg_exclusions", ["player_id"])
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
        op.drop_table(table)
