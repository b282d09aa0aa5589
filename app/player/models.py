"""ORM schema of the player's page sessions (migration 0019 adds their grants and triggers)."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models import TS, Base


class PlayerSession(Base):
    """A browser's session on the player's page, by the SHA-256 of its cookie's token; opened
    by exchanging one player token, whose id (`token_id`, the JWT's jti) opens no other."""

    __tablename__ = "player_sessions"
    __table_args__ = (
        sa.CheckConstraint("(ended_at IS NULL) = (ended_reason IS NULL)", name="end"),
        sa.CheckConstraint("octet_length(token_hash) = 32", name="token_hash"),
        sa.Index("ix_player_sessions_player_id", "player_id"),
    )

    token_hash: Mapped[bytes] = mapped_column(sa.LargeBinary, primary_key=True)
    player_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("players.id"))
    token_id: Mapped[str] = mapped_column(sa.Text, unique=True)
    csrf_token: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    last_seen_at: Mapped[datetime] = mapped_column(TS)
    ended_at: Mapped[datetime | None] = mapped_column(TS)
    ended_reason: Mapped[str | None] = mapped_column(sa.Text)
    address: Mapped[str] = mapped_column(sa.Text)
    user_agent: Mapped[str] = mapped_column(sa.Text)
