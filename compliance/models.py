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
