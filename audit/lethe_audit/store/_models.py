"""SQLAlchemy 2 models for the whole Lethe database.

One declarative :class:`Base` (one ``MetaData`` with a naming convention) for every table of
the project; the Alembic history in ``migrations/`` creates and changes them. Other parts of
Lethe add their tables to this same ``Base`` and a new Alembic revision.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names are deterministic, so migrations can refer to (and drop) them everywhere.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Lethe table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata

_UTC = DateTime(timezone=True)


class TlogHead(Base):
    """The tree head: a single row (id 1) holding size, root, right border and checkpoint.

    Every append locks this row first (PostgreSQL ``FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``
    locks the database), so appends are serialised and indices are contiguous.
    """

    __tablename__ = "tlog_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    #: Right border of the tree: the perfect subtree roots, largest first, concatenated.
    compact: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    #: The latest signed checkpoint (C2SP signed note).
    checkpoint: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)


class TlogEntry(Base):
    """One log entry (append-only): the canonical DSSE envelope bytes are the Merkle leaf."""

    __tablename__ = "tlog_entries"
    __table_args__ = (CheckConstraint("idx >= 0", name="idx_nonnegative"),)

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: Unique: re-appending the same envelope (a retry) finds the existing entry.
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False, unique=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    predicate_type: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    appended_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)


class TlogNode(Base):
    """A stored interior node: the root of the perfect subtree ``(level, idx)``, level >= 1.

    Leaves (level 0) are ``tlog_entries.leaf_hash``. Every proof needs O(log n) of these.
    """

    __tablename__ = "tlog_nodes"
    __table_args__ = (CheckConstraint("level >= 1", name="level_positive"),)

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)


class TlogCheckpoint(Base):
    """Checkpoint history (append-only): every signed checkpoint the log issued."""

    __tablename__ = "tlog_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)


class TlogKey(Base):
    """Public signing keys of the log and when they were added or retired (tree sizes)."""

    __tablename__ = "tlog_keys"
    __table_args__ = (CheckConstraint("status IN ('active', 'retired')", name="status_known"),)

    vkey: Mapped[str] = mapped_column(String(300), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    key_id: Mapped[str] = mapped_column(String(8), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    added_at_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    retired_at_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    added_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)
