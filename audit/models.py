"""ORM schema of the audit log (the migration adds its write-once and ordering invariants)."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.models import TS, Base, Xid8


class AuditEntry(Base):
    """Leaf `idx` of the log: the exact RFC 8785 bytes that were hashed."""

    __tablename__ = "audit_entries"
    __table_args__ = (sa.CheckConstraint("idx >= 0", name="idx_natural"),)

    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    # No foreign key: it cost 15 % of integration throughput, and the only writer takes the id
    # from the journal row it has just read (decision 0009). Unique: an event enters once.
    journal_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    txid: Mapped[int] = mapped_column(Xid8)
    entry: Mapped[bytes] = mapped_column(sa.LargeBinary)
    integrated_at: Mapped[datetime] = mapped_column(TS)


class AuditTreeHash(Base):
    """Every complete subtree hash once, at its tlog stored-hash index."""

    __tablename__ = "audit_tree_hashes"
    __table_args__ = (
        sa.CheckConstraint("idx >= 0", name="idx_natural"),
        sa.CheckConstraint("octet_length(hash) = 32", name="sha256_length"),
    )

    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary)


class AuditCheckpoint(Base):
    """A signed note committing to the tree of `tree_size` entries; id is publication order."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (
        sa.CheckConstraint("tree_size >= 0", name="size_natural"),
        sa.CheckConstraint("octet_length(root_hash) = 32", name="sha256_length"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    tree_size: Mapped[int] = mapped_column(sa.BigInteger)
    root_hash: Mapped[bytes] = mapped_column(sa.LargeBinary)
    published_at: Mapped[datetime] = mapped_column(TS, index=True)
    note: Mapped[str] = mapped_column(sa.Text)
