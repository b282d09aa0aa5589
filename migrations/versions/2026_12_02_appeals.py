"""Appeals (issue 15): a player contests a refusal; the player's page and its sessions; messages
between officer and player; the notification outbox.

- `player_sessions`: the player's page, held server-side like the console's (token hash, CSRF
  token, idle and absolute timeouts), opened by exchanging a player token once: its `jti`
  (`token_id`) is unique, so the same token never opens a second session.
- `appeals`: one per contested refusal. What it is (player, decision, jurisdiction, the sealed
  explanation's vault token, the documents' tokens, when it was filed and when it must be
  acknowledged) never changes; its state moves along the edges below, each move with its
  `appeal_transitions` row written first; the resolution deadline only moves later (the clock
  stops while the officer waits for the player: `clock_paused_at`). Outcome columns are there for
  the officers' side (slice 2).
- `appeal_messages`: officer and player write to each other; every body is sealed in the vault
  (it may hold personal data), only its token is here. Append-only.
- the vault's reveal rule `player` / `own_appeal` / `document_image`: the player reads back what
  they wrote and what the officer wrote to them.
- `notification_outbox`: what the player is to be told (a kind and an appeal, never words that
  could hold personal data); a sender marks a row delivered, once.

What PostgreSQL refuses, whatever the code does:

- an appeal of a decision that is not the player's own, or not a refusal (trigger
  `appeals_rules`), or opened in another state than `filed`, or without its opening transition
  (deferred `appeals_opened`);
- two open appeals of one decision (partial unique index `uq_appeals_open_decision`);
- changing what an appeal is, moving it off the lifecycle's edges or without its transition
  row, changing a closed one, bringing the resolution deadline forward;
- UPDATE, DELETE, TRUNCATE of transitions and messages; DELETE and TRUNCATE of appeals, sessions
  and the outbox; an outbox row changed other than delivered once (ENABLE ALWAYS, all).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = ("filed", "acknowledged", "info_requested", "answered", "decided", "withdrawn")
OPEN = ("filed", "acknowledged", "info_requested", "answered")
EDGES = [
    ("filed", "acknowledged"),
    ("filed", "info_requested"),
    ("filed", "decided"),
    ("acknowledged", "info_requested"),
    ("acknowledged", "decided"),
    ("info_requested", "answered"),
    ("answered", "info_requested"),
    ("answered", "decided"),
    *((state, "withdrawn") for state in OPEN),
]
APPEND_ONLY = ("appeal_transitions", "appeal_messages")
NO_DELETE = ("appeals", "player_sessions", "notification_outbox")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    _player_sessions()
    _appeals()
    _messages_and_outbox()
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
    for table in NO_DELETE:
        op.execute(f"""
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION pw_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION pw_refuse_change();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_delete;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate;
GRANT SELECT, INSERT ON {table} TO pitwarden_app;
""")
    op.execute("""
GRANT UPDATE (last_seen_at, ended_at, ended_reason) ON player_sessions TO pitwarden_app;
GRANT UPDATE (state, acknowledged_at, clock_paused_at, resolution_due_at, decided_at,
    decided_by, outcome, outcome_reason, adr_body, updated_at) ON appeals TO pitwarden_app;
