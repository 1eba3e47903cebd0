"""The rendered files in real tools: the HTML in headless Chromium, the PDF through poppler.

Skipped (with the reason) where Chromium or poppler-utils is missing locally; `.ci/run`
installs both (Debian packages ``chromium`` and ``poppler-utils``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from lethe_audit.report import build_receipt_page, build_report
from tests.report import _bundles as B
from tests.report._tools import load_page, pdf_page_count, pdf_pages_to_png, pdf_text


def _assert_clean_load(path: Path) -> Image.Image:
    page = load_page(path, pdf=True)
    assert page.failed == [], f"failed requests: {page.failed}"
    assert page.console_errors == [], f"console errors: {page.console_errors}"
    # Nothing was fetched but the file itself: images are data URIs, CSS is inline.
    fetched = [u for u in page.requests if not u.startswith("data:")]
    assert fetched == [path.resolve().as_uri()], fetched
    assert page.pdf.startswith(b"%PDF")  # it prints
    shot = Image.open(io.BytesIO(page.screenshot))
    shot.load()
    return shot


def _not_blank(img: Image.Image) -> bool:
    lo, hi = img.convert("L").getextrema()
    return bool(hi - lo > 100)


def test_html_report_in_chromium(fixed: Any, tmp_path: Path) -> None:
    out = build_report(fixed.bundle, [B.vkey()], now=B.NOW).write(tmp_path / "report.html")
    shot = _assert_clean_load(out)
    assert shot.width > 900 and shot.height > 3000  # the whole page, not a viewport
    assert _not_blank(shot)
    shot.save(tmp_path / "report.png")


def test_receipt_page_and_report_without_figures_in_chromium(fixed: Any, tmp_path: Path) -> None:
    page = build_receipt_page(fixed.receipts["applied"], [B.vkey()], request_id=B.REQ_A)
    shot = _assert_clean_load(page.write(tmp_path / "receipt.html"))
    assert _not_blank(shot)
    plain = build_report(fixed.plain, [B.vkey()], now=B.NOW).write(tmp_path / "plain.html")
    assert _not_blank(_assert_clean_load(plain))


def test_pdf_report_pages_convert_to_png(fixed: Any, tmp_path: Path) -> None:
    report = build_report(fixed.bundle, [B.vkey()], now=B.NOW)
    pdf = report.write(tmp_path / "report.pdf")
    pages = pdf_pages_to_png(pdf, tmp_path / "pages")
    assert len(pages) == pdf_page_count(pdf) >= 4
    for p in pages:
        with Image.open(p) as img:
            assert img.width > 200 and _not_blank(img), p.name
    text = pdf_text(pdf)
    assert text.strip().splitlines()[0].strip().startswith("Verification passed")
    for needle in (B.REQ_A, B.REQ_D, "Failed applies", "Rejected requests", "Crypto-shredding"):
        assert needle in text
    # Every request and every number of the per-class table made it into the PDF.
    for c in report.data["applies"][0]["metrics"]["per_class"]:
        assert f"{100 * c['after']:.2f}%" in text
