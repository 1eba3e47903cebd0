"""The auditor's one-line install is the same true line everywhere: lethe-audit is not on PyPI,
so reports, receipt pages, the READMEs and the docs give the install from Lethe's source
(``tests/test_audit_dist.py`` runs that line in a copy of the tree and measures it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lethe_audit._extras import INSTALL_WHERE, install_line
from lethe_audit.report import build_receipt_page, build_report
from lethe_audit.report._page import build_document
from lethe_audit.report._view import Commands, Para, plain
from tests.report import _bundles as B

REPO = Path(__file__).resolve().parents[2]
#: A first install from PyPI, where lethe-audit is not published (adding an extra to an
#: installed lethe-audit, ``pip install 'lethe-audit[EXTRA]'``, is fine).
PYPI_FIRST = ("pip install lethe-audit", "pip install 'lethe-audit[report]'\n")


def test_the_report_tells_auditors_to_install_from_lethes_source(erased: Any) -> None:
    doc = build_document(build_report(erased.bundle, [B.vkey()], now=B.NOW).data)
    check = next(s for s in doc.sections if s.anchor == "check")
    (commands,) = [b for b in check.blocks if isinstance(b, Commands)]
    assert commands.lines[0] == install_line("report") == "pip install './audit[report]'"
    assert not any(line.startswith("pip install lethe-audit") for line in commands.lines)
    paras = [plain(b.text) for b in check.blocks if isinstance(b, Para)]
    assert INSTALL_WHERE in paras and "not on PyPI" in INSTALL_WHERE


def test_the_receipt_page_tells_subjects_the_same(fixed: Any) -> None:
    page = build_receipt_page(fixed.receipts["applied"], [B.vkey()], request_id=B.REQ_A, now=B.NOW)
    assert page.data["commands"][0] == install_line() == "pip install ./audit"
    text = page.to_text()
    assert INSTALL_WHERE in " ".join(text.split())
    assert not any(bad in text + "\n" for bad in PYPI_FIRST)


def test_readmes_and_docs_give_the_same_line() -> None:
    for name in ("README.md", "audit/README.md", "docs/cli-audit.md", "docs/reports.md"):
        text = (REPO / name).read_text()
        flat = " ".join(text.split())
        assert f"`{install_line('report')}`" in flat or install_line("report") in text, name
        assert "not on PyPI" in flat, name
        for line in text.splitlines():
            assert "`pip install lethe-audit`" not in line, (name, line)
            if "pip install 'lethe-audit[report]'" in line:
                # only as the message of a missing extra, i.e. with lethe-audit installed
                assert "installed" in line or "names it" in line, (name, line)
