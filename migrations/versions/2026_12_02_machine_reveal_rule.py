"""The vault's machine role: what a signed API client may reveal (decision 0021).

Over the machine API the actor is the client itself, acting for no person, and a machine has
no officer's role: it reveals under the role `service`, for one purpose, `payout` (the legal
name, IBAN and country a payout needs). Every other reveal by a client, the data subject
export included, finds no rule and is refused; officers reveal through the console.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("legal_name", "iban", "country")


def upgrade() -> None:
    rows = ", ".join(f"('service', 'payout', '{field}')" for field in FIELDS)
    op.execute(f"INSERT INTO vault.reveal_rules (actor_role, purpose, field) VALUES {rows}")


def downgrade() -> None:
    op.execute("DELETE FROM vault.reveal_rules WHERE actor_role = 'service'")
