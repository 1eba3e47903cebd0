"""Database failures as Lethe reports them: every SQLAlchemy error becomes a typed
:class:`~lethe_audit.errors.StoreError`; transient ones (a lost connection, a serialization
failure, a deadlock, a locked SQLite file) may be retried by operations that are idempotent."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from lethe_audit.errors import StoreError

__all__ = ["RETRY_ATTEMPTS", "is_transient", "retry_transient", "store_error"]

T = TypeVar("T")

#: How often an idempotent operation is tried in all when the database fails transiently.
RETRY_ATTEMPTS = 4
_BACKOFF_S = (0.05, 0.2, 0.5)

# SQLSTATEs worth a retry: serialization failure, deadlock, lock not available, and the
# server ending the session (admin shutdown, crash shutdown, cannot connect now).
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def is_transient(exc: BaseException | None) -> bool:
    """Whether a database error (or the :class:`StoreError` made from one) may succeed when the
    same idempotent operation is tried again on a fresh connection."""
    if isinstance(exc, StoreError):
        exc = exc.__cause__
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = _sqlstate(exc)
    if code is not None:
        return code in _TRANSIENT_SQLSTATES or code.startswith("08")
    return any(m in str(exc.orig) for m in _SQLITE_TRANSIENT)


def _first_line(exc: BaseException) -> str:
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def store_error(exc: SQLAlchemyError, what: str) -> StoreError:
    """A one-line :class:`StoreError` for ``exc`` (raise it ``from exc``)."""
    hint = " (the database connection was lost or the transaction conflicted; try again)"
    return StoreError(f"{what}: {_first_line(exc)}" + (hint if is_transient(exc) else ""))


def retry_transient(
    fn: Callable[[], T], *, attempts: int = RETRY_ATTEMPTS, what: str = "database call"
) -> T:
    """Call ``fn`` (which must be idempotent) until it succeeds or fails for a reason that is
    not transient, at most ``attempts`` times; raw SQLAlchemy errors become StoreErrors."""
    for attempt in range(attempts):
        try:
            return fn()
        except SQLAlchemyError as e:
            if not is_transient(e) or attempt == attempts - 1:
                raise store_error(e, what) from e
        except StoreError as e:
            if not is_transient(e) or attempt == attempts - 1:
                raise
        time.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
    raise AssertionError("unreachable")  # pragma: no cover
