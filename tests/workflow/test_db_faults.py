"""Real database faults on PostgreSQL: backends terminated mid-call (``pg_terminate_backend``
from a second connection) while a request is filed, approved or applied, and an apply whose
lock connection dies while a second apply waits. What the user sees must be one line, the
right exit code and ``ok: false`` with ``--json``; nothing is lost or duplicated, and an apply
either completes and says so or stops before its commit and says so.

A call is caught "mid-call" deterministically: a second connection holds a row lock the call
needs (the log head, a request row), the call's backend blocks on it, and that backend is
terminated while it waits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.cli._errors import EXIT_CODES
from lethe.errors import ApplyLockLostError
from lethe.workflow import Lethe
from lethe_audit.errors import StoreError
from lethe_audit.store import ApplyRow, RequestRow

from .conftest import MODEL

_FILE = ["request", "file", "--subject", "ann@example.com", "--class", "3"]
_FILE += ["--legal-basis", "gdpr-17-1-b"]
LETHE = str(Path(sys.executable).with_name("lethe"))


def _apply_args() -> list[str]:
    from lethe.cli import main

    cmd = main.commands["apply"]
    mask = any("--phase" in p.opts for p in cmd.params)  # phase 1 only, where there are two
    return ["apply", MODEL, "--no-relearn", "--quiet", *(["--phase", "mask"] if mask else [])]


@contextmanager
def _admin(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def _holding(url: str, sql: str, **params: Any) -> Iterator[None]:
    """Hold the row locks of ``sql`` (a SELECT ... FOR UPDATE) in an open transaction."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.text(sql), params)
            yield
    finally:
        engine.dispose()


def _kill_waiters(admin: sa.Connection) -> int:
    """Terminate every backend of this database that waits on a lock; how many were."""
    pids = admin.execute(
        sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
    ).scalars()
    n = 0
    for pid in list(pids):
        n += bool(admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar())
    return n


