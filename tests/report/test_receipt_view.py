"""The receipt page renders from the report's typed view model: its HTML and its text are two
drawings of one Document, so they carry the same sentences, table cells and details."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from lethe_audit.report import build_receipt_page
from lethe_audit.report._view import Commands, Document, Facts, Para, Table, plain
from tests.report import _bundles as B


def _pieces(doc: Document) -> list[str]:
    out: list[str] = []
    for b in doc.blocks():
        if isinstance(b, Para):
            out.append(plain(b.text))
        elif isinstance(b, Facts):
            out += [label for label, _ in b.rows] + [plain(v) for _, v in b.rows]
        elif isinstance(b, Table):
            out += [plain(c) for row in b.rows for c in row.cells if plain(c)]
        elif isinstance(b, Commands):
            out += list(b.lines)
    return out


def test_html_and_text_draw_the_same_document(fixed: Any) -> None:
    for name, rid in (("applied", B.REQ_A), ("failed", None), ("received", None)):
        page = build_receipt_page(fixed.receipts[name], [B.vkey()], request_id=rid, now=B.NOW)
        doc = page.document()
        assert doc.headline == page.headline and doc.passed == (name != "failed")
        titles = [s.title for s in doc.sections]
        assert titles[-2:] == ["Details", "Check it yourself"]
        raw, text = page.to_html(), page.to_text()
        html = unescape(re.sub(r"<[^>]+>", "", raw))  # what a reader of the page sees
        pieces = _pieces(doc)
        assert len(pieces) > 10
        for piece in pieces:
            assert piece in text, (name, piece)
            assert piece in html, (name, piece)
        for title in titles:
            assert f"<h2>{title}</h2>" in raw and f"\n{title}\n" in text


def test_the_per_class_table_is_the_subjects_own(fixed: Any) -> None:
    page = build_receipt_page(fixed.receipts["applied"], [B.vkey()], request_id=B.REQ_A)
    (table,) = [
        b for b in page.document().blocks() if isinstance(b, Table) and "Your class" in str(b)
    ]
    assert [plain(r.cells[0]) for r in table.rows] == ["3", "all other classes"]
    assert plain(table.rows[0].cells[-1]) == "0.00%"
