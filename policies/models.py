"""ORM schema of the policy engine's tables (the migration makes them append-only)."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import TS, Base


class PolicyActivation(Base):
    """From `activated_at` on, `version` decides for `jurisdiction` ("*": wherever no
    jurisdiction has a version of its own; "console": the officers' console). The newest
    activation wins."""

    __tablename__ = "policy_activations"
    __table_args__ = (
        sa.CheckConstraint("jurisdiction ~ '^([A-Z]{2}|[*]|console)$'", name="jurisdiction"),
        sa.CheckConstraint("content_hash ~ '^sha256:[0-9a-f]{64}$'", name="hash"),
        sa.Index("ix_policy_activations_jurisdiction_id", "jurisdiction", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[str] = mapped_column(sa.Text)
    activated_at: Mapped[datetime] = mapped_column(TS)
    activated_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)


class PolicyDecision(Base):
    """One decision: the facts it saw (no personal data), the ruleset, the rules that matched."""

    __tablename__ = "policy_decisions"
    __table_args__ = (
        sa.CheckConstraint("effect IN ('allow', 'deny')", name="effect"),
        sa.CheckConstraint(
            "(amount_minor IS NULL) = (amount_currency IS NULL) AND amount_minor >= 0",
            name="amount",
        ),
        sa.Index("ix_policy_decisions_player_id_decided_at", "player_id", "decided_at"),
        # The console's search (migration 0013): by action, and the refusals alone.
        sa.Index("ix_policy_decisions_action_decided_at", "action", "decided_at", "id"),
        sa.Index(
            "ix_policy_decisions_refused_decided_at",
            "decided_at",
            "id",
            postgresql_where=sa.text("effect = 'deny'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    action: Mapped[str] = mapped_column(sa.Text)
    player_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    version: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[str] = mapped_column(sa.Text)
    rule_ids: Mapped[list[str]] = mapped_column(ARRAY(sa.Text))
    effect: Mapped[str] = mapped_column(sa.Text)
    reason_code: Mapped[str] = mapped_column(sa.Text)
    # The human reason as the ruleset words it (English); None on decisions from before 0007.
    reason: Mapped[str | None] = mapped_column(sa.Text)
    decided_at: Mapped[datetime] = mapped_column(TS, index=True)
    # The movement's amount in the wallet's currency; None on decisions from before 0010.
    amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    amount_currency: Mapped[str | None] = mapped_column(sa.String(3))


class KillSwitch(Base):
    """A zone (e.g. "withdrawal", "bet") switched off or back on, by whom and why."""

    __tablename__ = "kill_switches"
    __table_args__ = (sa.Index("ix_kill_switches_zone_id", "zone", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    zone: Mapped[str] = mapped_column(sa.Text)
    off: Mapped[bool] = mapped_column(sa.Boolean)
    reason: Mapped[str] = mapped_column(sa.Text)
    set_by: Mapped[str] = mapped_column(sa.Text)
    set_at: Mapped[datetime] = mapped_column(TS)
