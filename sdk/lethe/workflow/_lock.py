"""One apply per model at a time, across processes (and hosts, on PostgreSQL)."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from lethe.errors import ApplyLockLostError
from lethe_audit.store import store_error

__all__ = ["apply_lock", "check_lock"]

_LOST = (
    "the apply lost its database lock (the connection holding it was closed by the server): "
    "nothing was committed or published; run `lethe apply` again"
)


def _key(model: str) -> int:
    return int.from_bytes(
        hashlib.sha256(b"lethe-apply:" + model.encode()).digest()[:8], "big", signed=True
    )


@contextmanager
def apply_lock(engine: Engine, lock_dir: Path, model: str) -> Iterator[Connection | None]:
    """Hold the apply lock of ``model`` for the duration of the block (blocking).

    PostgreSQL: a session advisory lock on a connection that is yielded, and the apply must
    commit ON THAT CONNECTION. The lock is a fence, not a hint: if the server ends that session
    (the lock is then free and a second apply may start), the commit fails with it, so an apply
    that lost its lock can never commit. Releasing a lock whose connection is gone is not an
    error (the server released it). SQLite (one host by nature): an ``flock`` on a file beside
    the project's models, released by the kernel if the process dies; yields None.
    """
    if engine.dialect.name == "postgresql":
        key = _key(model)
        try:
            conn = engine.connect()
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
        except SQLAlchemyError as e:
            raise store_error(e, f"taking the apply lock of {model!r} failed") from e
        try:
            yield conn
        finally:
            _release(conn, key)
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".apply.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield None
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _release(conn: Connection, key: int) -> None:
    try:
        if conn.in_transaction():
            conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
    except SQLAlchemyError:
        # The session is gone, and with it the lock: nothing to release. Never let the pool
        # hand this connection out again (it might still hold the lock).
        conn.invalidate()
    finally:
        conn.close()


def check_lock(conn: Connection | None) -> None:
    """Raise :class:`ApplyLockLostError` if the apply lock's connection is gone (PostgreSQL), so an
    apply stops before writing its artefacts; the commit on that connection is the final
    check."""
    if conn is None:
        return
    try:
        conn.execute(text("SELECT 1"))
        conn.commit()
    except SQLAlchemyError as e:
        raise ApplyLockLostError(_LOST) from e


LOST_LOCK = _LOST
