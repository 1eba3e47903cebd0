"""Reports and receipt pages for the two phases of a deletion (mask, then erase; issue 13).

A mask-only deletion never reads as a plain "passed": "masked, not yet erased" stands beside
it. An erased request shows mask and erase side by side, the erase names the phase-1 apply it
starts from, and every metric carries its meaning and which direction is good.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

from lethe_audit.metrics import METRIC_DEFINITIONS
from lethe_audit.report import build_receipt_page, build_report, report_dict
from lethe_audit.report._metrics import in_words
from tests.report import _bundles as B
from tests.report._tools import pdf_text
from tests.report.test_report import _Text, assert_clean

#: What reports must not show: Python call syntax and parameter names of older versions.
PYTHON_HINTS = re.compile(
    r"RelearnConfig|relearn=|random_model=|parity_reference|train_set|\bbase=|OnnxBackend\("
)


def _lines(html: str) -> list[str]:
    p = _Text()
    p.feed(html)
    p.close()
    return p.lines


def _verdicts_have_their_phase(lines: list[str]) -> int:
    """Every verdict badge ("passed"/"pass") of an apply is followed by its phase badge."""
    phases = ("masked, not yet erased", "erased")
    seen = 0
    for i, line in enumerate(lines):
        if i and lines[i - 1] == "Verification":
            continue  # the bundle's verification, not a deletion's verdict
        if line in ("passed", "pass") and i + 1 < len(lines) and lines[i + 1] in phases:
            seen += 1
        elif line == "passed":
            raise AssertionError(f"a bare 'passed' without its phase: {lines[i - 2 : i + 2]}")
    return seen


def test_mask_only_deletion_is_never_just_passed(fixed: Any, tmp_path: Path) -> None:
    report = build_report(fixed.bundle, [B.vkey()], now=B.NOW)
    doc = report.to_dict()
    reqs = {r["id"]: r for r in doc["requests"]}
    assert reqs[B.REQ_A]["phase"] == "masked" and reqs[B.REQ_A]["erased_at"] is None
    assert doc["summary"]["masked_only"] == 2 and doc["summary"]["erased"] == 0
    applied = doc["applies"][0]
    assert (applied["phase"], applied["phase_label"]) == ("mask", "masked, not yet erased")
    lines = _lines(report.to_html())
    assert _verdicts_have_their_phase(lines) >= 3
    assert "applied (masked, not yet erased)" in lines
    pdf = tmp_path / "report.pdf"
    report.write(pdf)
    text = " ".join(pdf_text(pdf).split())
    assert "passed (masked, not yet erased)" in text
    assert not re.search(r"passed(?! \((masked, not yet erased|erased)\))", text.replace(
        "Verification passed", ""
    ).replace("Passed. The bundle", "")), "a bare 'passed' in the PDF"  # fmt: skip


def test_mask_receipt_says_masked_not_yet_erased(fixed: Any) -> None:
    page = build_receipt_page(fixed.receipts["applied"], [B.vkey()], request_id=B.REQ_A)
    assert "(masked, not yet erased)" in page.headline
    assert page.data["phase"] == "mask"
    assert "A second phase (erase)" in page.to_text()


def test_erased_request_shows_mask_and_erase_side_by_side(erased: Any, tmp_path: Path) -> None:
    doc = report_dict(erased.bundle, [B.vkey()], now=B.NOW)
    reqs = {r["id"]: r for r in doc["requests"]}
    a = reqs[B.REQ_A]
    assert (a["phase"], a["apply_index"], a["erase_index"]) == ("erased", 9, 13)
    assert a["erased_at"] == "2024-05-03T12:30:00Z"
    assert doc["summary"]["erased"] == 2 and doc["summary"]["masked_only"] == 0
    erase = next(x for x in doc["applies"] if x["index"] == 13)
    assert (erase["phase"], erase["phase_label"]) == ("erase", "erased")
    assert erase["starts_from"] == {
        "apply_id": B.APPLY_ID,
        "model_sha256": B.FOLDED.removeprefix("sha256:"),
        "index": 9,
    }
    assert erase["erase"]["method"] == "reinit-last-stage"
    m = erase["metrics"]
    assert m["recheck"]["passed"] and m["recheck"]["agrees_with_log"]
    checked = {c["name"] for c in m["recheck"]["checks"]}
    assert {"min_relearn_ratio", "max_probe_auc_gap"} <= checked  # the erase phase's depth
    assert m["depth"]["reference"]["kind"] == "retrain-holdout"
    assert m["depth"]["reference"]["classes"] == [9]
    rows = {r["metric"]: r for r in m["rows"]}
    assert rows["relearn_ratio"]["after"] == 1.0 and rows["relearn_ratio"]["good"] == "high"
    assert rows["probe_auc_gap"]["after"] == m["depth"]["probe_auc_gap"]
    assert rows["relearn_steps"]["reference"] == 7.0
    assert "median of 3 runs" in rows["relearn_steps"]["label"]
    side = {c["metric"]: c for c in a["comparison"]}
    assert (side["probe_auc"]["mask"], side["probe_auc"]["erase"]) == (0.9375, 0.8)
    assert (side["relearn_steps"]["mask"], side["relearn_steps"]["erase"]) == (2.0, 7.0)
    assert side["relearn_ratio"]["mask"] is None and side["relearn_ratio"]["erase"] == 1.0
    assert side["forget_accuracy"]["good"] == "low"
    assert not [w for w in doc["warnings"] if "erase starts from" in w]
    report = build_report(erased.bundle, [B.vkey()], now=B.NOW)
    html = report.to_html()
    lines = _lines(html)
    assert "Mask (phase 1, entry #9) and erase (phase 2, entry #13) side by side" in lines
    assert _verdicts_have_their_phase(lines) >= 4
    pdf = tmp_path / "erased.pdf"
    report.write(pdf)
    text = " ".join(pdf_text(pdf).split())
    assert "Erased by log entry #13" in text and "passed (erased)" in text
    assert "side by side" in text and "the masked model of log entry #9" in text
    assert_clean("erase report", html, erased.root)


def test_an_erase_whose_mask_is_missing_is_flagged(erased: Any, tmp_path: Path) -> None:
    from lethe_audit.report import _model

    applies: list[dict[str, Any]] = [
        {"index": 13, "phase": "erase", "outcome": "applied", "model": {"folded_digest": None},
         "starts_from": {"apply_id": "apply-x", "model_sha256": "ab" * 32, "index": None}},
    ]  # fmt: skip
    _model._link_phases(applies)
    assert applies[0]["starts_from"]["index"] is None


def test_every_metric_row_has_a_meaning_and_direction(erased: Any) -> None:
    doc = report_dict(erased.bundle, [B.vkey()], now=B.NOW)
    for a in doc["applies"]:
        for row in a["metrics"]["rows"]:
            assert row["meaning"] and row["good"] in ("low", "high"), row["metric"]
    assert [d["metric"] for d in doc["definitions"]] == [d.key for d in METRIC_DEFINITIONS]
    html = unescape(build_report(erased.bundle, [B.vkey()], now=B.NOW).to_html())
    for d in METRIC_DEFINITIONS:
        assert d.meaning in html
    assert "↑ high is good" in html and "↓ low is good" in html


def test_no_python_hints_in_reports(fixed: Any, tmp_path: Path) -> None:
    """The failed apply of the fixed log carries skip reasons as older versions wrote them."""
    doc = report_dict(fixed.bundle, [B.vkey()], now=B.NOW)
    failed = doc["applies"][1]
    reasons = {s["metric"]: s["reason"] for s in failed["metrics"]["skipped"]}
    assert reasons["relearn"] == "not requested for this measurement"
    report = build_report(fixed.bundle, [B.vkey()], now=B.NOW)
    pdf = tmp_path / "report.pdf"
    report.write(pdf)
    for label, text in (("html", "\n".join(_lines(report.to_html()))), ("pdf", pdf_text(pdf))):
        for line in text.splitlines():
            if line.startswith("lethe-audit ") or "pip install" in line:
                continue  # the copy-paste commands are shell, not Python
            assert not PYTHON_HINTS.search(line.strip()), f"{label}: {line!r}"
    for old, _ in B.OLD_SKIPS:
        assert old  # the fixture really uses them
    old = "retain accuracy drop not measured: evaluate with base= (the unfiltered model)"
    new = "retain accuracy drop not measured: the unfiltered model was not measured beside it"
    assert in_words(old) == new


def test_erase_receipt_explains_depth_in_words(erased: Any) -> None:
    page = build_receipt_page(erased.receipts["erase"], [B.vkey()], request_id=B.REQ_A)
    assert page.passed
    assert page.headline.startswith(f"Your deletion request {B.REQ_A} was erased from the model")
    text = page.to_text()
    assert "A model retrained from scratch without a class" in text
    assert "needs 7 steps; this model needs 7" in text
    assert "For the erase phase the rule also required" in text and "it passed" in text
    labels = [d["label"] for d in page.data["definitions"]]
    assert labels == [
        "Forget accuracy",
        "Retain accuracy",
        "Relearn steps",
        "Relearn ratio to the reference",
        "Probe AUC gap to the reference",
    ]
    assert page.data["starts_from"]["apply_id"] == B.APPLY_ID
    html = page.to_html()
    assert "What the numbers mean" in html and "2, erase" in html
    assert_clean("erase receipt", html, erased.root)


# --- re-measuring the probe and its gap to the reference on the ONNX features -----------------


def _erase_bundle(
    root: Path, *, logged_auc: float | None, ref_auc: float = 0.99
) -> dict[str, Path]:
    """A signed tiny ONNX classifier with a ``features`` output, attested as an erase whose
    logged probe AUC is the measured one (``logged_auc=None``) or a claimed value."""
    import base64
    import dataclasses
    import hashlib

    import numpy as np
    import onnx

    from lethe_audit import statements as S
    from lethe_audit import store
    from lethe_audit.log import AuditLog
    from lethe_audit.metrics import (
        FEATURES_OUTPUT,
        ImageSet,
        OnnxBackend,
        depth_metric,
        evaluate,
    )
    from lethe_audit.model import ModelMetadata, content_hash, sign_model
    from tests.report.test_report import _eval_data, _tiny_classifier

    proto = _tiny_classifier()
    proto.graph.node.append(onnx.helper.make_node("Identity", ["flat"], [FEATURES_OUTPUT]))
    proto.graph.output.append(
        onnx.helper.make_tensor_value_info(FEATURES_OUTPUT, onnx.TensorProto.FLOAT, ["batch", 4])
    )
    url = f"sqlite:///{root / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[B.signer()])
    try:
        log.initialize()
        cp = log.head()
        meta = ModelMetadata(
            model_name="tiny",
            base_digest="sha256:" + "1a" * 32,
            folded_digest="sha256:" + "2b" * 32,
            log_origin=cp.origin,
            log_size=cp.size,
            log_root=base64.b64encode(cp.root).decode("ascii"),
            requests=("req-onnx-0001",),
            forgotten_classes=(2,),
            lethe_version="0.1.0",
        )
        signed = sign_model(proto, meta, [B.signer()])
        blob = signed.SerializeToString()
        x, y = _eval_data(0)
        result = evaluate(OnnxBackend(blob), ImageSet(x, y, 3), forget=[2], progress=False)
        assert result.probe is not None
        if logged_auc is not None:
            result = dataclasses.replace(
                result, probe=dataclasses.replace(result.probe, auc=logged_auc)
            )
        # relearn time needs torch: the attested run is written as the torch side would
        relearn = _relearn_metric(result.dataset_digest)
        result = dataclasses.replace(result, relearn=relearn)
        ref = _reference(probe_auc=ref_auc)
        result = dataclasses.replace(result, depth=depth_metric(result, ref))
        record = S.RequestRecord(
            "req-onnx-0001",
            S.hmac_commitment(b"k" * 32, "someone"),
            (2,),
            "gdpr-17-1-a",
            "2024-05-01T00:00:00Z",
            "2024-05-31T00:00:00Z",
            "2024-05-02T00:00:00Z",
        )
        att = S.UnlearningAttestation(
            outcome="applied",
            requests=(record,),
            forgotten_classes=(2,),
            applied_at="2024-05-03T00:00:00Z",
            model=S.ModelRef("tiny", meta.base_digest, meta.folded_digest),
            filter_bank_digest="sha256:" + "3c" * 32,
            method=S.MethodRef("weight-filtering", "0.1.0", {}),
            metrics=result.to_dict(),
            policy=S.PolicyVerdict({"max_forget_accuracy": 0.01, "max_probe_auc_gap": 0.02},
                                   True, ()),
            onnx=S.OnnxRef(hashlib.sha256(blob).hexdigest(), content_hash(signed)),
            phase=S.Phase.ERASE,
            erase={"method": "test", "config": {}, "seconds": 1.0, "retain_samples": 80},
            starts_from={"apply_id": "apply-0000000000000001", "model_sha256": "2a" * 32},
        )  # fmt: skip
        log.append(att.to_statement(onnx_name="tiny.onnx"))
        bundle = log.export_bundle(root / "bundle")
    finally:
        log.engine.dispose()
    model = root / "tiny.onnx"
    model.write_bytes(blob)
    data = root / "eval.npz"
    np.savez(data, x=x, y=y)
    return {"bundle": bundle, "model": model, "data": data}


def _relearn_metric(digest: str) -> Any:
    from lethe_audit.metrics import RelearnConfig, RelearnMetric, RelearnRun

    runs = tuple(RelearnRun(True, n, (0.0,) * n + (1.0,)) for n in (5, 6, 7))
    return RelearnMetric(runs[1], None, None, RelearnConfig(seeds=3), 5, "d2" * 32, 40, digest,
                         0, runs)  # fmt: skip


def _reference(*, probe_auc: float) -> Any:
    from lethe_audit.metrics import ReferenceInfo

    return ReferenceInfo("retrain-holdout", (0,), "7e" * 32, "{}", 3.0, "2024-04-01T00:00:00Z",
                         6.0, (5, 6, 7), probe_auc, (0, 1, 2))  # fmt: skip


def test_remeasure_checks_the_probe_and_its_gap_without_torch(tmp_path: Path) -> None:
    p = _erase_bundle(tmp_path, logged_auc=None)
    report = build_report(p["bundle"], [B.vkey()], model=p["model"], eval_data=p["data"])
    rm = report.data["remeasure"]
    pr = rm["probe"]
    assert pr["features"] == "graph output 'features'"
    assert pr["measured"] == pr["logged"] and pr["agrees"] is True
    assert pr["reference_auc"] == 0.99
    assert pr["measured_gap"] == pr["logged_gap"] == pr["measured"] - 0.99
    assert pr["logged_relearn_ratio"] == 1.0
    gap = next(c for c in rm["checks"] if c["name"] == "max_probe_auc_gap")
    assert gap["passed"] == (pr["measured_gap"] <= 0.02)
    assert rm["agrees"]
    lines = _lines(report.to_html())
    assert "Feature probe on the model's own features" in lines


def test_remeasure_catches_a_logged_probe_the_model_does_not_give(tmp_path: Path) -> None:
    # The operator signed a probe AUC the model does not give: logged gap 0.5 − 0.9 < 0.02.
    p = _erase_bundle(tmp_path, logged_auc=0.5, ref_auc=0.9)
    rm = build_report(p["bundle"], [B.vkey()], model=p["model"], eval_data=p["data"]).data[
        "remeasure"
    ]
    pr = rm["probe"]
    assert pr["logged"] == 0.5 and pr["measured"] > 0.9
    assert pr["agrees"] is False and not rm["agrees"]
    gap = next(c for c in rm["checks"] if c["name"] == "max_probe_auc_gap")
    assert not gap["passed"]  # the model's own features give a gap above 0.02
