"""The one engine factory: SQLite (WAL, synchronous=FULL, BEGIN IMMEDIATE) or PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from lethe_audit.errors import StoreError

#: Execution option: this connection only reads, so on SQLite it begins a deferred (shared)
#: transaction instead of taking the write lock.
READ_ONLY = "lethe_read_only"

SQLITE_BUSY_TIMEOUT_S = 60.0


def _sqlite_connect(dbapi_connection: Any, _record: Any, *, memory: bool) -> None:
    # pysqlite's own transaction handling would BEGIN (deferred) lazily and COMMIT before
    # DDL; switch it off and let the "begin" listener issue BEGIN IMMEDIATE instead.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    try:
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, so shredding a subject-commitment key
        # does not leave the key readable in free pages of the file.
        cur.execute("PRAGMA secure_delete=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN: concurrent appenders queue here (busy_timeout)
    # instead of failing later when a deferred read lock cannot be upgraded.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN DEFERRED")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create a SQLAlchemy engine for a Lethe database.

    ``sqlite:///path.db``: WAL journal, ``synchronous=FULL``, foreign keys on, a busy timeout,
    and every transaction begins with ``BEGIN IMMEDIATE`` (read-only connections, marked with
    the ``lethe_read_only`` execution option, begin deferred).
    ``postgresql+psycopg://...``: a pre-pinging pool; appends lock the head row FOR UPDATE.
    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    try:
        u = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"{url!r} is not a database URL (use sqlite:///PATH or postgresql+psycopg://...)"
        ) from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        memory = u.database in (None, "", ":memory:")
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = sa.create_engine(u, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            _sqlite_connect(dbapi_connection, record, memory=memory)

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        try:
            return sa.create_engine(u, **kwargs)
        except ImportError as e:
            raise StoreError(f"the PostgreSQL driver is missing: {e}") from None
    raise StoreError(
        f"database backend {backend!r} is not supported: use sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST/DB"
    )


def describe(url: str | URL | Engine) -> str:
    """A URL safe to print (password hidden)."""
    u = url.url if isinstance(url, Engine) else make_url(url)
    return u.render_as_string(hide_password=True)
