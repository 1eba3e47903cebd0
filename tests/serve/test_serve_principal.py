"""The operator who applies through the service is recorded on the apply (``applied_by``) and
logged (an ``apply.principal`` event) in the apply's own transaction: a crash before the
commit leaves neither; after it both exist and the log still verifies offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import MODEL, Service, file_body


def _predicate(lt: Any, index: int) -> dict[str, Any]:
    from lethe_audit.statements import Envelope, Statement

    ((_, raw),) = list(lt.log.iter_entries(index, index + 1))
    return dict(Statement.from_envelope(Envelope.from_json(raw)).predicate)


def _events(lt: Any, start: int, event: str) -> list[dict[str, Any]]:
    out = []
    for i in range(start, lt.log.size()):
        p = _predicate(lt, i)
        if p.get("event") == event:
            out.append(p)
    return out


def _applied_by(lt: Any, apply_id: str) -> tuple[str | None, str | None]:
    from sqlalchemy.orm import Session

    from lethe_audit.store import ApplyRow

    with Session(lt.engine) as s:
        row = s.get(ApplyRow, apply_id)
        assert row is not None
        return row.applied_by, row.applied_by_role


@pytest.mark.parametrize("backend", ["service", "pg_service"])
def test_apply_over_http_logs_the_operator_in_its_transaction(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    service: Service = request.getfixturevalue(backend)  # SQLite, then PostgreSQL
    r = service.client("app").file(**file_body("olga"))
    service.client("dpo").approve(r.id, reason="ok")
    lt = service.lt
    before = lt.log.size()
    res = service.client("operator").apply(MODEL, phase="mask")
    apply_id = res["id"]
    (event,) = _events(lt, before, "apply.principal")
    assert event["details"] == {
        "apply_id": apply_id,
        "model": MODEL,
        "phase": "mask",
        "log_index": lt.applies(MODEL)[-1].log_index,
        "principal": {"name": "operator", "role": "operator"},
    }
    attestation = _predicate(lt, event["details"]["log_index"])
    assert attestation["outcome"] == "applied"
    assert _applied_by(lt, apply_id) == ("operator", "operator")
    # `lethe-audit verify` on the exported bundle: the new event does not disturb the verifier
    bundle = lt.export_bundle(tmp_path / "bundle.zip")
    exe = Path(sys.executable).parent / "lethe-audit"
    keys = service.project / "keys"
    done = subprocess.run(
        [str(exe), "verify", str(bundle), "--key-dir", str(keys)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_crash_before_the_commit_leaves_neither_row_nor_event(service: Service) -> None:
    from lethe.workflow._principal import Principal

    lt = service.lt
    r = service.client("app").file(**file_body("piotr"))
    service.client("dpo").approve(r.id)
    op = Principal("operator", "operator")
    before = lt.log.size()

    def fault(step: str) -> None:
        if step == "before_commit":
            raise RuntimeError("killed before the commit")

    with pytest.raises(RuntimeError, match="killed"):
        lt.apply(MODEL, phase="mask", progress=False, principal=op, _fault=fault)
    assert lt.log.size() == before and lt.applies(MODEL) == []
    assert lt.get(r.id).status == "approved"
    res = lt.apply(MODEL, phase="mask", progress=False, principal=op)
    assert res.passed and _applied_by(lt, res.id) == ("operator", "operator")
    (event,) = _events(lt, before, "apply.principal")
    assert event["details"]["apply_id"] == res.id
    # in-process callers pass no principal: no event, no applied_by
    r2 = lt.file(subject="quinn", classes=["5"], legal_basis="gdpr-17-1-b")
    lt.approve(r2.id, actor="dpo-desk")
    size = lt.log.size()
    res2 = lt.apply(MODEL, phase="mask", progress=False)
    assert _events(lt, size, "apply.principal") == [] and _applied_by(lt, res2.id) == (None, None)


def test_a_failed_apply_by_an_operator_is_logged_with_its_operator(service: Service) -> None:
    from lethe.workflow._principal import Principal
    from lethe_audit.metrics import Policy

    lt = service.lt
    r = service.client("app").file(**file_body("rosa"))
    service.client("dpo").approve(r.id)
    before = lt.log.size()
    impossible = Policy(min_zrf=0.999)  # the filtered model would have to act randomly
    op = Principal("operator", "operator")
    res = lt.apply(
        MODEL, phase="mask", relearn=False, progress=False, policy=impossible, principal=op
    )
    assert not res.passed and lt.get(r.id).status == "failed"
    assert (res.applied_by, res.applied_by_role) == ("operator", "operator")
    (event,) = _events(lt, before, "apply.principal")
    assert event["details"]["apply_id"] == res.id
    assert _predicate(lt, event["details"]["log_index"])["outcome"] == "failed"
    assert event["details"]["principal"] == {"name": "operator", "role": "operator"}
