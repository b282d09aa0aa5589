"""Four-eyes: lifting a protection is a request that a second officer decides; and the index of
the payments review queue (withdrawals waiting for an officer).

`approval_requests` holds each request (what, about whom or what, why, who asked, when it
expires) and, once, its decision. What PostgreSQL refuses whatever the code does:

- an officer deciding their own request (`ck_approval_requests_not_own`);
- a decision after the request expired (`ck_approval_requests_in_time`);
- changing a request, or deciding it twice (trigger `approval_requests_decided_once`,
  ENABLE ALWAYS): only the decision's columns, only while undecided;
- deleting or truncating one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("killswitch_on", "aml_hold_clear", "payout_approve", "ruleset_activate")


def upgrade() -> None:
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=True),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(f"kind IN ({kinds})", name=op.f("ck_approval_requests_kind")),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('approved', 'rejected')",
            name=op.f("ck_approval_requests_outcome"),
        ),
        sa.CheckConstraint(
            "num_nulls(decided_by, decided_at, outcome) IN (0, 3)",
            name=op.f("ck_approval_requests_decided"),
        ),
        sa.CheckConstraint(
            "decided_by IS NULL OR decided_by <> requested_by",
            name=op.f("ck_approval_requests_not_own"),
        ),
        sa.CheckConstraint(
            "decided_at IS NULL OR decided_at < expires_at",
            name=op.f("ck_approval_requests_in_time"),
        ),
        sa.CheckConstraint("expires_at > requested_at", name=op.f("ck_approval_requests_order")),
        sa.CheckConstraint("length(btrim(reason)) > 0", name=op.f("ck_approval_requests_reason")),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["officers.id"],
            name=op.f("fk_approval_requests_requested_by_officers"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["officers.id"], name=op.f("fk_approval_requests_decided_by_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    op.create_index(
        "ix_approval_requests_open", "approval_requests", ["expires_at"],
        postgresql_where=sa.text("decided_at IS NULL"),
    )  # fmt: skip
    op.create_index("ix_approval_requests_requested_at", "approval_requests", ["requested_at"])
    # the payments review queue, which approving a payout starts from
    op.create_index(
        "ix_payments_review_queue", "payments", ["created_at", "id"],
        postgresql_where=sa.text("state = 'requested' AND needs_review"),
    )  # fmt: skip
    op.execute("""
CREATE FUNCTION pw_decided_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'approval_requests are never deleted';
    END IF;
    IF OLD.decided_at IS NOT NULL THEN
        RAISE EXCEPTION 'approval request % is decided already', OLD.id;
    END IF;
    IF (NEW.id, NEW.kind, NEW.subject, NEW.player_id, NEW.payload, NEW.reason, NEW.requested_by,
        NEW.requested_at, NEW.expires_at)
       IS DISTINCT FROM (OLD.id, OLD.kind, OLD.subject, OLD.player_id, OLD.payload, OLD.reason,
        OLD.requested_by, OLD.requested_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'approval request %: only its decision may be written', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER approval_requests_decided_once BEFORE UPDATE OR DELETE ON approval_requests
    FOR EACH ROW EXECUTE FUNCTION pw_decided_once();
CREATE TRIGGER approval_requests_no_truncate BEFORE TRUNCATE ON approval_requests
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_decided_once;
ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_no_truncate;
GRANT SELECT, INSERT ON approval_requests TO pitwarden_app;
GRANT UPDATE (decided_by, decided_at, outcome, decision_reason) ON approval_requests
    TO pitwarden_app;
""")


def downgrade() -> None:
    op.drop_index("ix_payments_review_queue", table_name="payments")
    op.drop_table("approval_requests")
    op.execute("DROP FUNCTION pw_decided_once()")
