"""The bottom layer of the workflow: one project's database and folders.

:class:`ProjectStore` owns the engine, the read and write sessions, the row look-ups every
service shares (with the one copy of row locking) and the project's paths. It knows nothing of
models, requests or applies beyond their rows: the services above it (``_models``,
``_requests``, ``_applies``, ``_exporting``) hold the rules, the :class:`~lethe.Lethe` facade
wires them together.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from lethe.errors import InconsistentStateError, UnknownModelError, UnknownRequestError
from lethe.workflow._settings import Settings
from lethe_audit.store import (
    READ_ONLY,
    ApplyRow,
    ModelRow,
    RequestRow,
    check_schema,
    create_engine,
    retry_transient,
    store_error,
)

__all__ = ["ProjectStore", "idempotent"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


def idempotent(fn: Callable[P, T]) -> Callable[P, T]:
    """Retry a read-only (or otherwise idempotent) call when the database fails transiently
    (a lost connection, a serialization failure); other database errors are StoreErrors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return retry_transient(lambda: fn(*args, **kwargs), what=f"{fn.__name__}()")

    return wrapper


class ProjectStore:
    """The database (SQLite file or PostgreSQL) and folders of one project.

    ``engine`` may be given (tests, a server sharing one pool); otherwise one is made from
    ``settings.database_url`` and its schema is checked. :meth:`close` disposes of an engine
    the store made.
    """

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self._owns_engine = engine is None
        self.engine: Engine = engine if engine is not None else create_engine(settings.database_url)
        if self._owns_engine:
            check_schema(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- sessions ---------------------------------------------------------------------------

    @contextmanager
    def write(self, bind: Connection | None = None) -> Iterator[Session]:
        """One write transaction (on ``bind``, e.g. the apply lock's connection, if given).
        Database failures come out as :class:`StoreError` (see :func:`is_transient`)."""
        try:
            with Session(bind if bind is not None else self.engine) as s, s.begin():
                yield s
        except SQLAlchemyError as e:
            raise store_error(e, "database write failed") from e

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read-only session (a read-only transaction where the database has them)."""
        try:
            with (
                self.engine.connect().execution_options(**{READ_ONLY: True}) as conn,
                Session(bind=conn) as s,
            ):
                yield s
        except SQLAlchemyError as e:
            raise store_error(e, "database read failed") from e

    def locked(self, s: Session, stmt: Select[R]) -> R | None:
        """The one row ``stmt`` selects, locked for the transaction (``FOR UPDATE`` on
        PostgreSQL; SQLite serialises writers anyway), or None."""
        if self.postgresql:
            stmt = stmt.with_for_update()
        return s.execute(stmt).scalar_one_or_none()

    def locked_all(self, s: Session, stmt: Select[R]) -> list[R]:
        """Every row ``stmt`` selects, locked like :meth:`locked`."""
        if self.postgresql:
            stmt = stmt.with_for_update()
        return list(s.execute(stmt).scalars())

    # -- rows -------------------------------------------------------------------------------

    def model_row(self, s: Session, name: str | None, *, lock: bool = False) -> ModelRow:
        """The registered model ``name`` (None: the only one), or :class:`UnknownModelError`."""
        if name is None:
            rows = list(s.execute(select(ModelRow)).scalars())
            if len(rows) == 1:
                return rows[0]
            if not rows:
                raise UnknownModelError("no model is registered: run `lethe model register` first")
            raise UnknownModelError(
                f"several models are registered ({', '.join(r.name for r in rows)}): name one"
            )
        stmt = select(ModelRow).where(ModelRow.name == name)
        row = None
        if "\x00" not in name:  # PostgreSQL refuses NUL in text (a StoreError): no such model
            row = self.locked(s, stmt) if lock else s.execute(stmt).scalar_one_or_none()
        if row is None:
            known = list(s.execute(select(ModelRow.name)).scalars())
            raise UnknownModelError(
                f"no registered model named {name!r}"
                + (f"; registered: {', '.join(known)}" if known else "")
            )
        return row

    def request_row(self, s: Session, request_id: str, *, lock: bool = False) -> RequestRow:
        stmt = select(RequestRow).where(RequestRow.id == request_id)
        row = None
        if "\x00" not in request_id:  # as in model_row
            row = self.locked(s, stmt) if lock else s.execute(stmt).scalar_one_or_none()
        if row is None:
            raise UnknownRequestError(f"no deletion request with id {request_id!r}")
        return row

    def apply_row(self, s: Session, apply_id: str) -> ApplyRow:
        """An apply the database itself names (a request's or model's ``apply_id``)."""
        row = s.get(ApplyRow, apply_id)
        if row is None:
            raise InconsistentStateError(
                f"apply {apply_id} is named in the database but has no row: the database was "
                "edited or restored partly; restore it from a backup"
            )
        return row

    def existing_request(self, s: Session, request_id: str) -> RequestRow:
        """A request an apply recorded (it cannot have gone: requests are never deleted)."""
        row = s.get(RequestRow, request_id)
        if row is None:
            raise InconsistentStateError(
                f"request {request_id} was recorded by an apply but has no row: the database "
                "was edited or restored partly; restore it from a backup"
            )
        return row

    # -- paths ------------------------------------------------------------------------------

    @property
    def project_dir(self) -> Path:
        return self.settings.project_dir

    def abs(self, rel: str) -> Path:
        """A path stored in the database (relative to the project folder) made absolute."""
        return self.settings.project_dir / rel

    def rel(self, p: Path) -> str:
        """How the database stores ``p`` (relative to the project folder)."""
        return str(p.resolve().relative_to(self.settings.project_dir))

    def model_dir(self, name: str) -> Path:
        return self.settings.models_dir / name

    def published_link(self, name: str) -> Path:
        """The ``published`` symlink of a model (what edge distribution reads)."""
        return self.model_dir(name) / "published"

    def apply_dir(self, name: str, apply_id: str) -> Path:
        return self.model_dir(name) / "applies" / apply_id

    def retry(self, fn: Callable[[], T], *, what: str) -> T:
        """``fn`` (idempotent) retried on transient database failures."""
        return retry_transient(fn, what=what)
