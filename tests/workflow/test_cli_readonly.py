"""The driver-only read path of `lethe request list/show` (lethe.workflow._readonly) returns
exactly what the SQLAlchemy path returns, makes the same checks, and creates nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lethe.errors import ProjectError, UnknownModelError, UnknownRequestError
from lethe.workflow import Lethe, Settings
from lethe.workflow._readonly import RequestReader, check_initialised
from lethe_audit.errors import SchemaError

FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "received"},
    {"status": ["approved", "rejected"]},
    {"overdue": False},
    {"overdue": True},
    {"model": "digits"},
    {"model": "digits", "status": ["received"]},
]


def _fill(lt: Lethe) -> list[str]:
    a = lt.file(subject="a@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    b = lt.file(
        subject="b@example.com", classes=["8", 1], legal_basis="gdpr-17-1-a", idempotency_key="k1"
    )
    c = lt.file(subject="c@example.com", classes=[5], legal_basis="gdpr-17-1-c")
    lt.approve(b.id, actor="dpo", reason="2026-01-01 00:00:00")  # a reason that looks like time
    lt.reject(c.id, actor="dpo", reason="not ours")
    lt.shred(c.id, actor="dpo")
    return [a.id, b.id, c.id]


def _same(project_dir: Path, lt: Lethe, ids: list[str]) -> None:
    reader = RequestReader.open(Settings.load(project_dir))
    assert reader is not None
    with reader:
        for f in FILTERS:
            assert [r.to_dict() for r in reader.list(**f)] == [r.to_dict() for r in lt.list(**f)]
        for rid in ids:
            assert reader.get(rid) == lt.get(rid)
        for read in (reader, lt):
            with pytest.raises(UnknownRequestError) as unknown:
                read.get("req-nope")
            with pytest.raises(UnknownModelError) as no_model:
                read.list(model="nope")
            assert (str(unknown.value), str(no_model.value)) == (
                "no deletion request with id 'req-nope'",
                "no registered model named 'nope'; registered: digits",
            )


def test_reader_matches_the_orm_on_sqlite(project_dir: Path) -> None:
    with Lethe.open(project_dir) as lt:
        _same(project_dir, lt, _fill(lt))
    assert sorted(p.name for p in project_dir.glob("lethe.db*")) == ["lethe.db"]


def test_reader_matches_the_orm_on_postgresql(pg_project: Path) -> None:
    with Lethe.open(pg_project) as lt:
        _same(pg_project, lt, _fill(lt))


def test_reader_refuses_a_schema_not_at_head_like_open(project_dir: Path) -> None:
    with sqlite3.connect(project_dir / "lethe.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003_erase_phase'")
    with pytest.raises(SchemaError) as orm:
        Lethe.open(project_dir)
    with pytest.raises(SchemaError) as fast:
        RequestReader.open(Settings.load(project_dir))
    assert str(fast.value) == str(orm.value)


def test_reader_creates_nothing_outside_a_project(tmp_path: Path) -> None:
    for where in (tmp_path, tmp_path / "missing"):
        settings = Settings.load(where)
        with pytest.raises(ProjectError, match=r"lethe --project .* init"):
            check_initialised(settings)
        with pytest.raises(ProjectError, match="init"):
            RequestReader.open(settings)
    assert list(tmp_path.iterdir()) == []


def test_other_urls_fall_back_to_the_orm(tmp_path: Path) -> None:
    for url in ("sqlite://", "postgresql://u@h/db", "postgresql+psycopg://u@h/db?sslmode=require"):
        assert RequestReader.open(Settings.load(tmp_path, database_url=url)) is None
