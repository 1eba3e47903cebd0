"""The receipt page of an int8 model (its variant attestation): what it was made from, its
numbers beside the original model's, and with the deletion's own receipt the fp32 numbers and
the request's details; never another subject's data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from lethe_audit import errors as E
from lethe_audit import statements as S
from lethe_audit.cli import EXIT_CODES, main
from lethe_audit.report import build_receipt_page
from tests.report import _bundles as B
from tests.report.test_report import assert_clean, first_line

# The int8 model recognises class 3 in 1 of its test images where the fp32 model saw none.
INT8_CORRECT = (B.AFTER_CORRECT[0], B.AFTER_CORRECT[1], B.AFTER_CORRECT[2], 1, *B.AFTER_CORRECT[4:])


@dataclass(frozen=True)
class Variant:
    root: Path
    int8: Path  # receipt of the variant attestation (entry 12, source entry 9)
    source: Path  # receipt of entry 9 (the apply it was made from)
    other: Path  # receipt of entry 3 (a request.received event)
    sha256: str


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Variant]:
    root = tmp_path_factory.mktemp("receipt-variant")
    fixed = B.build_log(root / "log", figures=False)
    try:
        att = S.VariantAttestation(
            variant="int8",
            exported_at="2024-05-05T08:00:00Z",
            model=S.ModelRef(B.MODEL, B.BASE, B.FOLDED),
            source={"index": 9, "onnx_sha256": "e3" * 32},
            requests=(B.REQ_A, B.REQ_B),
            forgotten_classes=(3, 7),
            onnx=S.OnnxRef("c8" * 32, "sha256:" + "c9" * 32),
            quantization={"format": "qdq", "calibration_samples": 256},
            metrics=B.metrics((3, 7), INT8_CORRECT),
            policy=S.PolicyVerdict({"max_forget_accuracy": 0.05}, True, ()),
        )
        index = fixed.log.append(att.to_statement()).index
        assert index == 12
        paths = {}
        for name, i in (("int8", 12), ("source", 9), ("other", 3)):
            paths[name] = root / f"{name}.tlog-proof"
            paths[name].write_text(fixed.receipt(i), encoding="utf-8")
    finally:
        fixed.log.engine.dispose()
    yield Variant(root, paths["int8"], paths["source"], paths["other"], "c8" * 32)


def _others_absent(text: str) -> None:
    assert B.REQ_B not in text and B.commitment(B.REQ_B) not in text
    assert "class 7" not in text and "forgotten_classes" not in text


def test_the_int8_receipt_gets_its_own_page(variant: Variant) -> None:
    page = build_receipt_page(variant.int8, [B.vkey()], request_id=B.REQ_A, now=B.NOW)
    d = page.data
    assert page.passed and d["kind"] == "variant" and d["request"]["id"] == B.REQ_A
    assert d["variant"]["name"] == "int8" and d["variant"]["source_index"] == 9
    assert d["model"]["onnx_sha256"] == variant.sha256
    assert d["metrics"]["classes"] == []  # shared by two requests: their classes are unknown
    assert d["metrics"]["forget_after"] == pytest.approx(1 / (42 + 40))  # both classes together
    assert d["metrics"]["retain_after"] is not None and not d["metrics"]["fp32_shown"]
    assert page.headline.startswith(
        f"The int8 version of the model that carried out your deletion request {B.REQ_A}"
    )
    html, text = page.to_html(), page.to_text()
    assert first_line(html) == page.headline
    assert (
        f"lethe-audit model verify MODEL.int8.onnx --key '{B.vkey()}' --receipt int8.tlog-proof"
        in text
    )
    for out in (html, text, page.to_json()):
        _others_absent(out)
        assert_clean("variant receipt page", out, variant.root)
    with pytest.raises(E.ReportError, match="covers 2 requests"):
        build_receipt_page(variant.int8, [B.vkey()])
    with pytest.raises(E.ReportError, match="not in this receipt"):
        build_receipt_page(variant.int8, [B.vkey()], request_id=B.REQ_C)


def test_with_the_source_receipt_the_fp32_numbers_stand_beside(variant: Variant) -> None:
    page = build_receipt_page(
        variant.int8, [B.vkey()], request_id=B.REQ_A, now=B.NOW, source_receipt=variant.source
    )
    d = page.data
    assert page.passed and d["metrics"]["fp32_shown"] and d["request"]["classes"] == [3]
    (c,) = d["metrics"]["classes"]
    assert c["class"] == 3 and c["fp32_after"] == 0.0 and c["after"] == pytest.approx(1 / 42)
    assert c["before"] == pytest.approx(41 / 42)
    assert d["request"]["deadline"]["state"] == "met" and d["applied_at"] == "2024-05-03T12:00:00Z"
    html, text = page.to_html(), page.to_text()
    assert "fp32 model" in html and "by the fp32 model" in text and "When" in text
    for out in (html, text, page.to_json()):
        _others_absent(out)
    # The subject's commitment comes from the source: --subject/--subject-key work too.
    mine = build_receipt_page(
        variant.int8,
        [B.vkey()],
        subject=B.SUBJECTS[B.REQ_A],
        subject_key=B.SUBJECT_KEYS[B.REQ_A].hex(),
        source_receipt=variant.source,
    )
    assert mine.data["request"]["id"] == B.REQ_A  # found by its commitment
    assert mine.data["subject_check"] == {"matches": True}


def test_a_source_receipt_of_another_entry_is_refused(variant: Variant) -> None:
    for wrong in (variant.other, variant.int8):
        with pytest.raises(E.ReportError, match="not the deletion this int8 model was made from"):
            build_receipt_page(variant.int8, [B.vkey()], request_id=B.REQ_A, source_receipt=wrong)
    with pytest.raises(E.ReportError, match="int8 \\(variant\\) model only"):
        build_receipt_page(
            variant.source, [B.vkey()], request_id=B.REQ_A, source_receipt=variant.source
        )


def test_cli_receipt_show_of_an_int8_receipt(variant: Variant, tmp_path: Path) -> None:
    base = ["receipt", "show", str(variant.int8), "--key", B.vkey(), "--request", B.REQ_A]
    out = tmp_path / "page.html"
    res = CliRunner().invoke(main, [*base, "--source-receipt", str(variant.source), "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "the int8 model" in html and "fp32 model" in html
    _others_absent(html)
    res = CliRunner().invoke(main, [*base, "--source-receipt", str(variant.other)])
    assert res.exit_code == EXIT_CODES[E.ReportError], res.output
