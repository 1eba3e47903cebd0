"""Where the Alembic migrations are and which revisions are their heads, importing the
standard library only (Alembic only inside the functions that need it): reading the schema
version must stay cheap for the CLI's read path."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lethe_audit.errors import SchemaError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

__all__ = [
    "alembic_config",
    "file_heads",
    "head_revisions",
    "migrations_dir",
    "schema_heads",
    "schema_mismatch",
]


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


def _assignments(source: str) -> dict[str, Any] | None:
    """The literal ``revision`` / ``down_revision`` assignments of a migration file (None if
    one is not a plain literal)."""
    found: dict[str, Any] = {}
    for node in ast.parse(source).body:
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
    return found


@functools.cache
def file_heads(versions: Path) -> frozenset[str] | None:
    """The head revisions read from the migration files' ``revision`` / ``down_revision``
    assignments (without importing Alembic, which costs a CLI call ~0.3 s); None if a file
    does not have the plain form (then only Alembic's own reading can tell)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for f in sorted(versions.glob("*.py")):
        found = _assignments(f.read_text(encoding="utf-8"))
        rev = found.get("revision") if found is not None else None
        if found is None or not isinstance(rev, str):
            return None
        down = found.get("down_revision")
        revisions.add(rev)
        parents.update([down] if isinstance(down, str) else list(down or ()))
    return frozenset(revisions - parents) if revisions else None


def schema_heads() -> frozenset[str]:
    """The head revision(s) of Lethe's migration history: what a database must be at.

    Read from the migration files when they have the plain form, else through Alembic.
    """
    fast = file_heads(migrations_dir() / "versions")
    if fast is not None:
        return fast
    return frozenset(head_revisions())


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for Lethe's history, optionally bound to an open connection."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revisions() -> tuple[str, ...]:
    """The heads as Alembic reads them (imports Alembic: :func:`schema_heads` is cheaper)."""
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def schema_mismatch(database: str, current: set[str], heads: frozenset[str]) -> SchemaError | None:
    """The :class:`SchemaError` for a database (named as :func:`describe` prints it) whose
    stored revisions ``current`` are not the ``heads``; None when they are."""
    if current == heads:
        return None
    have = ", ".join(sorted(current)) or "an empty schema"
    return SchemaError(
        f"database {database} is at {have}, not at head {', '.join(sorted(heads))}: "
        f"run `lethe-audit db upgrade {database}`"
    )
