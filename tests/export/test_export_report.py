"""End to end, SDK to auditor: a real int8 export, the bundle `Lethe.export_bundle` writes, and
the auditor's report built from it: the int8 file is attested (its own variant attestation)
beside the fp32 one, with the metrics the export measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lethe_audit.report import build_report
from tests.workflow.conftest import (  # noqa: F401  (fixtures)
    MODEL,
    lt,
    project_dir,
    project_template,
)

pytestmark = pytest.mark.slow


def test_the_report_of_the_exported_bundle_attests_the_int8_model(
    lt: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    req = lt.file(subject="alice@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    lt.approve(req.id, actor="dpo")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    q = lt.export_onnx(MODEL, tmp_path / "m8.onnx", quantize="int8")
    assert q.attestation_index is not None and q.metrics
    bundle = lt.export_bundle(tmp_path / "bundle.zip")

    report = build_report(bundle, [v.vkey for v in lt.verifiers()])
    assert report.passed, report.headline
    (applied,) = [a for a in report.data["applies"] if a["outcome"] == "applied"]
    attested = [x for x in applied["exports"] if x["attested"]]
    assert len(attested) == 1, applied["exports"]
    (x,) = attested
    assert x["index"] == q.attestation_index and x["variant"] == "int8"
    assert x["sha256"] == q.sha256 and x["passed"] is True
    assert x["forget_accuracy"] == pytest.approx(q.metrics["forget_accuracy"])
    assert x["retain_accuracy"] == pytest.approx(q.metrics["retain_accuracy"])
    assert applied["onnx"]["sha256"] != q.sha256  # the fp32 file is the apply's own
    assert report.data["log"]["entry_counts"]["attestation variant"] == 1
    html = report.to_html()
    assert q.sha256 in html and "variant attestation, policy" in html
