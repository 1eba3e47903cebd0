"""Times in the workflow: always timezone-aware UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload

from lethe_audit.statements import rfc3339

__all__ = ["iso", "now", "utc"]


def now() -> datetime:
    return datetime.now(timezone.utc)


@overload
def utc(t: datetime) -> datetime: ...
@overload
def utc(t: None) -> None: ...
def utc(t: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns: they were stored as UTC."""
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def iso(t: datetime | None) -> str | None:
    return rfc3339(t) if t is not None else None
