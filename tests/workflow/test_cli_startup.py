"""The `lethe` CLI loads PyTorch, timm and the ONNX stack only for commands that need them:
`lethe --version` and `lethe request list` run in a fresh interpreter without importing them
(nor numpy and scikit-learn, which the metrics load on first use)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("torch", "timm", "onnx", "onnxruntime", "torchvision", "numpy", "sklearn")
#: What `request list` / `request show` must not load either (issue 19: the ORM's 0.3 s).
READ_ONLY = (*HEAVY, "sqlalchemy", "alembic")

_RUN = textwrap.dedent(
    """
    import json, sys
    from lethe.cli import main

    try:
        main(sys.argv[2:], standalone_mode=False)
    except SystemExit:
        pass
    heavy = [m for m in json.loads(sys.argv[1]) if m in sys.modules]
    print("\\nLOADED=" + json.dumps(heavy))
    """
)


def _loaded(*args: str, heavy: tuple[str, ...] = HEAVY) -> tuple[list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(heavy), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED=")][-1]
    return json.loads(line.removeprefix("LOADED=")), proc.stdout


def test_version_does_not_import_torch() -> None:
    loaded, out = _loaded("--version")
    assert "lethe, version" in out
    assert loaded == []


def test_request_list_and_show_do_not_import_torch(project_dir: Path) -> None:
    loaded, out = _loaded("--project", str(project_dir), "request", "list", "--json")
    assert json.loads(out.split("\nLOADED=")[0])["requests"] == []
    assert loaded == []
    args = ("--project", str(project_dir), "request", "file", "--subject", "a@example.com")
    loaded, out = _loaded(*args, "--class", "3", "--legal-basis", "gdpr-17-1-b", "--json")
    rid = json.loads(out.split("\nLOADED=")[0])["request"]["id"]
    assert loaded == []
    # With a request to show, list and show read through the driver alone: no SQLAlchemy.
    for cmd in (("request", "list"), ("request", "show", rid)):
        loaded, out = _loaded("--project", str(project_dir), *cmd, "--json", heavy=READ_ONLY)
        assert rid in out and loaded == []


@pytest.mark.parametrize("args", [("model", "list"), ("log", "checkpoint")])
def test_read_commands_do_not_import_torch(project_dir: Path, args: tuple[str, ...]) -> None:
    loaded, _ = _loaded("--project", str(project_dir), *args)
    assert loaded == []