GRANT UPDATE (delivered_at) ON notification_outbox TO pitwarden_app;
""")
    # The player reads back, on their own page, what they wrote in their appeals (and what the
    # officer wrote to them): documents of their own, revealed and journaled like any other.
    op.execute(
        "INSERT INTO vault.reveal_rules (actor_role, purpose, field)"
        " VALUES ('player', 'own_appeal', 'document_image')"
    )


def _player_sessions() -> None:
    op.create_table(
        "player_sessions",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("token_id", sa.Text(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (ended_reason IS NULL)", name=op.f("ck_player_sessions_end")
        ),
        sa.CheckConstraint(
            "octet_length(token_hash) = 32", name=op.f("ck_player_sessions_token_hash")
        ),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_player_sessions_player_id_players")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_player_sessions")),
        sa.UniqueConstraint("token_id", name=op.f("uq_player_sessions_token_id")),
    )
    op.create_index("ix_player_sessions_player_id", "player_sessions", ["player_id"])


def _appeals() -> None:
    op.create_table(
        "appeals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("jurisdiction", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("explanation_token", sa.Text(), nullable=False),
        sa.Column("document_tokens", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ack_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column("adr_body", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("state", STATES), name=op.f("ck_appeals_state")),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('upheld', 'overturned')",
            name=op.f("ck_appeals_outcome"),
        ),
        sa.CheckConstraint(
            "(state = 'decided') = (outcome IS NOT NULL)"
            " AND num_nulls(decided_at, outcome, outcome_reason) IN (0, 3)",
            name=op.f("ck_appeals_decided"),
        ),
        sa.CheckConstraint(
            "(state = 'info_requested') = (clock_paused_at IS NOT NULL)",
            name=op.f("ck_appeals_clock_paused_while_waiting_for_the_player"),
        ),
        sa.CheckConstraint(
            "state IN ('filed', 'withdrawn') OR acknowledged_at IS NOT NULL",
            name=op.f("ck_appeals_acknowledged"),
        ),
        sa.CheckConstraint(
            "filed_at < ack_due_at AND ack_due_at <= resolution_due_at",
            name=op.f("ck_appeals_deadlines"),
        ),
        sa.CheckConstraint(
            "explanation_token LIKE 'pii\\_%'", name=op.f("ck_appeals_explanation_is_a_vault_token")
        ),
        sa.CheckConstraint("jurisdiction ~ '^[A-Z]{2}$'", name=op.f("ck_appeals_jurisdiction")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_appeals_player_id_players")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["policy_decisions.id"],
            name=op.f("fk_appeals_decision_id_policy_decisions"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["officers.id"], name=op.f("fk_appeals_decided_by_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeals")),
    )
    open_states = sa.text(_in("state", OPEN))
    op.create_index(
        "uq_appeals_open_decision", "appeals", ["decision_id"], unique=True,
        postgresql_where=open_states,
    )  # fmt: skip
    op.create_index("ix_appeals_player_id_filed_at", "appeals", ["player_id", "filed_at"])
    op.create_index(
        "ix_appeals_open_by_deadline", "appeals", ["resolution_due_at", "id"],
        postgresql_where=open_states,
    )  # fmt: skip
    op.create_table(
        "appeal_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("appeal_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(from_state IS NULL) = (to_state = 'filed')",
            name=op.f("ck_appeal_transitions_opens_filed"),
        ),
        sa.ForeignKeyConstraint(
            ["appeal_id"], ["appeals.id"], name=op.f("fk_appeal_transitions_appeal_id_appeals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_transitions")),
    )
    op.create_index("ix_appeal_transitions_appeal_id_id", "appeal_transitions", ["appeal_id", "id"])


def _messages_and_outbox() -> None:
    op.create_table(
        "appeal_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("appeal_id", sa.Uuid(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("body_token", sa.Text(), nullable=False),
        sa.Column("document_tokens", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "author IN ('player', 'officer')", name=op.f("ck_appeal_messages_author")
        ),
        sa.CheckConstraint(
            "body_token LIKE 'pii\\_%'", name=op.f("ck_appeal_messages_body_is_a_vault_token")
        ),
        sa.ForeignKeyConstraint(
            ["appeal_id"], ["appeals.id"], name=op.f("fk_appeal_messages_appeal_id_appeals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_messages")),
    )
    op.create_index("ix_appeal_messages_appeal_id_id", "appeal_messages", ["appeal_id", "id"])
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("appeal_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind ~ '^[a-z_]+(\\.[a-z_]+)+$'", name=op.f("ck_notification_outbox_kind")
        ),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_notification_outbox_player_id_players")
        ),
        sa.ForeignKeyConstraint(
            ["appeal_id"], ["appeals.id"], name=op.f("fk_notification_outbox_appeal_id_appeals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
    )
    op.create_index(
        "ix_notification_outbox_undelivered", "notification_outbox", ["id"],
        postgresql_where=sa.text("delivered_at IS NULL"),
    )  # fmt: skip
    op.create_index(
        "ix_notification_outbox_player_id_id", "notification_outbox", ["player_id", "id"]
    )


def _rules() -> None:
    edges = ", ".join(f"('{a}', '{b}')" for a, b in EDGES)
    closed = ", ".join(f"'{s}'" for s in STATES if s not in OPEN)
    op.execute(f"""
