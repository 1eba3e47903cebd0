"""Which database failures are worth a retry, judged on the driver's own exception.

Standard library only: :mod:`lethe_audit.store._errors` (SQLAlchemy errors) and the lethe CLI's
SQLAlchemy-free read path (plain sqlite3 / psycopg) share this one definition.
"""

from __future__ import annotations

__all__ = ["RETRY_ATTEMPTS", "TRANSIENT_HINT", "backoff_s", "driver_error_is_transient"]

#: How often an idempotent operation is tried in all when the database fails transiently.
RETRY_ATTEMPTS = 4
_BACKOFF_S = (0.05, 0.2, 0.5)

#: Appended to the message of a :class:`~lethe_audit.errors.StoreError` made from a transient
#: failure.
TRANSIENT_HINT = " (the database connection was lost or the transaction conflicted; try again)"

# SQLSTATEs worth a retry: serialization failure, deadlock, lock not available, and the
# server ending the session (admin shutdown, crash shutdown, cannot connect now).
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
    return _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]


def driver_error_is_transient(orig: BaseException) -> bool:
    """Whether the DB-API error ``orig`` (psycopg, sqlite3) names a transient condition: a
    retryable SQLSTATE or connection class ``08``, or a locked SQLite file."""
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(code, str):
        return code in _TRANSIENT_SQLSTATES or code.startswith("08")
    return any(m in str(orig) for m in _SQLITE_TRANSIENT)
