"""Programmatic Alembic: find the migrations, upgrade, check the schema is at head."""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Connection, Engine

from lethe_audit.errors import SchemaError, StoreError
from lethe_audit.store._engine import create_engine, describe
from lethe_audit.store._errors import retry_transient

if TYPE_CHECKING:
    from alembic.config import Config


def migrations_dir() -> Path:
    """The Alembic directory (``migrations/``, holding ``env.py`` and ``versions/``).

    Looked up next to the source tree (editable installs, checkouts) and then where a wheel
    installs it (``<prefix>/share/lethe/migrations``).
    """
    import site
    import sysconfig

    import lethe_audit

    candidates = [
        Path(lethe_audit.__file__).resolve().parents[2] / "migrations",
        Path(sysconfig.get_path("data")) / "share" / "lethe" / "migrations",
        Path(sys.prefix) / "share" / "lethe" / "migrations",
        Path(site.getuserbase()) / "share" / "lethe" / "migrations",
    ]
    for c in candidates:
        if (c / "env.py").is_file():
            return c
    raise StoreError(
        "cannot find the Alembic migrations (looked in "
        + ", ".join(str(c) for c in candidates)
        + "): reinstall lethe"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for Lethe's history, optionally bound to an open connection."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


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


def head_revisions() -> tuple[str, ...]:
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


@functools.cache
def _file_heads(versions: Path) -> frozenset[str] | None:
    """The head revisions read from the migration files' ``revision`` / ``down_revision``
    assignments (without importing Alembic, which costs a CLI call ~0.3 s); None if a file
    does not have the plain form, and then Alembic's own reading is used."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for f in sorted(versions.glob("*.py")):
        found: dict[str, Any] = {}
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            target: ast.expr | None = None
            value: ast.expr | None = None
            if isinstance(node, ast.AnnAssign):
                target, value = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            names = ("revision", "down_revision")
            if isinstance(target, ast.Name) and target.id in names and value is not None:
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    return None
        rev, down = found.get("revision"), found.get("down_revision")
        if not isinstance(rev, str):
            return None
        revisions.add(rev)
        parents.update([down] if isinstance(down, str) else list(down or ()))
    return frozenset(revisions - parents) if revisions else None


def _stored_revisions(conn: Connection) -> set[str]:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def check_schema(engine: Engine) -> None:
    """Raise SchemaError unless the database is migrated to the head revision."""
    fast = _file_heads(migrations_dir() / "versions")
    heads = set(fast) if fast is not None else set(head_revisions())

    def read() -> set[str]:
        with engine.connect().execution_options(lethe_read_only=True) as conn:
            return _stored_revisions(conn) if fast is not None else set(current_revisions(conn))

    # A lost connection is retried; any other database error is a StoreError, never raw.
    current = retry_transient(read, what=f"reading the schema version of {describe(engine)}")
    if current != heads:
        have = ", ".join(sorted(current)) or "an empty schema"
        raise SchemaError(
            f"database {describe(engine)} is at {have}, not at head {', '.join(sorted(heads))}: "
            f"run `lethe-audit db upgrade {describe(engine)}`"
        )
