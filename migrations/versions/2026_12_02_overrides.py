"""Overrides (issue 15, slice 2): what an overturned appeal grants, and the gate honours.

- `overrides`: one per overturned appeal that lifts a refusal — scoped to the player, the
  refused action and the deny rules that refused (never more than the refusal's own rules), for
  a period (`expires_at`) and, when given, a number of uses (`max_uses`). What an override is
  never changes.
- `override_uses`: each allowing decision of the gate that an override let through, numbered
  1, 2, ... per override: the number never passes `max_uses`, never skips, and is unique, so two
  concurrent uses of the last one cannot both commit; a use falls inside the override's period
  and names an allowing decision of the same player and action.
- `override_expiries`: when an override ended — its period over (`period_ended`, recorded by
  the server's sweep) or its uses spent (`uses_spent`, by the decision that spent the last).
- four-eyes kind `appeal_overturn`: overturning a refusal of the AML or KYC categories is a
  request a senior officer approves.
- `appeals.outcome_reason` is the vault token of the officer's reason (it may hold personal
  data), like the messages.
- the vault's reveal rule `compliance_officer` / `appeal_review` / `document_image`: an officer
  reads an appeal's explanation, documents and messages.

What PostgreSQL refuses, whatever the code does: an override of an appeal that is not the
player's overturned appeal of that refusal, or of rules that did not refuse it; a use beyond
`max_uses`, out of order, outside the period, or by a decision that did not allow the
override's action for its player; an expiry before its time or before the uses are spent;
UPDATE, DELETE, TRUNCATE of all three (ENABLE ALWAYS).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("killswitch_on", "aml_hold_clear", "payout_approve", "ruleset_activate", "kyc_raise")
KINDS = (*BEFORE, "appeal_overturn")
APPEND_ONLY = ("overrides", "override_uses", "override_expiries")


def _kinds(kinds: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{kind}'" for kind in kinds)
    op.drop_constraint(op.f("ck_approval_requests_kind"), "approval_requests", type_="check")
    op.create_check_constraint(
        op.f("ck_approval_requests_kind"), "approval_requests", f"kind IN ({listed})"
    )


def upgrade() -> None:
    _kinds(KINDS)
    op.create_check_constraint(
        op.f("ck_appeals_outcome_reason_is_a_vault_token"),
        "appeals",
        "outcome_reason IS NULL OR outcome_reason LIKE 'pii\\_%'",
    )
    _tables()
    _rules()
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
    op.execute(
        "INSERT INTO vault.reveal_rules (actor_role, purpose, field)"
        " VALUES ('compliance_officer', 'appeal_review', 'document_image')"
    )


def _tables() -> None:
    op.create_table(
        "overrides",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("appeal_id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("rule_ids", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.CheckConstraint("cardinality(rule_ids) >= 1", name=op.f("ck_overrides_rules")),
        sa.CheckConstraint(
            "max_uses IS NULL OR max_uses BETWEEN 1 AND 100", name=op.f("ck_overrides_max_uses")
        ),
        sa.CheckConstraint("expires_at > granted_at", name=op.f("ck_overrides_period")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_overrides_player_id_players")
        ),
        sa.ForeignKeyConstraint(
            ["appeal_id"], ["appeals.id"], name=op.f("fk_overrides_appeal_id_appeals")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["policy_decisions.id"],
            name=op.f("fk_overrides_decision_id_policy_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_overrides")),
        sa.UniqueConstraint("appeal_id", name=op.f("uq_overrides_appeal_id")),
    )
    op.create_index(
        "ix_overrides_player_id_action_expires_at",
        "overrides",
        ["player_id", "action", "expires_at"],
    )
    op.create_index("ix_overrides_expires_at", "overrides", ["expires_at"])
    op.create_table(
        "override_uses",
        sa.Column("override_id", sa.Uuid(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("n >= 1", name=op.f("ck_override_uses_n")),
        sa.ForeignKeyConstraint(
            ["override_id"], ["overrides.id"], name=op.f("fk_override_uses_override_id_overrides")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["policy_decisions.id"],
            name=op.f("fk_override_uses_decision_id_policy_decisions"),
        ),
        sa.PrimaryKeyConstraint("override_id", "n", name=op.f("pk_override_uses")),
        sa.UniqueConstraint(
            "override_id", "decision_id", name=op.f("uq_override_uses_override_id_decision_id")
        ),
    )
    op.create_table(
        "override_expiries",
        sa.Column("override_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "why IN ('period_ended', 'uses_spent')", name=op.f("ck_override_expiries_why")
        ),
        sa.ForeignKeyConstraint(
            ["override_id"],
            ["overrides.id"],
            name=op.f("fk_override_expiries_override_id_overrides"),
        ),
        sa.PrimaryKeyConstraint("override_id", name=op.f("pk_override_expiries")),
    )


def _rules() -> None:
    op.execute("""
