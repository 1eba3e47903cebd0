"""A read-only view of a project's deletion requests without SQLAlchemy: the CLI's fast path.

``lethe request list`` and ``lethe request show`` only read two tables, yet opening a
:class:`~lethe.workflow.Lethe` imports SQLAlchemy's engine and ORM (about 0.3 s of a CLI call,
issue 19). :class:`RequestReader` reads the same rows with the driver alone (``sqlite3`` for
``sqlite:///PATH``, ``psycopg`` for ``postgresql+psycopg://``) and returns the same
:class:`~lethe.workflow.DeletionRequest` objects, after the same checks as
:meth:`Lethe.open <lethe.workflow.Lethe.open>`: the project is initialised (nothing is ever
created), the schema is at the Alembic head (else :class:`~lethe_audit.errors.SchemaError`
with the same message), the log keys exist. Database failures are
:class:`~lethe_audit.errors.StoreError`; transient ones are retried like the SDK's reads.

A URL this module does not handle byte for byte as SQLAlchemy would (query parameters,
percent-escapes, other drivers) makes :meth:`RequestReader.open` return ``None``: the caller
then opens the project normally.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lethe.errors import ProjectError, RequestError, UnknownModelError, UnknownRequestError
from lethe_audit.errors import StoreError
from lethe_audit.store import (
    RETRY_ATTEMPTS,
    TRANSIENT_HINT,
    backoff_s,
    driver_error_is_transient,
)

if TYPE_CHECKING:
    from lethe.workflow._settings import Settings
    from lethe.workflow._types import DeletionRequest
    from lethe_audit.store import RequestRow

__all__ = ["RequestReader", "check_initialised", "sqlite_path"]

T = TypeVar("T")

_SQLITE_BUSY_TIMEOUT_S = 60.0
_PG_URL = re.compile(
    r"postgresql\+psycopg://(?:(?P<user>[^:@/]+)(?::(?P<password>[^@/]*))?@)?"
    r"(?P<host>[^:/@]*)(?::(?P<port>\d+))?/(?P<dbname>[^/?#]+)"
)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (``None`` for any other database or for memory)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_initialised(settings: Settings) -> None:
    """Raise :class:`ProjectError` unless ``settings`` name an initialised project: its
    directory exists and, for SQLite, so does its database file. Creates nothing."""
    pdir = settings.project_dir
    if not pdir.is_dir():
        raise ProjectError(
            f"no Lethe project at {pdir}: the directory does not exist (check --project / "
            f"$LETHE_PROJECT_DIR, or create one with `lethe --project {pdir} init`)"
        )
    db = sqlite_path(settings.database_url)
    if db is not None and not db.is_file():
        raise ProjectError(
            f"{pdir} is not a Lethe project (no database {db}): run `lethe --project {pdir} "
            "init` first (or give --project / $LETHE_PROJECT_DIR)"
        )


class RequestReader:
    """Reads requests as :meth:`Lethe.list` / :meth:`Lethe.get` do, over the bare driver.

    Open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, settings: Settings, connect: Callable[[], Any], dialect: str) -> None:
        self._settings = settings
        self._connect = connect
        self._dialect = dialect
        self._described = _describe(settings.database_url)

    @classmethod
    def open(cls, settings: Settings) -> RequestReader | None:
        """A reader for ``settings``' project after the checks :meth:`Lethe.open` makes, or
        ``None`` when its database URL is not one this fast path handles."""
        connect = _connector(settings.database_url)
        if connect is None:
            return None
        check_initialised(settings)
        dialect = "sqlite" if settings.database_url.startswith("sqlite") else "postgresql"
        reader = cls(settings, connect, dialect)
        reader._check_schema()
        if not (settings.keys / "keyring.json").exists():
            raise ProjectError(
                f"no log keys in {settings.keys}: run `lethe init` (or `lethe keys generate`)"
            )
        return reader

    def close(self) -> None:
        """Nothing stays open between calls (each read is one short transaction)."""

    def __enter__(self) -> RequestReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads --------------------------------------------------------------------------------

    def get(self, request_id: str) -> DeletionRequest:
        """The request ``request_id`` (:class:`UnknownRequestError` if there is none)."""

        def run(cur: Any) -> DeletionRequest:
            sql = f"SELECT * FROM wf_requests WHERE id = {self._mark}"
            rows = _rows(cur, sql, (request_id,), times=self._times(cur))
            if not rows:
                raise UnknownRequestError(f"no deletion request with id {request_id!r}")
            return self._request(rows[0], _class_names(cur))

        return self._retry(run, "get()")

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        overdue: bool | None = None,
        model: str | None = None,
    ) -> list[DeletionRequest]:
        """Requests, oldest first; filter by status (one or several), overdue, model."""
        from lethe_audit.statements import RequestStatus

        known = [s.value for s in RequestStatus]
        statuses = [status] if isinstance(status, str) else list(status or [])
        bad = [x for x in statuses if x not in known]
        if bad:
            raise RequestError(f"unknown status {bad}; one of {', '.join(known)}")

        def run(cur: Any) -> list[DeletionRequest]:
            names = _class_names(cur)
            where, args = [], []
            if statuses:
                where.append(f"status IN ({', '.join([self._mark] * len(statuses))})")
                args += statuses
            if model is not None:
                where.append(f"model_name = {self._mark}")
                args.append(_known_model(names, model))
            sql = "SELECT * FROM wf_requests"
            sql += f" WHERE {' AND '.join(where)}" if where else ""
            sql += " ORDER BY received_at, id"
            rows = _rows(cur, sql, tuple(args), times=self._times(cur))
            return [self._request(r, names) for r in rows]

        out = self._retry(run, "list()")
        return out if overdue is None else [r for r in out if r.overdue == overdue]

    # -- internals ----------------------------------------------------------------------------

    @property
    def _mark(self) -> str:
        return "?" if self._dialect == "sqlite" else "%s"

    def _times(self, cur: Any) -> frozenset[str]:
        return _time_columns(cur, self._dialect, "wf_requests")

    def _request(self, row: SimpleNamespace, names: dict[str, tuple[str, ...]]) -> DeletionRequest:
        from lethe.workflow._types import DeletionRequest

        return DeletionRequest.from_row(cast("RequestRow", row), names[row.model_name], None)

    def _check_schema(self) -> None:
        """As ``lethe_audit.store.check_schema``: the stored revisions must be the heads."""
        from lethe_audit.store import schema_heads, schema_mismatch

        heads = schema_heads()

        def run(cur: Any) -> set[str]:
            if not _has_table(cur, self._dialect, "alembic_version"):
                return set()
            return {r.version_num for r in _rows(cur, "SELECT version_num FROM alembic_version")}

        current = self._retry(run, f"reading the schema version of {self._described}")
        mismatch = schema_mismatch(self._described, current, heads)
        if mismatch is not None:
            raise mismatch

    def _retry(self, fn: Callable[[Any], T], what: str) -> T:
        """``fn(cursor)`` in one read-only transaction, retried while it fails transiently."""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                with self._transaction() as cur:
                    return fn(cur)
            except Exception as e:
                if not _is_driver_error(e):
                    raise
                transient = _is_transient(e)
                if not transient or attempt == RETRY_ATTEMPTS - 1:
                    hint = TRANSIENT_HINT if transient else ""
                    raise StoreError(f"{what}: {_first_line(e)}{hint}") from e
            time.sleep(backoff_s(attempt))
        raise StoreError(f"{what}: no attempt left")  # pragma: no cover - the loop returns

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            cur = conn.cursor()
            if self._dialect == "sqlite":
                cur.execute("BEGIN DEFERRED")
            yield cur
            conn.rollback() if self._dialect == "postgresql" else cur.execute("COMMIT")
        finally:
            conn.close()


