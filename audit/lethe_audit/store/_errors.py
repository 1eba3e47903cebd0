"""Database failures as Lethe reports them: every SQLAlchemy error becomes a typed
:class:`~lethe_audit.errors.StoreError`; transient ones (a lost connection, a serialization
failure, a deadlock, a locked SQLite file) may be retried by operations that are idempotent."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from lethe_audit.errors import StoreError
from lethe_audit.store._transient import (
    RETRY_ATTEMPTS,
    TRANSIENT_HINT,
    backoff_s,
    driver_error_is_transient,
)

__all__ = ["RETRY_ATTEMPTS", "is_transient", "retry_transient", "store_error"]

T = TypeVar("T")


def is_transient(exc: BaseException | None) -> bool:
    """Whether a database error (or the :class:`StoreError` made from one) may succeed when the
    same idempotent operation is tried again on a fresh connection."""
    if isinstance(exc, StoreError):
        exc = exc.__cause__
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    return exc.orig is not None and driver_error_is_transient(exc.orig)


def _first_line(exc: BaseException) -> str:
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def store_error(exc: SQLAlchemyError, what: str) -> StoreError:
    """A one-line :class:`StoreError` for ``exc`` (raise it ``from exc``)."""
    hint = TRANSIENT_HINT if is_transient(exc) else ""
    return StoreError(f"{what}: {_first_line(exc)}{hint}")


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
        time.sleep(backoff_s(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
