"""One apply per model at a time, across processes (and hosts, on PostgreSQL)."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

__all__ = ["apply_lock"]


@contextmanager
def apply_lock(engine: Engine, lock_dir: Path, model: str) -> Iterator[None]:
    """Hold the apply lock of ``model`` for the duration of the block (blocking).

    PostgreSQL: a session advisory lock, so admins on several hosts queue up and a crashed
    process releases it with its connection. SQLite (one host by nature): an ``flock`` on a file
    beside the project's models, released by the kernel if the process dies.
    """
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(
            hashlib.sha256(b"lethe-apply:" + model.encode()).digest()[:8], "big", signed=True
        )
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".apply.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
