"""API client ids are plain names: letters, digits, '.', '_' and '-', at most 64.

Idempotency records are scoped by client id, and the player API scopes its own as
`player:<uuid>`: a client registered under such a name would share a player's records. The
colon is now impossible in a client id, in code and here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        op.f("ck_api_clients_client_id"), "api_clients", "client_id ~ '^[A-Za-z0-9._-]{1,64}$'"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_api_clients_client_id"), "api_clients")
