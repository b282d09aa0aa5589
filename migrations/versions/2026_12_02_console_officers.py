"""The officers' console: accounts, server-side sessions, sign-in failures; console rulesets.

- `officers`: one row a person. A local account has an Argon2id password hash and, once
  enrolled, a TOTP secret sealed by the application (core/sealing.py, never in clear); a
  single-sign-on account names its identity provider's (issuer, subject). Never deleted:
  disabled, so that every decision and event naming an officer keeps naming someone.
- `officer_recovery_codes`: SHA-256 of one-time codes; a code is used once (`used_at`).
- `console_sessions`: the browser holds a random token, the database its SHA-256 only. A session
  starts before sign-in (it carries the OpenID Connect state, nonce and PKCE verifier, or the
  first factor's success while the second is asked), becomes active with an officer, and ends
  (sign-out, timeout, ended from another session) for good.
- `console_sign_in_failures`: append-only, what the throttle counts (per name and per address).
- Console rulesets are activated in the policy registry under the scope `console`, beside the
  jurisdictions of the money rulesets.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("officer", "senior_officer", "dpo", "auditor", "regulator", "administrator")


def upgrade() -> None:
    roles = ", ".join(f"'{role}'" for role in ROLES)
    op.create_table(
        "officers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("totp_enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("oidc_issuer", sa.Text(), nullable=True),
        sa.Column("oidc_subject", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"role IN ({roles})", name=op.f("ck_officers_role")),
        sa.CheckConstraint(
            "username ~ '^[a-z0-9][a-z0-9._@-]{1,63}$'", name=op.f("ck_officers_username")
        ),
        sa.CheckConstraint(
            "password_hash IS NULL OR password_hash LIKE '$argon2id$%'",
            name=op.f("ck_officers_argon2id"),
        ),
        sa.CheckConstraint(
            "(oidc_issuer IS NULL) = (oidc_subject IS NULL)", name=op.f("ck_officers_oidc")
        ),
        sa.CheckConstraint(
            "password_hash IS NOT NULL OR oidc_subject IS NOT NULL",
            name=op.f("ck_officers_can_sign_in"),
        ),
        sa.CheckConstraint(
            "(totp_sealed IS NULL) = (totp_enrolled_at IS NULL)", name=op.f("ck_officers_totp")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officers")),
        sa.UniqueConstraint("username", name=op.f("uq_officers_username")),
        sa.UniqueConstraint(
            "oidc_issuer", "oidc_subject", name=op.f("uq_officers_oidc_issuer_oidc_subject")
        ),
    )
    op.create_table(
        "officer_recovery_codes",
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
            name=op.f("fk_officer_recovery_codes_officer_id_officers"),
        ),
        sa.PrimaryKeyConstraint("officer_id", "code_hash", name=op.f("pk_officer_recovery_codes")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=True),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("second_factor_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("pending", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.CheckConstraint(
            "stage IN ('signing_in', 'second_factor', 'enrolling', 'active')",
            name=op.f("ck_console_sessions_stage"),
        ),
        sa.CheckConstraint(
            "stage = 'signing_in' OR officer_id IS NOT NULL",
            name=op.f("ck_console_sessions_officer"),
        ),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (ended_reason IS NULL)", name=op.f("ck_console_sessions_end")
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_console_sessions_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index("ix_console_sessions_officer_id", "console_sessions", ["officer_id"])
    op.create_table(
        "console_sign_in_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sign_in_failures")),
    )
    op.create_index(
        "ix_console_sign_in_failures_username_at", "console_sign_in_failures", ["username", "at"]
    )
    op.create_index(
        "ix_console_sign_in_failures_address_at", "console_sign_in_failures", ["address", "at"]
    )
    op.execute("""
CREATE TRIGGER console_sign_in_failures_no_update_delete BEFORE UPDATE OR DELETE
    ON console_sign_in_failures FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER console_sign_in_failures_no_truncate BEFORE TRUNCATE
    ON console_sign_in_failures FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE console_sign_in_failures ENABLE ALWAYS TRIGGER console_sign_in_failures_no_update_delete;
ALTER TABLE console_sign_in_failures ENABLE ALWAYS TRIGGER console_sign_in_failures_no_truncate;
CREATE TRIGGER officers_no_delete BEFORE DELETE ON officers
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE officers ENABLE ALWAYS TRIGGER officers_no_delete;
GRANT SELECT, INSERT ON officers, officer_recovery_codes, console_sessions,
    console_sign_in_failures TO pitwarden_app;
GRANT UPDATE (display_name, role, password_hash, totp_sealed, totp_enrolled_at, disabled_at)
    ON officers TO pitwarden_app;
GRANT UPDATE (used_at) ON officer_recovery_codes TO pitwarden_app;
GRANT DELETE ON officer_recovery_codes TO pitwarden_app;
GRANT UPDATE (token_hash, officer_id, stage, csrf_token, last_seen_at, second_factor_at, ended_at,
    ended_reason, pending) ON console_sessions TO pitwarden_app;
""")
    op.drop_constraint(op.f("ck_policy_activations_jurisdiction"), "policy_activations")
    op.create_check_constraint(
        op.f("ck_policy_activations_jurisdiction"),
        "policy_activations",
        "jurisdiction ~ '^([A-Z]{2}|[*]|console)$'",
    )


def downgrade() -> None:
    # fails while console activations exist: they are append-only, like every activation
    op.drop_constraint(op.f("ck_policy_activations_jurisdiction"), "policy_activations")
    op.create_check_constraint(
        op.f("ck_policy_activations_jurisdiction"),
        "policy_activations",
        "jurisdiction ~ '^([A-Z]{2}|[*])$'",
    )
    for table in (
        "console_sign_in_failures",
        "console_sessions",
        "officer_recovery_codes",
        "officers",
    ):
        op.drop_table(table)
