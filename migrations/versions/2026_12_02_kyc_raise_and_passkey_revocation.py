"""Four-eyes for raising a player's KYC level, and passkeys an administrator revokes.

- A raised KYC level lowers what the gate asks of the player (withdrawals, due diligence), so it
  lifts a protection: a request a senior officer decides (`kyc_raise`). A lowered level still
  takes effect at once.
- An officer who lost an authenticator has their sign-in reset by an administrator: their
  passkeys are revoked (`revoked_at`; a passkey is never deleted, so "which key signed in when"
  stays answerable) and no longer sign in.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("killswitch_on", "aml_hold_clear", "payout_approve", "ruleset_activate")
KINDS = (*BEFORE, "kyc_raise")


def _kinds(kinds: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{kind}'" for kind in kinds)
    op.drop_constraint(op.f("ck_approval_requests_kind"), "approval_requests", type_="check")
    op.create_check_constraint(
        op.f("ck_approval_requests_kind"), "approval_requests", f"kind IN ({listed})"
    )


def upgrade() -> None:
    _kinds(KINDS)
    op.add_column(
        "officer_passkeys", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("GRANT UPDATE (revoked_at) ON officer_passkeys TO pitwarden_app")


def downgrade() -> None:  # refused while a kyc_raise request exists: requests are never deleted
    op.drop_column("officer_passkeys", "revoked_at")
    _kinds(BEFORE)