_ADVISORY = (
    "FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _lock_held(admin: sa.Connection) -> bool:
    return bool(admin.execute(sa.text(f"SELECT count(*) {_ADVISORY}")).scalar())


def _kill_lock_holder(admin: sa.Connection) -> int:
    """Terminate the backend holding an advisory lock (the apply lock); its pid."""
    pid = admin.execute(sa.text(f"SELECT pid {_ADVISORY}")).scalar()
    assert pid is not None, "no apply lock is held"
    assert admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    while admin.execute(
        sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
    ).scalar():
        time.sleep(0.02)
    return int(pid)


def _until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(3000):  # a bound on polls, not a time limit on the code under test
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def _cli(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LETHE, "--project", str(project), *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _one_line_error(proc: subprocess.Popen[str], code: int) -> dict[str, Any]:
    out, err = proc.communicate()
    assert proc.returncode == code, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("lethe: error: ")
    doc: dict[str, Any] = json.loads(out)
    assert doc["ok"] is False and doc["error"]["exit_code"] == code
    return doc


def _count(lt: Lethe, row: Any, **where: Any) -> int:
    with lt.store.read() as s:
        stmt = sa.select(sa.func.count()).select_from(row)
        for k, v in where.items():
            stmt = stmt.where(getattr(row, k) == v)
        return int(s.execute(stmt).scalar_one())


def _terminate_while_blocked(url: str, sql: str, call: Callable[[], Any], kills: int) -> Any:
    """Run ``call`` in a thread while ``sql``'s row locks are held; terminate its blocked
    backend ``kills`` times, then release the locks. Returns call()'s result or exception."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as e:
            out["error"] = e

    killed = [0]

    def kill_one(wanted: int) -> bool:
        killed[0] += _kill_waiters(admin)
        return killed[0] >= wanted or not t.is_alive()

    with _admin(url) as admin:
        t = threading.Thread(target=run)
        with _holding(url, sql):
            t.start()
            for i in range(1, kills + 1):
                _until(lambda i=i: kill_one(i), "a blocked backend")
        t.join()
    assert killed[0] == kills, "the call was never caught mid-call"
    return out.get("value", out.get("error"))


def test_file_retries_a_terminated_backend_and_files_once(pg_project: Path, pg_url: str) -> None:
    with Lethe.open(pg_project) as lt:
        before = lt.log.size()
        head = "SELECT * FROM tlog_head FOR UPDATE"
        req = _terminate_while_blocked(
            pg_url,
            head,
            lambda: lt.file(subject="ann@example.com", classes=[3], legal_basis="gdpr-17-1-b"),
            kills=1,
        )
        assert not isinstance(req, BaseException), req
        # Returned from what was committed: the subject key and the log index are there.
        assert req.subject_key is not None and lt.get(req.id).subject_commitment == (
            req.subject_commitment
        )
        assert _count(lt, RequestRow) == 1
        assert lt.log.size() == before + 1
        lt.verify_log()


def test_approve_retries_a_terminated_backend(pg_project: Path, pg_url: str) -> None:
    with Lethe.open(pg_project) as lt:
        req = lt.file(subject="ann@example.com", classes=[3], legal_basis="gdpr-17-1-b")
        size = lt.log.size()
        row_lock = f"SELECT * FROM wf_requests WHERE id = '{req.id}' FOR UPDATE"
        got = _terminate_while_blocked(
            pg_url, row_lock, lambda: lt.approve(req.id, actor="dpo"), kills=1
        )
        assert not isinstance(got, BaseException), got
        assert got.status == "approved" and lt.get(req.id).status == "approved"
        assert lt.log.size() == size + 1  # one request.approved, not two
        lt.verify_log()


def test_cli_file_and_approve_under_terminated_backends(pg_project: Path, pg_url: str) -> None:
    code = EXIT_CODES[StoreError]
    with _admin(pg_url) as admin:
        with _holding(pg_url, "SELECT * FROM tlog_head FOR UPDATE"):
            proc = _cli(pg_project, *_FILE)
            while proc.poll() is None:  # every try of the CLI gets terminated
                _kill_waiters(admin)
                time.sleep(0.02)
        doc = _one_line_error(proc, code)
        assert doc["error"]["type"] == "StoreError"
        assert "nothing was filed" in doc["error"]["message"]
        with Lethe.open(pg_project) as lt:
            assert _count(lt, RequestRow) == 0  # nothing half-filed
            req = lt.file(subject="ann@example.com", classes=[3], legal_basis="gdpr-17-1-b")
            size = lt.log.size()
        with _holding(pg_url, f"SELECT * FROM wf_requests WHERE id = '{req.id}' FOR UPDATE"):
            proc = _cli(pg_project, "request", "approve", req.id, "--actor", "dpo")
            while proc.poll() is None:
                _kill_waiters(admin)
                time.sleep(0.02)
        _one_line_error(proc, code)
    with Lethe.open(pg_project) as lt:
        assert lt.get(req.id).status == "received" and lt.log.size() == size
        lt.approve(req.id, actor="dpo")  # and the retry succeeds
        lt.verify_log()


def test_cli_apply_whose_lock_connection_dies_stops_before_commit(
    pg_project: Path, pg_url: str
) -> None:
    with Lethe.open(pg_project) as lt:
        req = lt.file(subject="ann@example.com", classes=[3], legal_basis="gdpr-17-1-b")
        lt.approve(req.id, actor="dpo")
        size = lt.log.size()
    with _admin(pg_url) as admin:
        proc = _cli(pg_project, *_apply_args())
        _until(lambda: proc.poll() is not None or _lock_held(admin), "the apply lock")
        assert proc.poll() is None, proc.communicate()
        _kill_lock_holder(admin)
        doc = _one_line_error(proc, EXIT_CODES[ApplyLockLostError])
    assert "nothing was committed or published" in doc["error"]["message"]
    with Lethe.open(pg_project) as lt:
        assert lt.get(req.id).status == "approved" and lt.log.size() == size
        assert lt.published(MODEL) is None
        applies = lt.model_dir(MODEL) / "applies"
        assert not applies.exists() or not any(applies.iterdir())  # nothing left behind
        # and a retry completes, reports success and its artefacts are in place
        out = subprocess.run(
            [LETHE, "--project", str(pg_project), *_apply_args(), "--json"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["apply"]["outcome"] == "applied"
        assert lt.get(req.id).status == "applied"
        lt.verify_log()


def test_two_applies_first_lock_killed_never_both_commit(pg_project: Path, pg_url: str) -> None:
    """The first apply loses its lock after writing its artefacts; a second apply takes the
    lock (and, as the first's files are not in the database, removes them), then the first
    tries to commit. Only one may commit, and the committed apply's files must exist."""
    with Lethe.open(pg_project) as lt:
        req = lt.file(subject="ann@example.com", classes=[3], legal_basis="gdpr-17-1-b")
        lt.approve(req.id, actor="dpo")
    b_started, a_finished = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def apply_b() -> None:
        def fault(step: str) -> None:
            if step == "start":  # after its repair step: the first apply's folder is gone
                b_started.set()
                a_finished.wait()

        with Lethe.open(pg_project) as lt_b:
            try:
                results["b"] = lt_b.apply(
                    MODEL, phase="mask", relearn=False, progress=False, _fault=fault
                )
            except BaseException as e:
                results["b"] = e

    thread_b = threading.Thread(target=apply_b)

    def fault_a(step: str) -> None:
        if step == "artifacts_written":
            with _admin(pg_url) as admin:
                _kill_lock_holder(admin)
            thread_b.start()
            assert b_started.wait(600)

    with Lethe.open(pg_project) as lt_a:
        try:
            results["a"] = lt_a.apply(
                MODEL, phase="mask", relearn=False, progress=False, _fault=fault_a
            )
        except BaseException as e:
            results["a"] = e
        finally:
            a_finished.set()
        thread_b.join()
        assert isinstance(results["a"], ApplyLockLostError), results["a"]
        assert not isinstance(results["b"], BaseException), results["b"]
        assert results["b"].outcome == "applied"
        assert _count(lt_a, ApplyRow, outcome="applied") == 1
        pub = lt_a.published(MODEL)
        assert pub is not None and pub["onnx"].is_file() and pub["checkpoint"].is_file()
        assert lt_a.get(req.id).apply_id == results["b"].id
        lt_a.verify_log()


def test_raw_database_errors_are_store_errors(tmp_path: Path) -> None:
    """A database that is not there (PostgreSQL refusing connections) is a StoreError with its
    exit code at open, never a raw SQLAlchemy error."""
    from click.testing import CliRunner

    from lethe.cli import main

    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError):
        Lethe.init(tmp_path / "p", database_url=url)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "lethe.toml").write_text(f'[lethe]\ndatabase_url = "{url}"\n')
    res = CliRunner().invoke(main, ["--project", str(tmp_path / "q"), "request", "list", "--json"])
    assert res.exit_code == EXIT_CODES[StoreError], res.output
    assert json.loads(res.stdout)["ok"] is False