def _connector(url: str) -> Callable[[], Any] | None:
    path = sqlite_path(url)
    if path is not None and "?" not in url and "%" not in url:
        return lambda: _sqlite_connect(path)
    m = _PG_URL.fullmatch(url)
    if m is None or "%" in url:
        return None
    args = {k: v for k, v in m.groupdict().items() if v}
    return lambda: _pg_connect(args)


def _sqlite_connect(path: Path) -> Any:
    import sqlite3
    from urllib.parse import quote

    # mode=rw: never creates the database; the last connection to close removes -wal/-shm.
    return sqlite3.connect(
        f"file:{quote(str(path))}?mode=rw",
        uri=True,
        timeout=_SQLITE_BUSY_TIMEOUT_S,
        isolation_level=None,
    )


def _pg_connect(args: dict[str, str]) -> Any:
    import psycopg

    params: dict[str, Any] = dict(args)
    conn = psycopg.connect(**params)
    conn.read_only = True
    return conn


def _describe(url: str) -> str:
    """``lethe_audit.store.describe`` for the URLs :func:`_connector` accepts."""
    m = _PG_URL.fullmatch(url)
    if m is None or m.group("password") is None:
        return url
    start, end = m.span("password")
    return url[:start] + "***" + url[end:]


def _rows(
    cur: Any, sql: str, args: tuple[Any, ...] = (), *, times: frozenset[str] = frozenset()
) -> list[SimpleNamespace]:
    """Rows as attribute objects named like the ORM's columns; the ``times`` columns (SQLite
    keeps a DateTime as text, ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC) parsed."""
    cur.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return [
        SimpleNamespace(**{c: _time(v) if c in times else v for c, v in zip(cols, r, strict=True)})
        for r in cur
    ]


def _time(v: Any) -> Any:
    return datetime.fromisoformat(v) if isinstance(v, str) else v


def _time_columns(cur: Any, dialect: str, table: str) -> frozenset[str]:
    """The DATETIME columns of a SQLite table (PostgreSQL's driver returns datetimes)."""
    if dialect != "sqlite":
        return frozenset()
    cur.execute(f"PRAGMA table_info({table})")
    return frozenset(r[1] for r in cur if str(r[2]).upper() in ("DATETIME", "TIMESTAMP"))


def _class_names(cur: Any) -> dict[str, tuple[str, ...]]:
    rows = _rows(cur, "SELECT name, class_names FROM wf_models ORDER BY name")
    return {r.name: tuple(json.loads(r.class_names)) for r in rows}


def _known_model(names: dict[str, tuple[str, ...]], model: str) -> str:
    if model not in names:
        raise UnknownModelError(
            f"no registered model named {model!r}"
            + (f"; registered: {', '.join(names)}" if names else "")
        )
    return model


def _has_table(cur: Any, dialect: str, table: str) -> bool:
    if dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = (
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename = %s"
        )
    return bool(_rows(cur, sql, (table,)))


def _is_driver_error(e: BaseException) -> bool:
    import sys

    sqlite3 = sys.modules.get("sqlite3")
    psycopg = sys.modules.get("psycopg")
    return (sqlite3 is not None and isinstance(e, sqlite3.Error)) or (
        psycopg is not None and isinstance(e, psycopg.Error)
    )


def _is_transient(e: BaseException) -> bool:
    import sys

    psycopg = sys.modules.get("psycopg")
    if (
        getattr(e, "sqlstate", None) is None
        and psycopg is not None
        and isinstance(e, psycopg.OperationalError)
    ):
        return True  # a lost or refused connection carries no SQLSTATE
    return driver_error_is_transient(e)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
