"""ORM schema of the console's tables (migration 0012 adds their grants and triggers)."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import TS, Base

ROLES = ("officer", "senior_officer", "dpo", "auditor", "regulator", "administrator")


class Officer(Base):
    """A person who signs in to the console: a local account (Argon2id password, then TOTP) or
    an identity at an OpenID provider (issuer, subject). Disabled, never deleted."""

    __tablename__ = "officers"
    __table_args__ = (
        sa.CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
        sa.CheckConstraint("username ~ '^[a-z0-9][a-z0-9._@-]{1,63}$'", name="username"),
        sa.CheckConstraint(
            "password_hash IS NULL OR password_hash LIKE '$argon2id$%'", name="argon2id"
        ),
        sa.CheckConstraint("(oidc_issuer IS NULL) = (oidc_subject IS NULL)", name="oidc"),
        sa.CheckConstraint(
            "password_hash IS NOT NULL OR oidc_subject IS NOT NULL", name="can_sign_in"
        ),
        sa.CheckConstraint("(totp_sealed IS NULL) = (totp_enrolled_at IS NULL)", name="totp"),
        sa.UniqueConstraint("oidc_issuer", "oidc_subject"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.Text, unique=True)
    display_name: Mapped[str] = mapped_column(sa.Text)
    role: Mapped[str] = mapped_column(sa.Text)
    password_hash: Mapped[str | None] = mapped_column(sa.Text)
    totp_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(TS)
    oidc_issuer: Mapped[str | None] = mapped_column(sa.Text)
    oidc_subject: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(sa.Text)
    disabled_at: Mapped[datetime | None] = mapped_column(TS)


class OfficerRecoveryCode(Base):
    """SHA-256 of a one-time recovery code (the codes are random: no slow hash needed)."""

    __tablename__ = "officer_recovery_codes"

    officer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("officers.id"), primary_key=True)
    code_hash: Mapped[bytes] = mapped_column(sa.LargeBinary, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    used_at: Mapped[datetime | None] = mapped_column(TS)


class ConsoleSession(Base):
    """A browser's session, by the SHA-256 of its cookie's token."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        sa.CheckConstraint(
            "stage IN ('signing_in', 'second_factor', 'enrolling', 'active')", name="stage"
        ),
        sa.CheckConstraint("stage = 'signing_in' OR officer_id IS NOT NULL", name="officer"),
        sa.CheckConstraint("(ended_at IS NULL) = (ended_reason IS NULL)", name="end"),
        sa.Index("ix_console_sessions_officer_id", "officer_id"),
    )

    token_hash: Mapped[bytes] = mapped_column(sa.LargeBinary, primary_key=True)
    officer_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("officers.id"))
    stage: Mapped[str] = mapped_column(sa.Text)
    csrf_token: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    last_seen_at: Mapped[datetime] = mapped_column(TS)
    second_factor_at: Mapped[datetime | None] = mapped_column(TS)
    ended_at: Mapped[datetime | None] = mapped_column(TS)
    ended_reason: Mapped[str | None] = mapped_column(sa.Text)
    address: Mapped[str] = mapped_column(sa.Text)
    user_agent: Mapped[str] = mapped_column(sa.Text)
    pending: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")


class ConsoleSignInFailure(Base):
    """A failed sign-in, counted by the throttle per name and per address (append-only)."""

    __tablename__ = "console_sign_in_failures"
    __table_args__ = (
        sa.Index("ix_console_sign_in_failures_username_at", "username", "at"),
        sa.Index("ix_console_sign_in_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    username: Mapped[str] = mapped_column(sa.Text)
    address: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(TS)
    reason: Mapped[str] = mapped_column(sa.Text)


APPROVAL_KINDS = (
    "killswitch_on", "aml_hold_clear", "payout_approve", "ruleset_activate", "kyc_raise",
    "appeal_overturn",
)  # fmt: skip


class ApprovalRequest(Base):
    """A protection to lift, asked by one officer, decided (once, in time) by another."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({', '.join(repr(k) for k in APPROVAL_KINDS)})", name="kind"),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('approved', 'rejected')", name="outcome"
        ),
        sa.CheckConstraint("num_nulls(decided_by, decided_at, outcome) IN (0, 3)", name="decided"),
        sa.CheckConstraint("decided_by IS NULL OR decided_by <> requested_by", name="not_own"),
        sa.CheckConstraint("decided_at IS NULL OR decided_at < expires_at", name="in_time"),
        sa.CheckConstraint("expires_at > requested_at", name="order"),
        sa.CheckConstraint("length(btrim(reason)) > 0", name="reason"),
        sa.Index(
            "ix_approval_requests_open",
            "expires_at",
            postgresql_where=sa.text("decided_at IS NULL"),
        ),
        sa.Index("ix_approval_requests_requested_at", "requested_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str] = mapped_column(sa.Text)
    player_id: Mapped[uuid.UUID | None] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(sa.Text)
    requested_by: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("officers.id"))
    requested_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime] = mapped_column(TS)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("officers.id"))
    decided_at: Mapped[datetime | None] = mapped_column(TS)
    outcome: Mapped[str | None] = mapped_column(sa.Text)
    decision_reason: Mapped[str | None] = mapped_column(sa.Text)


class OfficerPasskey(Base):
    """A WebAuthn credential of an officer (migration 0014)."""

    __tablename__ = "officer_passkeys"
    __table_args__ = (
        sa.CheckConstraint("sign_count >= 0", name="sign_count"),
        sa.Index("ix_officer_passkeys_officer_id", "officer_id"),
    )

    credential_id: Mapped[bytes] = mapped_column(sa.LargeBinary, primary_key=True)
    officer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("officers.id"))
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    sign_count: Mapped[int] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    last_used_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
