"""Audit log: log entries, stored tree hashes and signed checkpoints, all write-once.

The invariants live in PostgreSQL as well as in audit/log.py: indices are gapless (new entries
or hashes are consecutive and follow what is there), a journal event enters the log at most once, checkpoints
never shrink the tree or run ahead of it, and nothing written can be changed or removed by the
application role (REVOKE plus triggers that fire even under session_replication_role = replica).
A database superuser can still do all of it; docs/audit.md says how verification catches that.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


class XID8(sa.types.UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_TABLES = ("audit_entries", "audit_tree_hashes", "audit_checkpoints")


def upgrade() -> None:
    # The integrator reads the journal in (txid, id) order from a cursor.
    op.drop_index(op.f("ix_journal_events_txid"), table_name="journal_events")
    op.create_index("ix_journal_events_txid_id", "journal_events", ["txid", "id"])
    op.drop_constraint(op.f("ck_api_clients_role"), "api_clients", type_="check")
    op.create_check_constraint(
        op.f("ck_api_clients_role"),
        "api_clients",
        "role IN ('game_provider', 'operator', 'regulator')",
    )
    op.create_table(
        "audit_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("journal_id", sa.BigInteger(), nullable=False),
        sa.Column("txid", XID8(), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("integrated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("idx >= 0", name=op.f("ck_audit_entries_idx_natural")),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("journal_id", name=op.f("uq_audit_entries_journal_id")),
    )
    op.create_table(
        "audit_tree_hashes",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("idx >= 0", name=op.f("ck_audit_tree_hashes_idx_natural")),
        sa.CheckConstraint(
            "octet_length(hash) = 32", name=op.f("ck_audit_tree_hashes_sha256_length")
        ),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_audit_tree_hashes")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint("tree_size >= 0", name=op.f("ck_audit_checkpoints_size_natural")),
        sa.CheckConstraint(
            "octet_length(root_hash) = 32", name=op.f("ck_audit_checkpoints_sha256_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_index(
        op.f("ix_audit_checkpoints_published_at"), "audit_checkpoints", ["published_at"]
    )
    op.execute(INVARIANTS_SQL)
    op.execute(
        "GRANT SELECT, INSERT ON audit_entries, audit_tree_hashes, audit_checkpoints"
        " TO pitwarden_app"
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_tree_hashes")
    op.drop_table("audit_entries")
    op.execute("DROP FUNCTION pw_audit_appended_in_order, pw_audit_checkpoint_in_order")
    op.drop_constraint(op.f("ck_api_clients_role"), "api_clients", type_="check")
    op.create_check_constraint(
        op.f("ck_api_clients_role"), "api_clients", "role IN ('game_provider', 'operator')"
    )
    op.drop_index("ix_journal_events_txid_id", table_name="journal_events")
    op.create_index(op.f("ix_journal_events_txid"), "journal_events", ["txid"])


INVARIANTS_SQL = (
    """
-- Gapless, checked once per statement (the integrator appends thousands of rows in one):
-- the new indices are consecutive, and the first follows a row that was already there.
CREATE FUNCTION pw_audit_appended_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_idx bigint;
    last_idx bigint;
    added bigint;
    predecessor_exists boolean;
BEGIN
    SELECT min(idx), max(idx), count(*) INTO first_idx, last_idx, added FROM appended;
    IF added = 0 THEN
        RETURN NULL;
    END IF;
    IF last_idx - first_idx + 1 <> added THEN
        RAISE EXCEPTION '% indices % to % would leave a gap', TG_TABLE_NAME, first_idx, last_idx
            USING ERRCODE = 'check_violation';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT FROM %I WHERE idx = $1)', TG_TABLE_NAME)
        INTO predecessor_exists USING first_idx - 1;
    IF first_idx > 0 AND NOT predecessor_exists THEN
        RAISE EXCEPTION '% index % would leave a gap: % is missing',
            TG_TABLE_NAME, first_idx, first_idx - 1 USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

-- A checkpoint commits to entries that exist; the published tree never shrinks, nor its clock.
CREATE FUNCTION pw_audit_checkpoint_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tree_size > 0 AND NOT EXISTS (
        SELECT FROM audit_entries WHERE idx = NEW.tree_size - 1
    ) THEN
        RAISE EXCEPTION 'checkpoint of size % runs ahead of the log', NEW.tree_size
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.tree_size < (SELECT max(tree_size) FROM audit_checkpoints) THEN
        RAISE EXCEPTION 'checkpoint of size % would shrink the published tree', NEW.tree_size
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.published_at < (SELECT max(published_at) FROM audit_checkpoints) THEN
        RAISE EXCEPTION 'checkpoint time % is before an earlier checkpoint''s', NEW.published_at
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_entries_follow AFTER INSERT ON audit_entries
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION pw_audit_appended_in_order();
CREATE TRIGGER audit_tree_hashes_follow AFTER INSERT ON audit_tree_hashes
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION pw_audit_appended_in_order();
CREATE TRIGGER audit_checkpoints_in_order BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION pw_audit_checkpoint_in_order();
ALTER TABLE audit_entries ENABLE ALWAYS TRIGGER audit_entries_follow;
ALTER TABLE audit_tree_hashes ENABLE ALWAYS TRIGGER audit_tree_hashes_follow;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_in_order;
"""
    # Write-once, with the refusal function of the money core's migration.
    + "".join(
        f"""
CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_update_delete;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate;
"""
        for table in AUDIT_TABLES
    )
)
