"""API clients' secrets are stored sealed, and a rotation keeps the previous one for an overlap.

New columns: `secret_sealed` (the current secret, sealed by the application under its key file,
core/sealing.py), `previous_secret_sealed` and `previous_secret_until` (the secret replaced by a
rotation, which verifies until then). The clear `secret` column becomes nullable: the key is
outside the database, so this migration cannot seal what is there; the application seals every
clear secret when it starts (`pitwarden serve`, `pitwarden migrate`) and a later migration drops
the column (decision 0017).

What PostgreSQL refuses, whatever the code does:

- writing a clear secret: a new client with one, or a clear secret set on an existing row
  (trigger `api_clients_no_clear_secret`, ENABLE ALWAYS); a legacy row may only lose its clear
  secret;
- a client with both or neither of a clear and a sealed secret (`ck_api_clients_one_secret`);
- a previous secret without its end, or beside a clear current one
  (`ck_api_clients_previous_secret`).

The application role may now update the secret columns (sealing, rotation), nothing else new.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_clients", sa.Column("secret_sealed", sa.LargeBinary(), nullable=True))
    op.add_column(
        "api_clients", sa.Column("previous_secret_sealed", sa.LargeBinary(), nullable=True)
    )
    op.add_column(
        "api_clients",
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.alter_column("api_clients", "secret", nullable=True)
    op.create_check_constraint(
        op.f("ck_api_clients_one_secret"), "api_clients", "num_nonnulls(secret, secret_sealed) = 1"
    )
    op.create_check_constraint(
        op.f("ck_api_clients_previous_secret"),
        "api_clients",
        "(previous_secret_sealed IS NULL) = (previous_secret_until IS NULL)"
        " AND (previous_secret_sealed IS NULL OR secret_sealed IS NOT NULL)",
    )
    op.execute("""
CREATE FUNCTION pw_no_clear_secret() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.secret IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.secret IS DISTINCT FROM OLD.secret) THEN
        RAISE EXCEPTION 'api_clients.secret takes no clear secret (client %): store it sealed in secret_sealed',
            NEW.client_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_clients_no_clear_secret BEFORE INSERT OR UPDATE OF secret ON api_clients
    FOR EACH ROW EXECUTE FUNCTION pw_no_clear_secret();
ALTER TABLE api_clients ENABLE ALWAYS TRIGGER api_clients_no_clear_secret;
GRANT UPDATE (secret, secret_sealed, previous_secret_sealed, previous_secret_until)
    ON api_clients TO pitwarden_app;
""")


def downgrade() -> None:
    # A sealed secret cannot go back into the clear column from here (the key is not in the
    # database): refuse rather than leave clients that can never sign again.
    op.execute("""
DO $$ BEGIN
    IF EXISTS (SELECT FROM api_clients WHERE secret IS NULL) THEN
        RAISE EXCEPTION 'api_clients holds sealed secrets: downgrading below 0011 would lose them';
    END IF;
END $$;
REVOKE UPDATE (secret, secret_sealed, previous_secret_sealed, previous_secret_until)
    ON api_clients FROM pitwarden_app;
DROP TRIGGER api_clients_no_clear_secret ON api_clients;
DROP FUNCTION pw_no_clear_secret();
""")
    op.drop_constraint(op.f("ck_api_clients_previous_secret"), "api_clients")
    op.drop_constraint(op.f("ck_api_clients_one_secret"), "api_clients")
    op.alter_column("api_clients", "secret", nullable=False)
    op.drop_column("api_clients", "previous_secret_until")
    op.drop_column("api_clients", "previous_secret_sealed")
    op.drop_column("api_clients", "secret_sealed")
