"""Several app processes filing and admins applying at once lose nothing and apply each
request once (SQLite always; PostgreSQL in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lethe.workflow import Lethe

from .conftest import MODEL

_FILER = textwrap.dedent(
    """
    import json, sys
    from lethe.workflow import Lethe

    project, worker, n, shared_key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ids = []
    with Lethe.open(project) as lt:
        for i in range(n):
            r = lt.file(subject=f"user-{worker}-{i}@example.com", classes=[(worker + i) % 9],
                        legal_basis="gdpr-17-1-b", idempotency_key=f"w{worker}-{i}")
            ids.append(r.id)
            lt.approve(r.id, actor=f"admin-{worker}")
        same = lt.file(subject="shared@example.com", classes=[9], legal_basis="gdpr-17-1-b",
                       idempotency_key=shared_key)
        ids.append(same.id)
    print(json.dumps(ids))
    """
)

_APPLIER = textwrap.dedent(
    """
    import json, sys
    from lethe.errors import NothingToApplyError
    from lethe.workflow import Lethe

    with Lethe.open(sys.argv[1]) as lt:
        try:
            res = lt.apply("digits", phase="mask", relearn=False, progress=False)
            print(json.dumps({"outcome": res.outcome, "new": list(res.new_request_ids)}))
        except NothingToApplyError:
            print(json.dumps({"outcome": "nothing", "new": []}))
    """
)


def _run(
    project: Path, filers: int, per_filer: int, appliers: int
) -> tuple[list[list[str]], list[dict]]:  # type: ignore[type-arg]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FILER, str(project), str(w), str(per_filer), "same-key"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(filers)
    ]
    appl = [
        subprocess.Popen(
            [sys.executable, "-c", _APPLIER, str(project)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(appliers)
    ]
    filed, applied = [], []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        filed.append(json.loads(out.strip().splitlines()[-1]))
    for p in appl:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        applied.append(json.loads(out.strip().splitlines()[-1]))
    return filed, applied


def _check(project: Path, filed: list[list[str]], applied: list[dict], per_filer: int) -> None:  # type: ignore[type-arg]
    shared = {ids[-1] for ids in filed}
    assert len(shared) == 1, "the same idempotency key gave several requests"
    distinct = {i for ids in filed for i in ids[:-1]}
    assert len(distinct) == len(filed) * per_filer
    newly = [i for a in applied for i in a["new"]]
    assert len(newly) == len(set(newly)), "a request was applied twice"
    with Lethe.open(project) as lt:
        all_reqs = {r.id: r for r in lt.list()}
        assert set(all_reqs) == distinct | shared  # nothing lost, nothing duplicated
        # Whatever the applies did not pick up waits, approved; run one more apply to finish.
        if any(r.status == "approved" for r in all_reqs.values()):
            lt.apply(MODEL, phase="mask", relearn=False, progress=False)
        final = {r.id: r.status for r in lt.list()}
        for rid in distinct:
            assert final[rid] in ("applied", "superseded")
        assert final[next(iter(shared))] == "received"
        lt.verify_log()


def test_concurrent_filers_and_appliers_on_sqlite(project_dir: Path) -> None:
    filed, applied = _run(project_dir, filers=3, per_filer=3, appliers=2)
    _check(project_dir, filed, applied, per_filer=3)


@pytest.mark.postgres
def test_concurrent_filers_and_appliers_on_postgresql(pg_project: Path) -> None:
    filed, applied = _run(pg_project, filers=3, per_filer=3, appliers=2)
    _check(pg_project, filed, applied, per_filer=3)
