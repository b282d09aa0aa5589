"""The application role may read `alembic_version`: `/readyz` compares the database's migration
with the code's. A migration, not a statement run at every start: two processes starting at once
(a server and a CLI command) would otherwise GRANT together, and PostgreSQL refuses one of them
("tuple concurrently updated").

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("GRANT SELECT ON alembic_version TO pitwarden_app")


def downgrade() -> None:
    op.execute("REVOKE SELECT ON alembic_version FROM pitwarden_app")
