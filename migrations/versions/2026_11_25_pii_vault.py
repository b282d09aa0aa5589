"""PII vault: a schema of its own, reachable only through the role `pitwarden_vault`.

The application role gets no privilege on the schema at all (not even USAGE), so no query it
can write reaches personal data. The vault role may append to the journal, so that every
vault action and its event commit together; it reads nothing else in `public`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = (
    "legal_name",
    "date_of_birth",
    "address",
    "country",
    "email",
    "phone",
    "national_id",
    "iban",
)
FIELD_LIST = ", ".join(f"'{field}'" for field in FIELDS)

# Which role may see which field in clear, for which purpose: the policy engine (issue 4) is
# meant to take this over; until then the table is the rule, and every decision is journaled.
REVEAL_RULES = {
    ("compliance_officer", "kyc_review"): (
        "legal_name",
        "date_of_birth",
        "address",
        "country",
        "national_id",
        "document_image",
    ),
    ("compliance_officer", "aml_case"): (
        "legal_name",
        "date_of_birth",
        "address",
        "country",
        "email",
        "phone",
        "national_id",
        "iban",
        "document_image",
    ),
    ("payments_officer", "payout"): ("legal_name", "iban", "country"),
    ("support_agent", "player_contact"): ("legal_name", "email", "phone"),
    ("data_protection_officer", "dsar"): (*FIELDS, "document_image"),
}


def upgrade() -> None:
    op.execute(f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pitwarden_vault') THEN
        CREATE ROLE pitwarden_vault LOGIN;
    END IF;
END $$;
CREATE SCHEMA vault;
REVOKE ALL ON SCHEMA vault FROM PUBLIC;

CREATE TABLE vault.data_keys (
    player_id uuid PRIMARY KEY,
    kek_version integer NOT NULL CHECK (kek_version > 0),
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL,
    rewrapped_at timestamptz
);
CREATE INDEX ix_vault_data_keys_kek_version ON vault.data_keys (kek_version);

CREATE TABLE vault.fields (
    player_id uuid NOT NULL,
    field text NOT NULL CHECK (field IN ({FIELD_LIST})),
    token text NOT NULL UNIQUE,
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (player_id, field)
);

CREATE TABLE vault.documents (
    token text PRIMARY KEY,
    player_id uuid NOT NULL,
    kind text NOT NULL,
    content_type text NOT NULL,
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ix_vault_documents_player_id ON vault.documents (player_id);

CREATE TABLE vault.blind_indexes (
    kind text NOT NULL,
    digest bytea NOT NULL CHECK (octet_length(digest) = 32),
    player_id uuid NOT NULL,
    PRIMARY KEY (kind, digest, player_id)
);
CREATE INDEX ix_vault_blind_indexes_player_id ON vault.blind_indexes (player_id);

-- Crypto-shredding leaves this and nothing readable: the data key is gone.
CREATE TABLE vault.erasures (
    player_id uuid PRIMARY KEY,
    erased_at timestamptz NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL
);

CREATE TABLE vault.reveal_rules (
    actor_role text NOT NULL,
    purpose text NOT NULL,
    field text NOT NULL,
    PRIMARY KEY (actor_role, purpose, field)
);

GRANT USAGE ON SCHEMA vault TO pitwarden_vault;
GRANT SELECT, INSERT, UPDATE, DELETE ON vault.data_keys, vault.fields, vault.documents,
    vault.blind_indexes TO pitwarden_vault;
GRANT SELECT, INSERT ON vault.erasures TO pitwarden_vault;
GRANT SELECT ON vault.reveal_rules TO pitwarden_vault;
GRANT USAGE ON SCHEMA public TO pitwarden_vault;
GRANT INSERT ON public.journal_events TO pitwarden_vault;
""")
    rows = ", ".join(
        f"('{role}', '{purpose}', '{field}')"
        for (role, purpose), fields in REVEAL_RULES.items()
        for field in fields
    )
    op.execute(f"INSERT INTO vault.reveal_rules (actor_role, purpose, field) VALUES {rows}")


def downgrade() -> None:
    op.execute("DROP SCHEMA vault CASCADE")
    op.execute("REVOKE ALL ON public.journal_events FROM pitwarden_vault")
    op.execute("REVOKE USAGE ON SCHEMA public FROM pitwarden_vault")
