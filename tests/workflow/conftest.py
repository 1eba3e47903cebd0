"""Workflow fixtures: a real project (SQLite, keys, the digits resnet18 with its trained bank,
base ONNX export) built once per test run and copied for each test; PostgreSQL projects on a
throw-away database of the test server."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MODEL = "digits"


def _build_template(dest: Path, digits) -> None:  # type: ignore[no-untyped-def]
    from lethe.workflow import Lethe

    train, test = digits.data()
    with Lethe.init(dest, origin="test.example/lethe-log") as lt:
        lt.register_model(
            MODEL, digits.model_path, eval_data=test, train_data=train, bank=digits.bank_path
        )


def _workflow_key() -> str:
    import hashlib

    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256(Path(__file__).read_bytes())
    for sub in ("sdk/lethe/workflow", "sdk/lethe/export", "audit/lethe_audit", "migrations"):
        for f in sorted((root / sub).rglob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def project_template(tmp_path_factory: pytest.TempPathFactory, digits) -> Path:  # type: ignore[no-untyped-def]
    from tests.conftest import _cache_root, _code_key

    root = _cache_root(tmp_path_factory)
    dest = root / f"lethe-project-{_code_key()}-{_workflow_key()}"
    with open(root / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (dest / ".ready").exists():
                shutil.rmtree(dest, ignore_errors=True)
                _build_template(dest, digits)
                (dest / ".ready").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dest


@pytest.fixture
def project_dir(project_template: Path, tmp_path: Path) -> Path:
    """A private copy of the template project (SQLite file, keys, models)."""
    dest = tmp_path / "project"
    shutil.copytree(project_template, dest, symlinks=True)
    return dest


@pytest.fixture
def lt(project_dir: Path) -> Iterator[object]:
    from lethe.workflow import Lethe

    with Lethe.open(project_dir) as opened:
        yield opened


def _pg_base_url() -> str | None:
    return os.environ.get("LETHE_TEST_DATABASE_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the test server, dropped afterwards."""
    url = _pg_base_url()
    if not url:
        pytest.skip("LETHE_TEST_DATABASE_URL is not set (CI sets it; see DEVELOPERS.md)")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"lethe_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                ),
                {"d": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def pg_project(pg_url: str, tmp_path: Path, digits) -> Path:  # type: ignore[no-untyped-def]
    """A project whose database is PostgreSQL (keys and files under tmp_path)."""
    from lethe.workflow import Lethe

    pdir = tmp_path / "pgproject"
    train, test = digits.data()
    with Lethe.init(pdir, database_url=pg_url, origin="test.example/lethe-pg") as opened:
        opened.register_model(
            MODEL, digits.model_path, eval_data=test, train_data=train, bank=digits.bank_path
        )
    return pdir
