"""`lethe_audit` (every subpackage, and the CLI) works with torch, timm and lethe blocked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lethe_audit

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for blocked in ("torch", "torchvision", "timm", "lethe"):
        sys.modules[blocked] = None  # any import of them now raises ImportError
    import lethe_audit
    names = sorted(m.name for m in pkgutil.walk_packages(lethe_audit.__path__, "lethe_audit."))
    for name in names:
        importlib.import_module(name)
    from lethe_audit.cli import main
    try:
        main(["--help"], prog_name="lethe-audit")
    except SystemExit as e:
        assert e.code == 0
    leaked = [m for m in ("torch", "timm", "lethe") if sys.modules.get(m) is not None]
    assert not leaked, leaked
    print("imported", len(names))
    """
)


def test_lethe_audit_imports_without_torch() -> None:
    root = Path(lethe_audit.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    count = int(proc.stdout.strip().splitlines()[-1].split()[1])
    assert count >= 30  # every module of every subpackage, private ones included
