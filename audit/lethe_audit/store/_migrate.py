"""Programmatic Alembic: find the migrations, upgrade, check the schema is at head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, Connection, Engine

from lethe_audit.errors import StoreError
from lethe_audit.store._engine import create_engine, describe
from lethe_audit.store._errors import retry_transient
from lethe_audit.store._heads import (
    alembic_config,
    file_heads,
    head_revisions,
    migrations_dir,
    schema_mismatch,
)

if TYPE_CHECKING:
    pass


@contextmanager
def _connect(url: str | URL | Engine) -> Iterator[Connection]:
    engine = url if isinstance(url, Engine) else create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        if not isinstance(url, Engine):
            engine.dispose()


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: head), creating the schema if empty."""
    from alembic import command

    try:
        with _connect(url) as conn:
            command.upgrade(alembic_config(conn), revision)
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"upgrading {describe(url)} failed: {e}") from e


def downgrade(url: str | URL | Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every Lethe table)."""
    from alembic import command

    try:
        with _connect(url) as conn:
            command.downgrade(alembic_config(conn), revision)
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"downgrading {describe(url)} failed: {e}") from e


def current_revisions(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


def _stored_revisions(conn: Connection) -> set[str]:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def check_schema(engine: Engine) -> None:
    """Raise SchemaError unless the database is migrated to the head revision."""
    fast = file_heads(migrations_dir() / "versions")
    heads = set(fast) if fast is not None else set(head_revisions())

    def read() -> set[str]:
        with engine.connect().execution_options(lethe_read_only=True) as conn:
            return _stored_revisions(conn) if fast is not None else set(current_revisions(conn))

    # A lost connection is retried; any other database error is a StoreError, never raw.
    current = retry_transient(read, what=f"reading the schema version of {describe(engine)}")
    mismatch = schema_mismatch(describe(engine), current, frozenset(heads))
    if mismatch is not None:
        raise mismatch
