"""The vocabulary and the bundle format are importable on their own: the CLIs build options
from the enums without loading the signing code, and the bundle writer does not load the
verifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lethe_audit

_ROOT = Path(lethe_audit.__file__).resolve().parents[1]


def _modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_enums_alone_do_not_load_the_signing_code() -> None:
    mods = _modules_after(
        "from lethe_audit.statements import RequestStatus\n"
        "assert [s.value for s in RequestStatus][0] == 'received'"
    )
    assert "cryptography" not in mods and "lethe_audit.statements._dsse" not in mods
    assert "lethe_audit.statements._vocab" in mods


def test_every_public_name_still_loads_on_first_use() -> None:
    import lethe_audit.statements as S

    for name in S.__all__:
        assert getattr(S, name) is not None, name
    assert S.Envelope.__module__ == "lethe_audit.statements._dsse"


def test_the_bundle_writer_does_not_load_the_verifier() -> None:
    mods = _modules_after("import lethe_audit.log._export, lethe_audit.bundle")
    assert "lethe_audit.verify" not in mods
    assert not any(m.startswith("lethe_audit.verify.") for m in mods)


def test_the_store_constraints_come_from_the_enums() -> None:
    from lethe_audit.statements import ApplyOutcome, Phase, RequestStatus
    from lethe_audit.store import ApplyRow, RequestRow

    def checks(row: type) -> list[str]:
        return sorted(str(c.sqltext) for c in row.__table__.constraints if hasattr(c, "sqltext"))

    listed = ", ".join(f"'{s.value}'" for s in RequestStatus)
    assert checks(RequestRow) == [f"status IN ({listed})"]
    assert checks(ApplyRow) == [
        "outcome IN (" + ", ".join(f"'{s.value}'" for s in ApplyOutcome) + ")",
        "phase IN (" + ", ".join(f"'{s.value}'" for s in Phase) + ")",
    ]
