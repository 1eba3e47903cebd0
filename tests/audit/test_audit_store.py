"""Engine set-up and the Alembic history (single head, up/down/up, models == migrated schema)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from lethe_audit import store
from lethe_audit.errors import SchemaError, StoreError
from lethe_audit.log import AuditLog

TABLES = {"tlog_head", "tlog_entries", "tlog_nodes", "tlog_checkpoints", "tlog_keys"}


def test_single_head_and_linear_history() -> None:
    script = ScriptDirectory.from_config(store.alembic_config())
    assert len(script.get_heads()) == 1
    assert store.head_revisions() == tuple(script.get_heads())
    revs = list(script.walk_revisions())
    assert revs[-1].down_revision is None
    assert all(not r.is_merge_point for r in revs)
    env = (store.migrations_dir() / "env.py").read_text()
    assert "render_as_batch=True" in env
    assert store.metadata.naming_convention["pk"] == "pk_%(table_name)s"


def _diff(url: str) -> list[object]:
    engine = store.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), store.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_models_match(db_url: str) -> None:
    store.upgrade(db_url)
    engine = store.create_engine(db_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        store.check_schema(engine)
        assert _diff(db_url) == []
        store.downgrade(engine, "base")
        assert not TABLES & set(sa.inspect(engine).get_table_names())
        with pytest.raises(SchemaError, match="lethe-audit db upgrade"):
            store.check_schema(engine)
        store.upgrade(engine)
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        assert _diff(db_url) == []
        store.upgrade(engine)  # idempotent at head
    finally:
        engine.dispose()


def test_unmigrated_database_is_refused(sqlite_url: str) -> None:
    with pytest.raises(SchemaError, match="run `lethe-audit db upgrade"):
        AuditLog.open(sqlite_url)


def test_sqlite_engine_pragmas(tmp_path: Path) -> None:
    engine = store.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(StoreError, match="not supported"):
        store.create_engine("mysql://localhost/x")
    with pytest.raises(StoreError, match="not a database URL"):
        store.create_engine("::::")


def test_entries_and_checkpoints_are_append_only(db_url: str, log_factory: object) -> None:
    from tests.audit._audit_helpers import event

    log = log_factory(db_url)  # type: ignore[operator]
    log.append_many([event(1), event(2)])  # two leaves: one interior node
    for stmt in [
        "UPDATE tlog_entries SET predicate_type = 'x'",
        "DELETE FROM tlog_entries",
        "UPDATE tlog_checkpoints SET note = 'x'",
        "DELETE FROM tlog_nodes",
    ]:
        with pytest.raises(sa.exc.DatabaseError), log.engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    assert log.size() == 2
