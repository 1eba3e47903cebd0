"""A variant (int8) attestation must derive from an applied attestation earlier in the log:
the verifier rejects signed variants that bind an int8 file to another apply (forgeries built
here and signed with the log's own key, as a dishonest operator could)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lethe_audit import errors as E
from lethe_audit import statements as S
from lethe_audit.note import Verifier
from lethe_audit.report import build_report
from lethe_audit.verify import verify_bundle
from tests.report import _bundles as B

GOOD = {"source": {"index": 9, "onnx_sha256": "e3" * 32}, "model": B.MODEL,
        "requests": (B.REQ_A, B.REQ_B), "classes": (3, 7)}  # fmt: skip


def _bundle(tmp_path: Path, **change: Any) -> Path:
    v = {**GOOD, **change}
    fixed = B.build_log(tmp_path / "log", figures=False)
    try:
        variant = S.VariantAttestation(
            variant="int8",
            exported_at="2024-05-05T08:00:00Z",
            model=S.ModelRef(v["model"], B.BASE, B.FOLDED),
            source=v["source"],
            requests=v["requests"],
            forgotten_classes=v["classes"],
            onnx=S.OnnxRef("c8" * 32, "sha256:" + "c9" * 32),
            quantization={"method": "static-qdq"},
            metrics=B.metrics(v["classes"]),
            policy=S.PolicyVerdict({"max_forget_accuracy": 0.05}, True, ()),
        )
        fixed.log.append(variant.to_statement())
        return fixed.bundle(tmp_path / "bundle")
    finally:
        fixed.log.engine.dispose()


def test_a_variant_of_its_apply_verifies(tmp_path: Path) -> None:
    verify_bundle(_bundle(tmp_path), [Verifier.from_vkey(B.vkey())])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"source": {"index": 10, "onnx_sha256": "e3" * 32}}, "entry 10 is a failed apply"),
        ({"source": {"index": 4, "onnx_sha256": "e3" * 32}}, "entry 4 is not an unlearning"),
        ({"source": {"index": 40, "onnx_sha256": "e3" * 32}}, "logged before entry 12"),
        ({"source": {"index": 9, "onnx_sha256": "ab" * 32}}, "another fp32 file"),
        ({"model": "other-model"}, "is about model 'digits-cnn'"),
        ({"requests": (B.REQ_A,)}, "other requests"),
        ({"classes": (3,)}, "other classes"),
    ],
    ids=["failed-apply", "an-event", "later-entry", "other-file", "other-model", "requests",
         "classes"],
)  # fmt: skip
def test_a_forged_variant_source_fails(tmp_path: Path, change: dict[str, Any], why: str) -> None:
    bundle = _bundle(tmp_path, **change)
    with pytest.raises(E.EntryError) as info:
        verify_bundle(bundle, [Verifier.from_vkey(B.vkey())])
    assert info.value.index == 12 and why in str(info.value), str(info.value)
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    assert report.headline.startswith("Verification FAILED at entry 12"), report.headline
