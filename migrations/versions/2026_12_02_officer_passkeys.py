"""Passkeys (WebAuthn) of console officers: the credential's id and public key, and its
signature counter (a counter that goes backwards betrays a cloned authenticator).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "officer_passkeys",
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("sign_count >= 0", name=op.f("ck_officer_passkeys_sign_count")),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_officer_passkeys_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_officer_passkeys")),
    )
    op.create_index("ix_officer_passkeys_officer_id", "officer_passkeys", ["officer_id"])
    op.execute("""
GRANT SELECT, INSERT ON officer_passkeys TO pitwarden_app;
GRANT UPDATE (sign_count, last_used_at) ON officer_passkeys TO pitwarden_app;
""")


def downgrade() -> None:
    op.drop_table("officer_passkeys")
