"""Storage: SQLAlchemy 2 models of the whole Lethe database, the engine factory, migrations.

- :class:`Base` / :data:`metadata`: every table of the project (other parts add theirs here,
  plus an Alembic revision in ``migrations/versions/``).
- :func:`create_engine`: the only way Lethe opens a database (SQLite pragmas and
  ``BEGIN IMMEDIATE``; PostgreSQL pool).
- :func:`upgrade` / :func:`downgrade` / :func:`check_schema`: the schema is created and changed
  only by the Alembic history (``lethe-audit db upgrade URL``).
"""

from __future__ import annotations

from lethe_audit.store._engine import READ_ONLY, create_engine, describe
from lethe_audit.store._errors import (
    RETRY_ATTEMPTS,
    is_transient,
    retry_transient,
    store_error,
)
from lethe_audit.store._migrate import (
    alembic_config,
    check_schema,
    current_revisions,
    downgrade,
    head_revisions,
    migrations_dir,
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
from lethe_audit.store._workflow import (
    APPLY_PHASES,
    REQUEST_STATUSES,
    TOKEN_ROLES,
    ApplyRow,
    ModelRow,
    ReferenceRow,
    RequestRow,
    SubjectKeyRow,
    TokenRow,
)

__all__ = [
    "APPLY_PHASES",
    "NAMING_CONVENTION",
    "READ_ONLY",
    "REQUEST_STATUSES",
    "RETRY_ATTEMPTS",
    "TOKEN_ROLES",
    "ApplyRow",
    "Base",
    "ModelRow",
    "ReferenceRow",
    "RequestRow",
    "SubjectKeyRow",
    "TlogCheckpoint",
    "TlogEntry",
    "TlogHead",
    "TlogKey",
    "TlogNode",
    "TokenRow",
    "alembic_config",
    "check_schema",
    "create_engine",
    "current_revisions",
    "describe",
    "downgrade",
    "head_revisions",
    "is_transient",
    "metadata",
    "migrations_dir",
    "retry_transient",
    "store_error",
    "upgrade",
]