CREATE FUNCTION pw_override_granted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM appeals a WHERE a.id = NEW.appeal_id
                   AND a.player_id = NEW.player_id AND a.decision_id = NEW.decision_id
                   AND a.state = 'decided' AND a.outcome = 'overturned') THEN
        RAISE EXCEPTION 'override %: appeal % is not player %''s overturned appeal of decision %',
            NEW.id, NEW.appeal_id, NEW.player_id, NEW.decision_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM policy_decisions d WHERE d.id = NEW.decision_id
                   AND d.player_id = NEW.player_id AND d.action = NEW.action
                   AND d.effect = 'deny' AND NEW.rule_ids <@ d.rule_ids) THEN
        RAISE EXCEPTION 'override %: rules % did not refuse % in decision %',
            NEW.id, NEW.rule_ids, NEW.action, NEW.decision_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER overrides_granted BEFORE INSERT ON overrides
    FOR EACH ROW EXECUTE FUNCTION pw_override_granted();
ALTER TABLE overrides ENABLE ALWAYS TRIGGER overrides_granted;

CREATE FUNCTION pw_override_used() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o overrides%ROWTYPE;
BEGIN
    SELECT * INTO o FROM overrides WHERE id = NEW.override_id;
    IF o.max_uses IS NOT NULL AND NEW.n > o.max_uses THEN
        RAISE EXCEPTION 'override %: use % of at most %', o.id, NEW.n, o.max_uses
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.n > 1 AND NOT EXISTS (SELECT 1 FROM override_uses
                                 WHERE override_id = NEW.override_id AND n = NEW.n - 1) THEN
        RAISE EXCEPTION 'override %: use % before use %', o.id, NEW.n, NEW.n - 1
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.at < o.granted_at OR NEW.at >= o.expires_at THEN
        RAISE EXCEPTION 'override %: used at % outside [%, %)', o.id, NEW.at, o.granted_at,
            o.expires_at USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM policy_decisions d WHERE d.id = NEW.decision_id
                   AND d.player_id = o.player_id AND d.action = o.action
                   AND d.effect = 'allow') THEN
        RAISE EXCEPTION 'override %: decision % did not allow % for player %',
            o.id, NEW.decision_id, o.action, o.player_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER override_uses_checked BEFORE INSERT ON override_uses
    FOR EACH ROW EXECUTE FUNCTION pw_override_used();
ALTER TABLE override_uses ENABLE ALWAYS TRIGGER override_uses_checked;

CREATE FUNCTION pw_override_expired() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o overrides%ROWTYPE;
BEGIN
    SELECT * INTO o FROM overrides WHERE id = NEW.override_id;
    IF NEW.why = 'period_ended' AND NEW.at < o.expires_at THEN
        RAISE EXCEPTION 'override % runs until %, not over at %', o.id, o.expires_at, NEW.at
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.why = 'uses_spent' AND (o.max_uses IS NULL OR
        (SELECT count(*) FROM override_uses WHERE override_id = o.id) < o.max_uses) THEN
        RAISE EXCEPTION 'override %: its uses are not spent', o.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER override_expiries_checked BEFORE INSERT ON override_expiries
    FOR EACH ROW EXECUTE FUNCTION pw_override_expired();
ALTER TABLE override_expiries ENABLE ALWAYS TRIGGER override_expiries_checked;
""")


def downgrade() -> None:  # refused while an appeal_overturn request exists: never deleted
    op.execute(
        "DELETE FROM vault.reveal_rules WHERE actor_role = 'compliance_officer'"
        " AND purpose = 'appeal_review'"
    )
    op.drop_table("override_expiries")
    op.drop_table("override_uses")
    op.drop_table("overrides")
    op.execute("DROP FUNCTION pw_override_expired()")
    op.execute("DROP FUNCTION pw_override_used()")
    op.execute("DROP FUNCTION pw_override_granted()")
    op.drop_constraint(op.f("ck_appeals_outcome_reason_is_a_vault_token"), "appeals", type_="check")
    _kinds(BEFORE)
