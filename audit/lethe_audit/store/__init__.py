"""Storage: SQLAlchemy 2 models of the whole Lethe database, the engine factory, migrations.

- :class:`Base` / :data:`metadata`: every table of the project (other parts add theirs here,
  plus an Alembic revision in ``migrations/versions/``).
- :func:`create_engine`: the only way Lethe opens a database (SQLite pragmas and
  ``BEGIN IMMEDIATE``; PostgreSQL pool).
- :func:`upgrade` / :func:`downgrade` / :func:`check_schema`: the schema is created and changed
  only by the Alembic history (``lethe-audit db upgrade URL``).
- :func:`schema_heads` / :func:`schema_mismatch` / :func:`migrations_dir`: what a database must
  be at, with the standard library only.
- :func:`driver_error_is_transient` / :data:`RETRY_ATTEMPTS`: which driver errors are worth a
  retry (standard library only; :func:`is_transient` applies it to SQLAlchemy errors).

Importing this package is cheap: everything but the schema heads loads SQLAlchemy, so it is
imported on first use (PEP 562), and a command that only reads the schema version (the CLI's
read path) never loads SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lethe_audit.store._heads import (
    alembic_config,
    head_revisions,
    migrations_dir,
    schema_heads,
    schema_mismatch,
)
from lethe_audit.store._transient import (
    RETRY_ATTEMPTS,
    TRANSIENT_HINT,
    backoff_s,
    driver_error_is_transient,
)

if TYPE_CHECKING:
    from lethe_audit.store._engine import (
        READ_ONLY,
        create_engine,
        describe,
    )
    from lethe_audit.store._errors import (
        is_transient,
        retry_transient,
        store_error,
    )
    from lethe_audit.store._migrate import (
        check_schema,
        current_revisions,
        downgrade,
        upgrade,
    )
    from lethe_audit.store._models import (
        NAMING_CONVENTION,
        Base,
        TlogCheckpoint,
        TlogEntry,
        TlogHead,
        TlogKey,
        TlogNode,
        metadata,
    )
    from lethe_audit.store._subjects import FIDES_STATUSES, FidesRequestRow, SubjectMapRow
    from lethe_audit.store._versions import COVERAGE_STATUSES, CoverageRow
    from lethe_audit.store._workflow import (
        TOKEN_ROLES,
        ApplyRow,
        ModelRow,
        ReferenceRow,
        RequestRow,
        SubjectKeyRow,
        TokenRow,
    )

#: Public name -> the private module defining it (imported on first access).
_LAZY = {
    "ApplyRow": "_workflow",
    "COVERAGE_STATUSES": "_versions",
    "CoverageRow": "_versions",
    "Base": "_models",
    "ModelRow": "_workflow",
    "NAMING_CONVENTION": "_models",
    "READ_ONLY": "_engine",
    "ReferenceRow": "_workflow",
    "RequestRow": "_workflow",
    "SubjectKeyRow": "_workflow",
    "SubjectMapRow": "_subjects",
    "FIDES_STATUSES": "_subjects",
    "FidesRequestRow": "_subjects",
    "TOKEN_ROLES": "_workflow",
    "TlogCheckpoint": "_models",
    "TlogEntry": "_models",
    "TlogHead": "_models",
    "TlogKey": "_models",
    "TlogNode": "_models",
    "TokenRow": "_workflow",
    "check_schema": "_migrate",
    "create_engine": "_engine",
    "current_revisions": "_migrate",
    "describe": "_engine",
    "downgrade": "_migrate",
    "is_transient": "_errors",
    "metadata": "_models",
    "retry_transient": "_errors",
    "store_error": "_errors",
    "upgrade": "_migrate",
}

__all__ = [
    "COVERAGE_STATUSES",
    "FIDES_STATUSES",
    "NAMING_CONVENTION",
    "READ_ONLY",
    "RETRY_ATTEMPTS",
    "TOKEN_ROLES",
    "TRANSIENT_HINT",
    "ApplyRow",
    "Base",
    "CoverageRow",
    "FidesRequestRow",
    "ModelRow",
    "ReferenceRow",
    "RequestRow",
    "SubjectKeyRow",
    "SubjectMapRow",
    "TlogCheckpoint",
    "TlogEntry",
    "TlogHead",
    "TlogKey",
    "TlogNode",
    "TokenRow",
    "alembic_config",
    "backoff_s",
    "check_schema",
    "create_engine",
    "current_revisions",
    "describe",
    "downgrade",
    "driver_error_is_transient",
    "head_revisions",
    "is_transient",
    "metadata",
    "migrations_dir",
    "retry_transient",
    "schema_heads",
    "schema_mismatch",
    "store_error",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # The first touch loads every module, as an eager import did: ``metadata`` must hold the
    # workflow tables too, whichever name was asked for first.
    for module in sorted(set(_LAZY.values())):
        loaded = importlib.import_module(f"{__name__}.{module}")
        globals().update({n: getattr(loaded, n) for n, m in _LAZY.items() if m == module})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