CREATE FUNCTION pw_appeal_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'filed' THEN
            RAISE EXCEPTION 'an appeal opens filed, not %', NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM policy_decisions d WHERE d.id = NEW.decision_id
                       AND d.player_id = NEW.player_id AND d.effect = 'deny') THEN
            RAISE EXCEPTION 'appeal %: decision % is not a refusal of player %',
                NEW.id, NEW.decision_id, NEW.player_id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.state IN ({closed}) THEN
        RAISE EXCEPTION 'appeal % is % and cannot change', OLD.id, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.id, NEW.player_id, NEW.decision_id, NEW.jurisdiction, NEW.explanation_token,
        NEW.document_tokens, NEW.filed_at, NEW.ack_due_at)
       IS DISTINCT FROM
       (OLD.id, OLD.player_id, OLD.decision_id, OLD.jurisdiction, OLD.explanation_token,
        OLD.document_tokens, OLD.filed_at, OLD.ack_due_at) THEN
        RAISE EXCEPTION 'appeal % cannot change what it is', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.resolution_due_at < OLD.resolution_due_at THEN
        RAISE EXCEPTION 'appeal %: the resolution deadline only moves later', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF (OLD.state, NEW.state) NOT IN (VALUES {edges}) THEN
            RAISE EXCEPTION 'an appeal that is % cannot become %', OLD.state, NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM appeal_transitions t WHERE t.appeal_id = NEW.id
                       AND t.from_state = OLD.state AND t.to_state = NEW.state
                       AND t.at = NEW.updated_at) THEN
            RAISE EXCEPTION 'appeal % moves to % only with its transition recorded',
                NEW.id, NEW.state USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER appeals_rules BEFORE INSERT OR UPDATE ON appeals
    FOR EACH ROW EXECUTE FUNCTION pw_appeal_rules();
ALTER TABLE appeals ENABLE ALWAYS TRIGGER appeals_rules;

CREATE FUNCTION pw_appeal_opened() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM appeal_transitions
                   WHERE appeal_id = NEW.id AND from_state IS NULL) THEN
        RAISE EXCEPTION 'appeal % was filed without its opening transition', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER appeals_opened AFTER INSERT ON appeals
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pw_appeal_opened();
ALTER TABLE appeals ENABLE ALWAYS TRIGGER appeals_opened;

CREATE FUNCTION pw_delivered_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.delivered_at IS NOT NULL OR NEW.delivered_at IS NULL
       OR (NEW.id, NEW.player_id, NEW.appeal_id, NEW.kind, NEW.created_at)
          IS DISTINCT FROM (OLD.id, OLD.player_id, OLD.appeal_id, OLD.kind, OLD.created_at) THEN
        RAISE EXCEPTION 'notification %: only its delivery is written, once', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER notification_outbox_delivered_once BEFORE UPDATE ON notification_outbox
    FOR EACH ROW EXECUTE FUNCTION pw_delivered_once();
ALTER TABLE notification_outbox ENABLE ALWAYS TRIGGER notification_outbox_delivered_once;
""")


def downgrade() -> None:
    op.execute("DELETE FROM vault.reveal_rules WHERE actor_role = 'player'")
    op.drop_table("notification_outbox")
    op.drop_table("appeal_messages")
    op.drop_table("appeal_transitions")
    op.drop_table("appeals")
    op.drop_table("player_sessions")
    op.execute("DROP FUNCTION pw_delivered_once()")
    op.execute("DROP FUNCTION pw_appeal_opened()")
    op.execute("DROP FUNCTION pw_appeal_rules()")
