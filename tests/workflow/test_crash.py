"""Kill tests: an apply killed at any point leaves the previous published state, a verifiable
log, and a project the next apply completes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lethe.errors import NothingToApplyError
from lethe.workflow import Lethe

from .conftest import MODEL

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from lethe.workflow import Lethe

    project, step = sys.argv[1], sys.argv[2]

    def fault(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    with Lethe.open(project) as lt:
        lt.apply("digits", phase="mask", relearn=False, progress=False, _fault=fault)
    sys.exit(3)  # the kill point was never reached
    """
)


def _apply_killed_at(project: Path, step: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(project), step], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


@pytest.mark.parametrize("step", ["before_fold", "logged", "committed"])
def test_apply_killed_then_recovered(project_dir: Path, step: str) -> None:
    with Lethe.open(project_dir) as lt:
        first = lt.file(subject="ann@example.com", classes=[4], legal_basis="gdpr-17-1-b")
        lt.approve(first.id, actor="dpo")
        size_before = lt.log.size()

    _apply_killed_at(project_dir, step)

    with Lethe.open(project_dir) as lt:
        lt.verify_log()  # whatever happened, the log is intact and verifies
        link = lt.model_dir(MODEL) / "published"
        if step == "committed":
            # Committed before the kill: the database is the truth and names complete artefacts.
            assert lt.get(first.id).status == "applied"
            pub = lt.published(MODEL)
            assert pub is not None and pub["onnx"].is_file() and pub["checkpoint"].is_file()
            assert not link.exists()  # the symlink swap never happened ...
            with pytest.raises(NothingToApplyError):
                lt.apply(MODEL, phase="mask", relearn=False, progress=False)
            assert link.resolve() == pub["dir"].resolve()  # ... and the next apply repairs it
        else:
            # Rolled back: nothing published, the request still waits, the log did not grow
            # by the attestation.
            assert lt.get(first.id).status == "approved"
            assert lt.published(MODEL) is None and not link.exists()
            assert lt.log.size() == size_before
            res = lt.apply(MODEL, phase="mask", relearn=False, progress=False)
            assert res.passed and lt.get(first.id).status == "applied"
            applies = {p.name for p in (lt.model_dir(MODEL) / "applies").iterdir()}
            assert applies == {res.id}  # the killed attempt's folder was cleaned up
        lt.verify_log()
        assert not list(lt.model_dir(MODEL).glob(".published.*"))
