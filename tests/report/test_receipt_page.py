"""`lethe-audit receipt show`: one subject's receipt in plain language, nobody else's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lethe_audit import errors as E
from lethe_audit.cli import EXIT_CODES, main
from lethe_audit.report import RECEIPT_PAGE_FORMAT, build_receipt_page, write_receipt_page
from lethe_audit.tlog import TlogProof
from tests.report import _bundles as B
from tests.report.test_report import assert_clean, check_golden, first_line


def _others(own: str) -> list[str]:
    """What belongs to the other requests of the same attestation."""
    out = []
    for rid in (B.REQ_A, B.REQ_B):
        if rid != own:
            out += [rid, B.commitment(rid)]
    return out


def test_golden_receipt_page(fixed: Any) -> None:
    page = build_receipt_page(fixed.receipts["applied"], [B.vkey()], request_id=B.REQ_A, now=B.NOW)
    doc = page.to_dict()
    assert doc["format"] == RECEIPT_PAGE_FORMAT and page.passed
    doc["generator"] = "lethe-audit VERSION"
    check_golden("receipt.json", doc)


def test_only_the_subjects_own_request_is_shown(fixed: Any) -> None:
    page = build_receipt_page(fixed.receipts["applied"], B.vkey(), request_id=B.REQ_A, now=B.NOW)
    d = page.data
    assert d["request"]["id"] == B.REQ_A and d["request"]["classes"] == [3]
    assert [c["class"] for c in d["metrics"]["classes"]] == [3]
    assert d["metrics"]["classes"][0]["after"] == 0.0
    assert d["metrics"]["classes"][0]["before"] == pytest.approx(41 / 42)
    assert d["shared"] is True and d["outcome"] == "applied"
    assert page.headline.startswith(f"Your deletion request {B.REQ_A} was carried out on")
    for text in (page.to_json(), page.to_html(), page.to_text()):
        for other in _others(B.REQ_A):
            assert other not in text
        assert "forgotten_classes" not in text and "class 7" not in text
        assert_clean("receipt page", text, fixed.root)
    assert "lethe-audit receipt verify applied.tlog-proof --key" in page.to_text()
    assert first_line(page.to_html()) == page.headline


def test_picking_the_request(fixed: Any) -> None:
    path = fixed.receipts["applied"]
    with pytest.raises(E.ReportError, match="covers 2 requests"):
        build_receipt_page(path, [B.vkey()])
    with pytest.raises(E.ReportError, match="not in this receipt"):
        build_receipt_page(path, [B.vkey()], request_id=B.REQ_C)
    # By the subject's own identifier and key (neither reaches the page).
    key = B.SUBJECT_KEYS[B.REQ_B].hex()
    page = build_receipt_page(path, [B.vkey()], subject=B.SUBJECTS[B.REQ_B], subject_key=key)
    assert page.data["request"]["id"] == B.REQ_B and page.data["subject_check"] == {"matches": True}
    assert B.SUBJECTS[B.REQ_B] not in page.to_json() and key not in page.to_json()
    # Someone else's identifier against request A: no match, and the page says so.
    page = build_receipt_page(
        path, [B.vkey()], request_id=B.REQ_A, subject=B.SUBJECTS[B.REQ_B], subject_key=key
    )
    assert page.data["subject_check"] == {"matches": False}
    assert "do NOT match" in page.to_text()
    with pytest.raises(E.ReportError, match="no request in this receipt matches"):
        build_receipt_page(path, [B.vkey()], subject="nobody", subject_key=key)
    with pytest.raises(E.ReportError, match="hexadecimal"):
        build_receipt_page(path, [B.vkey()], request_id=B.REQ_A, subject="x", subject_key="zz")
    # A file named after its request, as `lethe` writes receipts.
    named = build_receipt_page(fixed.receipts["named"], [B.vkey()])
    assert named.data["request"]["id"] == B.REQ_B
    assert named.data["request"]["deadline"]["state"] == "late"


def test_failed_and_event_receipts(fixed: Any) -> None:
    failed = build_receipt_page(fixed.receipts["failed"], [B.vkey()], now=B.NOW)
    assert failed.data["outcome"] == "failed" and failed.data["request"]["id"] == B.REQ_D
    assert "did not pass its checks" in failed.headline
    assert "it did NOT pass" in failed.to_text()
    assert failed.data["request"]["deadline"]["state"] == "overdue"
    received = build_receipt_page(fixed.receipts["received"], [B.vkey()])
    assert received.data["kind"] == "event" and received.data["request"]["id"] == B.REQ_C
    assert "was received" in received.headline
    assert_clean("event receipt", received.to_html(), fixed.root)


def test_tampered_receipt_still_gets_a_page(fixed: Any, tmp_path: Path) -> None:
    proof = TlogProof.parse(fixed.receipts["applied"].read_bytes())
    hashes = list(proof.hashes)
    hashes[0] = bytes(32)
    bad = tmp_path / "bad.tlog-proof"
    bad.write_text(
        TlogProof.create(proof.index, hashes, proof.checkpoint, extra=proof.extra).to_text(),
        encoding="utf-8",
    )
    page = build_receipt_page(bad, [B.vkey()], request_id=B.REQ_A)
    assert isinstance(page.error, E.InclusionProofError)
    assert page.headline.startswith("This receipt did NOT verify")
    out = tmp_path / "page.html"
    res = CliRunner().invoke(
        main, ["receipt", "show", str(bad), "--key", B.vkey(), "--request", B.REQ_A, "-o", str(out)]
    )
    assert res.exit_code == EXIT_CODES[E.InclusionProofError], res.output
    assert first_line(out.read_text(encoding="utf-8")).startswith("This receipt did NOT verify")


def test_cli_receipt_show(fixed: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    path = str(fixed.receipts["applied"])
    res = runner.invoke(main, ["receipt", "show", path, "--key", B.vkey(), "--request", B.REQ_A])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"Your deletion request {B.REQ_A} was carried out")
    assert "How it was verified" in res.output and B.REQ_B not in res.output
    res = runner.invoke(main, ["receipt", "show", path, "--key", B.vkey()])
    assert res.exit_code == EXIT_CODES[E.ReportError]
    out = tmp_path / "mine.html"
    key = B.SUBJECT_KEYS[B.REQ_A].hex()
    args = ["--subject", B.SUBJECTS[B.REQ_A], "--subject-key", key, "-o", str(out), "--json"]
    res = runner.invoke(main, ["receipt", "show", path, "--key", B.vkey(), *args])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["subject_check"] == {"matches": True} and doc["file"] == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    res = runner.invoke(main, ["receipt", "show", path, "--key", B.vkey(), "--subject", "x"])
    assert res.exit_code == 2
    write_receipt_page(fixed.receipts["named"], [B.vkey()], tmp_path / "named.json")
    assert json.loads((tmp_path / "named.json").read_text())["request"]["id"] == B.REQ_B


def test_cli_receipt_show_as_of(fixed: Any, tmp_path: Path) -> None:
    """``--as-of``/``--now`` (as for ``report``): the page's time and, for a request not carried
    out (the failed apply of REQ_D, due 2024-05-01), whether its deadline was still open."""
    base = ["receipt", "show", str(fixed.receipts["failed"]), "--key", B.vkey(), "--json"]
    pages = {}
    for flag, when in (("--as-of", "2024-04-20"), ("--now", "2024-05-02T09:00:00+02:00")):
        res = CliRunner().invoke(main, [*base, flag, when])
        assert res.exit_code == 0, res.output
        pages[when] = json.loads(res.stdout)
    early, late = pages["2024-04-20"], pages["2024-05-02T09:00:00+02:00"]
    assert early["generated_at"] == "2024-04-20T00:00:00Z"
    assert late["generated_at"] == "2024-05-02T07:00:00Z"
    assert early["request"]["deadline"] == {"state": "open", "days": pytest.approx(11.33)}
    assert late["request"]["deadline"]["state"] == "overdue"
    res = CliRunner().invoke(main, [*base, "--as-of", "2024-05-02T09:00:00"])
    assert res.exit_code == 2 and "--as-of" in res.output and "time zone" in res.output
