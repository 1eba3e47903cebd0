"""Fixtures for the lethe_audit tests: real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lethe_audit import note, store
from lethe_audit.log import AuditLog

PG_ENV = "LETHE_TEST_DATABASE_URL"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database on the test server (skipped when the env var is unset;
    an unreachable server fails the test)."""
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(f"{PG_ENV} is not set")
    import sqlalchemy as sa

    name = f"lethe_t_{secrets.token_hex(6)}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        url = sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)
        yield url
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def signer() -> note.Signer:
    return note.Signer.generate("example.org/lethe-test")


@pytest.fixture
def log_factory(signer: note.Signer) -> Iterator[object]:
    """Builds initialised logs (migrated DB + registered key) and disposes their engines."""
    made: list[AuditLog] = []

    def make(url: str, *, signers: list[note.Signer] | None = None, **kwargs: object) -> AuditLog:
        store.upgrade(url)
        log = AuditLog(store.create_engine(url), signers=signers or [signer], **kwargs)  # type: ignore[arg-type]
        log.initialize()
        made.append(log)
        return log

    yield make
    for log in made:
        log.engine.dispose()
