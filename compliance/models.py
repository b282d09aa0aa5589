"""ORM schema of the responsible-gambling state (the migration makes it append-only)."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models import TS, Base


class RgLimit(Base):
    """A limit request: `amount` (None removes the limit) in force from `effective_at`."""

    __tablename__ = "rg_limits"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('deposit', 'loss', 'wager')", name="kind"),
        sa.CheckConstraint("period IN ('24h', '7d', '30d')", name="period"),
        sa.CheckConstraint("amount IS NULL OR amount >= 0", name="amount"),
        sa.CheckConstraint("effective_at >= requested_at", name="order"),
        sa.Index("ix_rg_limits_player_id_kind", "player_id", "kind", "period"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    kind: Mapped[str] = mapped_column(sa.Text)
    period: Mapped[str] = mapped_column(sa.Text)
    amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    requested_at: Mapped[datetime] = mapped_column(TS)
    effective_at: Mapped[datetime] = mapped_column(TS)
    set_by: Mapped[str] = mapped_column(sa.Text)


class RgExclusion(Base):
    """A time-out or self-exclusion from `starts_at` to `ends_at` (None: indefinite)."""

    __tablename__ = "rg_exclusions"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('time_out', 'self_exclusion')", name="kind"),
        sa.CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="order"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    starts_at: Mapped[datetime] = mapped_column(TS)
    ends_at: Mapped[datetime | None] = mapped_column(TS)
    set_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)


class KycLevel(Base):
    """The player's KYC level from `set_at` on; the newest row is in force."""

    __tablename__ = "kyc_levels"
    __table_args__ = (
        sa.CheckConstraint("level IN ('unverified', 'basic', 'verified')", name="level"),
        sa.Index("ix_kyc_levels_player_id_id", "player_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    level: Mapped[str] = mapped_column(sa.Text)
    set_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    set_at: Mapped[datetime] = mapped_column(TS)


class AmlHold(Base):
    """An AML officer puts a player's withdrawals on hold, or lifts the hold; newest wins."""

    __tablename__ = "aml_holds"
    __table_args__ = (sa.Index("ix_aml_holds_player_id_id", "player_id", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    on_hold: Mapped[bool] = mapped_column(sa.Boolean)
    set_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    set_at: Mapped[datetime] = mapped_column(TS)


class PlayerLink(Base):
    """Two players who share an email, phone, national id or IBAN, or whom an officer linked:
    their money counts together towards the due-diligence threshold."""

    __tablename__ = "player_links"
    __table_args__ = (
        sa.CheckConstraint(
            "basis IN ('email', 'phone', 'national_id', 'iban', 'officer')", name="basis"
        ),
        sa.CheckConstraint("player_id <> linked_player_id", name="distinct"),
        sa.UniqueConstraint("player_id", "linked_player_id", "basis"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    linked_player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"), index=True)
    basis: Mapped[str] = mapped_column(sa.Text)
    linked_at: Mapped[datetime] = mapped_column(TS)


class PlayerUsageHourly(Base):
    """Stakes (wager) and stakes minus payouts (loss) per player and UTC hour of placement;
    kept by a trigger on bets (migration 0007), read by the gate's windows."""

    __tablename__ = "player_usage_hourly"
    __table_args__ = (sa.CheckConstraint("wager >= 0", name="wager"),)

    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(TS, primary_key=True)
    wager: Mapped[int] = mapped_column(sa.BigInteger)
    loss: Mapped[int] = mapped_column(sa.BigInteger)


class PlayerTurnover(Base):
    """Everything a player staked since registration (voided stakes excepted), in the wallet
    currency; kept by a trigger on bets (migration 0007), read for due diligence."""

    __tablename__ = "player_turnover"
    __table_args__ = (sa.CheckConstraint("staked >= 0", name="staked"),)

    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    staked: Mapped[int] = mapped_column(sa.BigInteger)


APPEAL_STATES = ("filed", "acknowledged", "info_requested", "answered", "decided", "withdrawn")
OPEN_APPEAL_STATES = ("filed", "acknowledged", "info_requested", "answered")
_OPEN = sa.text(f"state IN ({', '.join(repr(s) for s in OPEN_APPEAL_STATES)})")


class Appeal(Base):
    """A player's appeal of one of their refusals (migration 0019 adds its rules: what it is
    never changes, its state moves along the lifecycle's edges with a transition each, at most
    one open appeal per decision)."""

    __tablename__ = "appeals"
    __table_args__ = (
        sa.CheckConstraint(f"state IN ({', '.join(repr(s) for s in APPEAL_STATES)})", name="state"),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('upheld', 'overturned')", name="outcome"
        ),
        sa.CheckConstraint(
            "(state = 'decided') = (outcome IS NOT NULL)"
            " AND num_nulls(decided_at, outcome, outcome_reason) IN (0, 3)",
            name="decided",
        ),
        sa.CheckConstraint(
            "(state = 'info_requested') = (clock_paused_at IS NOT NULL)",
            name="clock_paused_while_waiting_for_the_player",
        ),
        sa.CheckConstraint(
            "state IN ('filed', 'withdrawn') OR acknowledged_at IS NOT NULL", name="acknowledged"
        ),
        sa.CheckConstraint(
            "filed_at < ack_due_at AND ack_due_at <= resolution_due_at", name="deadlines"
        ),
        sa.CheckConstraint("explanation_token LIKE 'pii\\_%'", name="explanation_is_a_vault_token"),
        sa.CheckConstraint("jurisdiction ~ '^[A-Z]{2}$'", name="jurisdiction"),
        sa.CheckConstraint(
            "outcome_reason IS NULL OR outcome_reason LIKE 'pii\\_%'",
            name="outcome_reason_is_a_vault_token",
        ),
        sa.Index("uq_appeals_open_decision", "decision_id", unique=True, postgresql_where=_OPEN),
        sa.Index("ix_appeals_player_id_filed_at", "player_id", "filed_at"),
        sa.Index("ix_appeals_open_by_deadline", "resolution_due_at", "id", postgresql_where=_OPEN),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    decision_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("policy_decisions.id"))
    jurisdiction: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)
    explanation_token: Mapped[str] = mapped_column(sa.Text)
    document_tokens: Mapped[list[str]] = mapped_column(sa.ARRAY(sa.Text))
    filed_at: Mapped[datetime] = mapped_column(TS)
    ack_due_at: Mapped[datetime] = mapped_column(TS)
    resolution_due_at: Mapped[datetime] = mapped_column(TS)
    acknowledged_at: Mapped[datetime | None] = mapped_column(TS)
    clock_paused_at: Mapped[datetime | None] = mapped_column(TS)
    decided_at: Mapped[datetime | None] = mapped_column(TS)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("officers.id"))
    outcome: Mapped[str | None] = mapped_column(sa.Text)
    outcome_reason: Mapped[str | None] = mapped_column(sa.Text)
    adr_body: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(TS)


class AppealTransition(Base):
    """One move of an appeal's state, by whom and when (append-only)."""

    __tablename__ = "appeal_transitions"
    __table_args__ = (
        sa.CheckConstraint("(from_state IS NULL) = (to_state = 'filed')", name="opens_filed"),
        sa.Index("ix_appeal_transitions_appeal_id_id", "appeal_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    appeal_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("appeals.id"))
    from_state: Mapped[str | None] = mapped_column(sa.Text)
    to_state: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(TS)


class AppealMessage(Base):
    """A message between officer and player about an appeal; its body is sealed in the vault
    (append-only)."""

    __tablename__ = "appeal_messages"
    __table_args__ = (
        sa.CheckConstraint("author IN ('player', 'officer')", name="author"),
        sa.CheckConstraint("body_token LIKE 'pii\\_%'", name="body_is_a_vault_token"),
        sa.Index("ix_appeal_messages_appeal_id_id", "appeal_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    appeal_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("appeals.id"))
    author: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.Text)
    body_token: Mapped[str] = mapped_column(sa.Text)
    document_tokens: Mapped[list[str]] = mapped_column(sa.ARRAY(sa.Text))
    at: Mapped[datetime] = mapped_column(TS)


class NotificationOutbox(Base):
    """What a player is to be told (a kind and an appeal, no words); delivered once."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        sa.CheckConstraint("kind ~ '^[a-z_]+(\\.[a-z_]+)+$'", name="kind"),
        sa.Index(
            "ix_notification_outbox_undelivered",
            "id",
            postgresql_where=sa.text("delivered_at IS NULL"),
        ),
        sa.Index("ix_notification_outbox_player_id_id", "player_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    appeal_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("appeals.id"))
    kind: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    delivered_at: Mapped[datetime | None] = mapped_column(TS)


class Override(Base):
    """What an overturned appeal grants: the deny rules that refused lifted for the player and
    the action, for a period and at most `max_uses` times (migration 0020: append-only, and
    only for the player's overturned appeal of a refusal by those rules)."""

    __tablename__ = "overrides"
    __table_args__ = (
        sa.CheckConstraint("cardinality(rule_ids) >= 1", name="rules"),
        sa.CheckConstraint("max_uses IS NULL OR max_uses BETWEEN 1 AND 100", name="max_uses"),
        sa.CheckConstraint("expires_at > granted_at", name="period"),
        sa.Index("ix_overrides_player_id_action_expires_at", "player_id", "action", "expires_at"),
        sa.Index("ix_overrides_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    appeal_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("appeals.id"), unique=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("policy_decisions.id"))
    action: Mapped[str] = mapped_column(sa.Text)
    rule_ids: Mapped[list[str]] = mapped_column(sa.ARRAY(sa.Text))
    max_uses: Mapped[int | None] = mapped_column(sa.Integer)
    granted_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime] = mapped_column(TS)
    granted_by: Mapped[str] = mapped_column(sa.Text)


class OverrideUse(Base):
    """An allowing decision an override let through: the n-th use (1, 2, ... never past
    max_uses)."""

    __tablename__ = "override_uses"
    __table_args__ = (
        sa.CheckConstraint("n >= 1", name="n"),
        sa.UniqueConstraint("override_id", "decision_id"),
    )

    override_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("overrides.id"), primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("policy_decisions.id"))
    at: Mapped[datetime] = mapped_column(TS)


class OverrideExpiry(Base):
    """When an override ended: its period over, or its uses spent."""

    __tablename__ = "override_expiries"
    __table_args__ = (sa.CheckConstraint("why IN ('period_ended', 'uses_spent')", name="why"),)

    override_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("overrides.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(TS)
    why: Mapped[str] = mapped_column(sa.Text)
