"""A report a non-ML auditor can read (issue 18): one view model behind HTML and PDF, pending
requests in one compact table, deadlines as of a chosen day, PDF headers that never break
inside a word.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lethe_audit.report import build_report
from lethe_audit.report._page import build_document
from lethe_audit.report._view import Badge, Document, Facts, Heading, Para, Rich, Table, plain
from tests.report import _bundles as B
from tests.report._tools import pdf_page_count, poppler
from tests.report.test_report import _Text

PENDING = 16


@pytest.fixture(scope="module")
def pending(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("report-pending")
    log = B.build_pending_log(root / "log", count=PENDING)
    try:
        yield log.export_bundle(root / "bundle")
    finally:
        log.engine.dispose()


def _raw_pdf_text(pdf: Path, *, page: int | None = None) -> str:
    """The PDF's text (of one ``page``) in content-stream order: a table cell's lines stay
    together."""
    import subprocess

    exe = poppler("pdftotext")
    pages = [] if page is None else ["-f", str(page), "-l", str(page)]
    return subprocess.run(
        [exe, "-raw", *pages, str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout


def _html_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    p.close()
    return " ".join(p.lines)


def _squeeze(text: str) -> str:
    """Text without any whitespace: line breaks of either renderer do not matter."""
    return re.sub(r"\s+", "", text)


def _table_rows(html: str, css: str) -> list[str]:
    m = re.search(rf'<table class="{css}">(.*?)</table>', html, re.S)
    assert m is not None, f"no table of class {css}"
    return re.findall(r"<tr[ >]", m.group(1))


def test_pending_requests_are_one_compact_table(pending: Path, tmp_path: Path) -> None:
    report = build_report(pending, [B.vkey()], now=B.NOW)
    assert report.data["summary"]["pending"] == PENDING
    html = report.to_html()
    assert html.count('<table class="pending">') == 1
    assert len(_table_rows(html, "pending")) == PENDING + 1  # header + one row per request
    assert '<article class="request"' not in html  # no 12-row fact table per request
    table = html.split('<table class="pending">')[1].split("</table>")[0]
    for k in range(PENDING):
        assert table.count(B.pending_id(k)) == 1, "each pending request is one row"
    assert f"Pending requests ({PENDING}, {PENDING} overdue)" in _html_text(html)
    pdf = report.write(tmp_path / "pending.pdf")
    # The requests fit on one or two pages (16 fact tables took about a page each before).
    pages = [_raw_pdf_text(pdf, page=n) for n in range(1, pdf_page_count(pdf) + 1)]
    rows = [re.findall(r"(req-[0-9a-f]{26}) (?:received|approved)\b", text) for text in pages]
    holding = [n for n, found in enumerate(rows) if found]
    assert len(holding) <= 2 and len(pages) <= 6, (holding, len(pages))
    assert sorted(r for found in rows for r in found) == [B.pending_id(k) for k in range(PENDING)]


def test_pending_requests_height_in_chromium(pending: Path, tmp_path: Path) -> None:
    from tests.report._tools import load_page

    out = build_report(pending, [B.vkey()], now=B.NOW).write(tmp_path / "pending.html")
    js = "[document.getElementById('requests').getBoundingClientRect().height, "
    js += "document.documentElement.scrollWidth]"
    page = load_page(out, width=1000, evaluate=js)
    height, width = page.value
    # 16 pending requests took ~8,000 px as one 12-row table each; now one row each.
    assert height < 1500, f"the requests section is {height} px tall"
    assert width <= 1000, f"the page is {width} px wide: the pending table overflows"


def _cli_run(bundle: Path, out: Path, *extra: str) -> Path:
    from lethe_audit.cli import main

    res = CliRunner().invoke(
        main, ["report", str(bundle), "--key", B.vkey(), "-o", str(out), *extra]
    )
    assert res.exit_code == 0, res.output
    return out


def _cli_report(bundle: Path, out: Path, *extra: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_cli_run(bundle, out, *extra).read_text(encoding="utf-8"))
    return doc


def test_as_of_changes_the_overdue_flags(pending: Path, fixed: Any, tmp_path: Path) -> None:
    late = _cli_report(pending, tmp_path / "late.json", "--as-of", "2024-06-01")
    early = _cli_report(pending, tmp_path / "early.json", "--now", "2024-05-15T12:00:00+02:00")
    assert late["summary"]["overdue"] == PENDING and early["summary"]["overdue"] == 0
    assert {r["deadline"]["state"] for r in late["requests"]} == {"overdue"}
    assert {r["deadline"]["state"] for r in early["requests"]} == {"open"}
    assert early["generated_at"] == "2024-05-15T10:00:00Z"
    # The fixed story: REQ_D (due 2024-05-01) is overdue on June 1st, open in April.
    april = _cli_report(fixed.bundle, tmp_path / "april.json", "--as-of", "2024-04-15")
    d = next(r for r in april["requests"] if r["id"] == B.REQ_D)
    assert d["deadline"]["state"] == "open" and not d["overdue"]
    html = _cli_run(fixed.bundle, tmp_path / "april.html", "--as-of", "2024-04-15")
    assert "deadlines as of 2024-04-15 00:00 UTC" in _html_text(html.read_text("utf-8"))


def test_as_of_rejects_a_time_without_a_zone(fixed: Any, tmp_path: Path) -> None:
    from lethe_audit.cli import main

    for bad in ("2024-06-01T00:00:00", "next tuesday"):
        res = CliRunner().invoke(
            main,
            ["report", str(fixed.bundle), "--key", B.vkey(), "-o", str(tmp_path / "x.json"),
             "--as-of", bad],
        )  # fmt: skip
        assert res.exit_code == 2 and "--as-of" in res.output, res.output
    assert not (tmp_path / "x.json").exists()


def _header_words(doc: Document) -> set[str]:
    words: set[str] = set()
    for b in doc.blocks():
        if isinstance(b, Table):
            for c in b.columns:
                words.update(w for w in c.label.split() if len(w) >= 4)
    return words


def split_words(text: str, words: set[str]) -> list[str]:
    """Header words that the PDF text shows broken over two lines (``Overdue/la`` + ``te``)."""
    tokens = text.split()
    broken = []
    for t1, t2 in itertools.pairwise(tokens):
        for w in words:
            if w in t1 + t2 and w not in t1 and w not in t2:
                broken.append(f"{w}: {t1!r} + {t2!r}")
    return broken


@pytest.mark.parametrize("story", ["fixed", "erased", "pending"])
def test_pdf_headers_never_break_inside_a_word(
    story: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = request.getfixturevalue(story)
    bundle = src if isinstance(src, Path) else src.bundle
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    words = _header_words(build_document(report.data))
    assert {"Overdue", "Retrained", "Re-measured"} & words or story == "pending"
    if story == "pending":  # and no date, state or request id of the pending table either
        table = next(b for b in build_document(report.data).blocks() if isinstance(b, Table)
                     and b.css == "pending")  # fmt: skip
        body = {w for r in table.rows for c in r.cells for w in plain(c).split() if len(w) >= 4}
        assert {"2024-05-31", B.pending_id(3), "approved", "OVERDUE"} <= body
        words |= body
    text = _raw_pdf_text(report.write(tmp_path / "r.pdf"))
    assert split_words(text, words) == []


def test_split_words_catches_the_old_overdue_header() -> None:
    """The check above finds what fpdf2 printed before the columns were fitted."""
    assert split_words("Overdue/la te Shredded", {"Overdue/late", "Shredded"}) == [
        "Overdue/late: 'Overdue/la' + 'te'"
    ]


def _sentences(doc: Document) -> list[str]:
    """Every paragraph, heading, fact and table cell that carries no badge (a badge reads as a
    pill in HTML and as a word in parentheses in the PDF)."""

    def ok(text: Rich) -> bool:
        return bool(text) and not any(isinstance(p, Badge) for p in text)

    out: list[str] = []
    for b in doc.blocks():
        if isinstance(b, (Para, Heading)) and ok(b.text):
            out.append(plain(b.text))
        elif isinstance(b, Facts):
            out += [label for label, _ in b.rows]
            out += [plain(v) for _, v in b.rows if ok(v)]
        elif isinstance(b, Table):
            out += [c.label for c in b.columns]
            out += [plain(cell) for row in b.rows for cell in row.cells if ok(cell)]
    return out


@pytest.mark.parametrize("story", ["fixed", "erased"])
def test_html_and_pdf_carry_the_same_sentences(
    story: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    report = build_report(request.getfixturevalue(story).bundle, [B.vkey()], now=B.NOW)
    doc = build_document(report.data)
    sentences = _sentences(doc)
    assert len(sentences) > 200
    html = _squeeze(_html_text(report.to_html()))
    pdf = _squeeze(_raw_pdf_text(report.write(tmp_path / "r.pdf")))
    missing_html = [s for s in sentences if _squeeze(s) not in html]
    missing_pdf = [s for s in sentences if _squeeze(s) not in pdf]
    assert missing_html == [] and missing_pdf == []
    for key in (
        "A failed apply publishes nothing: the model stays as it was, and the requests wait "
        "to be approved again.",
        "Everything above can be re-checked offline with the log's public key and no PyTorch:",
        "Per-class accuracy",
    ):
        assert key in sentences


def test_every_metric_says_what_it_means_and_which_way_is_good(erased: Any) -> None:
    from lethe_audit.metrics import METRIC_DEFINITIONS

    doc = build_document(build_report(erased.bundle, [B.vkey()], now=B.NOW).data)
    glossary = next(s for s in doc.sections if s.anchor == "definitions")
    table = next(b for b in glossary.blocks if isinstance(b, Table))
    assert [c.label for c in table.columns] == ["Metric", "Meaning", "Good is"]
    rows = {plain(r.cells[0]): (plain(r.cells[1]), plain(r.cells[2])) for r in table.rows}
    for d in METRIC_DEFINITIONS:
        meaning, good = rows[d.label]
        assert meaning == d.meaning
        assert good in ("↓ low is good", "↑ high is good"), (d.label, good)


def test_int8_export_is_shown_beside_fp32(tmp_path: Path) -> None:
    """A logged ``model.exported`` event (int8, with its own accuracies) joins the apply it
    exported: the report shows its file and numbers next to the fp32 ones."""
    from lethe_audit import statements as S

    fixed = B.build_log(tmp_path / "log", figures=False)
    try:
        details = {
            "model": B.MODEL,
            "variant": "int8",
            "sha256": "c8" * 32,
            "apply_id": B.APPLY_ID,
            "forget_accuracy": 0.0125,
            "retain_accuracy": 0.9751,
        }
        fixed.log.append(
            S.LifecycleEvent("model.exported", "2024-05-05T08:00:00Z", details=details)
        )
        bundle = fixed.bundle(tmp_path / "bundle")
    finally:
        fixed.log.engine.dispose()
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    applied = report.data["applies"][0]
    assert applied["exports"] == [
        {"index": 12, "at": "2024-05-05T08:00:00Z", "variant": "int8", "sha256": "c8" * 32,
         "forget_accuracy": 0.0125, "retain_accuracy": 0.9751, "attested": False},
    ]  # fmt: skip
    assert report.data["applies"][1]["exports"] == []  # the failed apply exported nothing
    table = next(
        b
        for b in build_document(report.data).blocks()
        if isinstance(b, Table) and b.columns[0].label == "Model file"
    )
    rows = [[plain(c) for c in r.cells] for r in table.rows]
    assert rows[0][:4] == ["fp32 (this attestation)", "e3" * 32, "0.00%", "98.45%"]
    assert rows[1][:4] == ["int8", "c8" * 32, "1.25%", "97.51%"]
    text = _squeeze(_raw_pdf_text(report.write(tmp_path / "r.pdf")))
    assert _squeeze("int8" + "c8" * 32 + "1.25%97.51%") in text


def test_int8_variant_attestation_is_shown_beside_fp32(tmp_path: Path) -> None:
    """An int8 model with its own signed attestation (urn:lethe:attestation:variant:v1) joins
    the apply its ``source`` names, with the accuracies of its own metrics."""
    from lethe_audit import statements as S

    fixed = B.build_log(tmp_path / "log", figures=False)
    int8_after = (39, 41, 39, 1, 39, 40, 41, 0, 38, 40)  # class 3: 1 of 42 recognised again
    try:
        variant = S.VariantAttestation(
            variant="int8",
            exported_at="2024-05-05T08:00:00Z",
            model=S.ModelRef(B.MODEL, B.BASE, B.FOLDED),
            source={"index": 9, "onnx_sha256": "e3" * 32},
            requests=(B.REQ_A, B.REQ_B),
            forgotten_classes=(3, 7),
            onnx=S.OnnxRef("c8" * 32, "sha256:" + "c9" * 32),
            quantization={"method": "static-qdq", "calibration_samples": 256},
            metrics=B.metrics((3, 7), int8_after),
            policy=S.PolicyVerdict({"max_forget_accuracy": 0.05}, True, ()),
        )
        fixed.log.append(variant.to_statement())
        bundle = fixed.bundle(tmp_path / "bundle")
    finally:
        fixed.log.engine.dispose()
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    assert report.passed, report.headline
    (x,) = report.data["applies"][0]["exports"]
    assert (x["variant"], x["sha256"], x["attested"], x["passed"]) == (
        "int8",
        "c8" * 32,
        True,
        True,
    )
    assert x["forget_accuracy"] == pytest.approx(1 / 82)
    assert report.data["log"]["entry_counts"]["attestation variant"] == 1
    html = _html_text(report.to_html())
    assert "int8" in html and "1.22%" in html and "variant attestation, policy" in html


def test_renderers_write_no_words_of_their_own() -> None:
    """Every word of the report comes from the view model: the HTML template and the PDF
    renderer hold layout only (so the two cannot say different things)."""
    import ast

    import lethe_audit.report as R

    root = Path(R.__file__).parent
    template = (root / "templates" / "report.html.j2").read_text(encoding="utf-8")
    text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", template, flags=re.S)
    text = re.sub(r"<style>.*?</style>|<[^>]*>", " ", text, flags=re.S)
    assert re.findall(r"[A-Za-z]{2,}", text) == []
    tree = ast.parse((root / "_pdf.py").read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
    }
    phrases = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docstrings
        and len(re.findall(r"[A-Za-z]{2,}", n.value)) >= 3
        and len(n.value.split()) >= 3  # a phrase, not a file or product name
    ]
    assert phrases == []
