"""PDF rendering with fpdf2 (pure Python): the view model of the HTML, drawn block by block.

Text uses the DejaVu fonts that ship with matplotlib (a dependency) so that α, Δ, ≤ and
similar characters print; without them it falls back to the PDF core fonts and spells those
characters out.
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lethe_audit.report._page import build_document
from lethe_audit.report._view import (
    Article,
    Block,
    Bullets,
    Chart,
    Commands,
    Facts,
    Figure,
    Heading,
    Para,
    Table,
    plain,
)

_FAMILY = "LetheSans"
_MONO = "LetheMono"
_ASCII = {
    "—": "-",
    "–": "-",
    "−": "-",
    "≤": "<=",
    "≥": ">=",
    "±": "+/-",
    "Δ": "delta ",
    "α": "alpha",
    "·": "-",
    "…": "...",
}
PASS = (26, 127, 55)
FAIL = (180, 35, 24)
WARN = (154, 103, 0)
MUTED = (87, 96, 106)


def _font_dir() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return d if (d / "DejaVuSans.ttf").is_file() else None


class _Doc:
    """A thin layer over ``fpdf.FPDF`` with the few building blocks a report needs."""

    def __init__(self, title: str) -> None:
        from fpdf import FPDF

        doc = self

        class _PDF(FPDF):
            def footer(self) -> None:
                self.set_y(-12)
                doc.font(size=8, color=MUTED)
                self.cell(0, 6, doc.t(f"{title} · page {self.page_no()}/{{nbpages}}"), align="C")

        self.pdf = _PDF(format="A4", unit="mm")
        self.pdf.alias_nb_pages("{nbpages}")  # wide enough for any page count
        self.pdf.set_margins(14, 14, 14)
        self.pdf.set_auto_page_break(True, margin=16)
        self.pdf.set_title(title)
        self.pdf.set_creator("lethe-audit")
        self.pdf.set_producer("lethe-audit (fpdf2)")
        fonts = _font_dir()
        self.unicode = fonts is not None
        if fonts is not None:
            self.pdf.add_font(_FAMILY, "", str(fonts / "DejaVuSans.ttf"))
            self.pdf.add_font(_FAMILY, "B", str(fonts / "DejaVuSans-Bold.ttf"))
            self.pdf.add_font(_MONO, "", str(fonts / "DejaVuSansMono.ttf"))
            self.family, self.mono = _FAMILY, _MONO
        else:
            self.family, self.mono = "helvetica", "courier"
        self.pdf.add_page()

    @property
    def width(self) -> float:
        return float(self.pdf.epw)

    def t(self, text: Any) -> str:
        s = "" if text is None else str(text)
        if self.unicode:
            return s
        for k, v in _ASCII.items():
            s = s.replace(k, v)
        return s.encode("latin-1", "replace").decode("latin-1")

    def font(
        self,
        *,
        size: float = 10,
        bold: bool = False,
        mono: bool = False,
        color: tuple[int, int, int] = (31, 35, 40),
    ) -> None:
        self.pdf.set_font(
            self.mono if mono else self.family, "B" if bold and not mono else "", size
        )
        self.pdf.set_text_color(*color)

    def heading(self, text: str, level: int = 2) -> None:
        size = {1: 18, 2: 14, 3: 12, 4: 10.5}[level]
        # Keep a heading with what follows it.
        if self.pdf.get_y() > self.pdf.h - (60 if level <= 2 else 45):
            self.pdf.add_page()
        self.pdf.ln(3 if level > 2 else 5)
        self.font(size=size, bold=True)
        self.pdf.multi_cell(0, size * 0.5, self.t(text), align="L", new_x="LMARGIN", new_y="NEXT")
        if level <= 2:
            y = self.pdf.get_y() + 0.5
            self.pdf.set_draw_color(208, 215, 222)
            self.pdf.line(self.pdf.l_margin, y, self.pdf.l_margin + self.width, y)
            self.pdf.ln(2)
        else:
            self.pdf.ln(1)

    def para(
        self,
        text: str,
        *,
        size: float = 9.5,
        bold: bool = False,
        color: tuple[int, int, int] = (31, 35, 40),
        mono: bool = False,
    ) -> None:
        self.font(size=size, bold=bold, color=color, mono=mono)
        self.pdf.multi_cell(0, size * 0.48, self.t(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1)

    def banner(self, text: str, ok: bool) -> None:
        fg = PASS if ok else FAIL
        bg = (218, 251, 225) if ok else (255, 235, 233)
        self.pdf.set_fill_color(*bg)
        self.pdf.set_draw_color(*fg)
        self.font(size=11, bold=True, color=fg)
        self.pdf.multi_cell(
            0,
            6,
            self.t(text),
            border=1,
            fill=True,
            padding=2,
            align="L",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        self.pdf.set_fill_color(255, 255, 255)
        self.pdf.set_draw_color(0, 0, 0)
        self.pdf.ln(2)

    def table(self, t: Table) -> None:
        """A table whose columns are at least as wide as their longest header word and
        longest number, and when the page allows also their longest body word of up to
        :data:`WHOLE_WORD` characters (dates, states; digests may break), so that no header and
        no date breaks inside a word; the rest of the width is shared by the columns' weights."""
        from fpdf.fonts import FontFace

        size = 7.0 if t.small else 8.0
        widths = self._widths(t, size, WHOLE_WORD) or self._widths(t, size, 0)
        while widths is None and size > 5.5:
            size -= 0.5
            widths = self._widths(t, size, 0)
        self.font(size=size)
        aligns = tuple("RIGHT" if c.numeric else "LEFT" for c in t.columns)
        with self.pdf.table(
            col_widths=widths or tuple(c.weight for c in t.columns),
            width=self.width,
            headings_style=FontFace(emphasis="BOLD", fill_color=(246, 248, 250)),
            line_height=size * 0.5,
            text_align=aligns,
            padding=CELL_PADDING,
            borders_layout="ALL",
        ) as table:
            row = table.row()
            for c in t.columns:
                row.cell(self.t(c.label))
            for r in t.rows:
                style = FontFace(fill_color=(253, 241, 240)) if r.highlight else None
                row = table.row(style=style)
                for cell in r.cells:
                    row.cell(self.t(plain(cell)))
        self.pdf.ln(2)

    def _widths(self, t: Table, size: float, whole: int) -> tuple[float, ...] | None:
        """Column widths in mm at font ``size``, or ``None`` when the words do not fit. Body
        words of up to ``whole`` characters (every word of a numeric column) stay whole."""
        need = []
        for k, c in enumerate(t.columns):
            self.font(size=size, bold=True)
            words = [self.pdf.get_string_width(self.t(w)) for w in c.label.split()]
            self.font(size=size)
            for r in t.rows:
                text = self.t(plain(r.cells[k]))
                words += [
                    self.pdf.get_string_width(w)
                    for w in text.split()
                    if c.numeric or len(w) <= whole
                ]
            need.append(max(words, default=0.0) + 2 * CELL_PADDING + WORD_SLACK)
        spare = self.width - sum(need)
        if spare < 0:
            return None
        total = sum(c.weight for c in t.columns)
        return tuple(n + spare * c.weight / total for n, c in zip(need, t.columns, strict=True))

    def facts(self, f: Facts) -> None:
        """Labelled facts: a label column as wide as its longest word needs, values beside."""
        size = 8.0
        self.font(size=size)
        label_w = max(
            (self.pdf.get_string_width(self.t(w)) for k, _ in f.rows for w in k.split()),
            default=0.0,
        )
        label_w = max(label_w + 2 * CELL_PADDING + WORD_SLACK, self.width * 0.27)
        with self.pdf.table(
            col_widths=(label_w, self.width - label_w),
            width=self.width,
            first_row_as_headings=False,
            line_height=size * 0.5,
            text_align=("LEFT", "LEFT"),
            padding=CELL_PADDING,
            borders_layout="ALL",
        ) as table:
            for label, value in f.rows:
                row = table.row()
                row.cell(self.t(label))
                row.cell(self.t(plain(value)))
        self.pdf.ln(2)

    def svg(self, svg: str, width: float) -> None:
        if self.pdf.get_y() + width * 0.4 > self.pdf.h - 20:
            self.pdf.add_page()
        # fpdf2 does not know <title> (the HTML's accessible name): leave it out here.
        svg = re.sub(r"<title>.*?</title>", "", svg, flags=re.S)
        self.pdf.image(io.BytesIO(svg.encode("utf-8")), w=width)
        self.pdf.ln(2)

    def png(self, data: bytes, caption: str) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            w_px, h_px = im.size
        width = min(self.width, 170.0)
        height = width * h_px / max(w_px, 1)
        if height > self.pdf.h - 40:
            height = self.pdf.h - 40
            width = height * w_px / max(h_px, 1)
        if self.pdf.get_y() + height > self.pdf.h - 20:
            self.pdf.add_page()
        self.pdf.image(io.BytesIO(data), w=width, h=height)
        self.para(caption, size=8, color=MUTED)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


#: Inner cell padding (mm) and the slack that keeps the widest word of a column on one line.
CELL_PADDING = 1.0
WORD_SLACK = 1.2
#: Body words up to this long are kept on one line when the page allows (a request id is 30).
WHOLE_WORD = 32
_TONES = {"plain": (31, 35, 40), "muted": MUTED, "warn": WARN, "bad": FAIL, "ok": PASS}


def _block(doc: _Doc, b: Block, images: Mapping[str, bytes]) -> None:
    """Draw one block of the view model."""
    if isinstance(b, Heading):
        doc.heading(plain(b.text), b.level)
    elif isinstance(b, Para):
        size = 8.0 if b.small else 9.5
        bold = b.tone in ("bad", "bold")
        doc.para(plain(b.text), size=size, bold=bold, color=_TONES.get(b.tone, _TONES["plain"]))
    elif isinstance(b, Bullets):
        color = _TONES.get(b.tone, _TONES["plain"])
        for item in b.items:
            doc.para(f"• {plain(item)}", size=8.5, color=color)
    elif isinstance(b, Commands):
        doc.para("\n".join(b.lines), size=7.5, mono=True)
    elif isinstance(b, Table):
        doc.table(b)
    elif isinstance(b, Facts):
        doc.facts(b)
    elif isinstance(b, Chart):
        doc.svg(b.svg, width=min(doc.width, 170))
    elif isinstance(b, Figure):
        blob = images.get(b.path) if b.path else None
        if blob is not None:
            doc.png(blob, plain(b.caption))
        else:
            doc.para(plain(b.caption), size=8, color=MUTED)
    elif isinstance(b, Article):
        for inner in b.blocks:
            _block(doc, inner, images)


def _blocks(doc: _Doc, blocks: Sequence[Block], images: Mapping[str, bytes]) -> None:
    articles = 0
    for b in blocks:
        if isinstance(b, Article):
            # One request per page once the page is half full (as the HTML prints).
            if articles and doc.pdf.get_y() > doc.pdf.h / 2:
                doc.pdf.add_page()
            articles += 1
        _block(doc, b, images)


def render_report(r: Mapping[str, Any], images: Mapping[str, bytes]) -> bytes:
    """The report dict as a PDF: the same view model, sentences and tables as the HTML."""
    view = build_document(r)
    doc = _Doc(view.title)
    doc.banner(view.headline, view.passed)
    doc.heading(view.heading, 1)
    doc.para(plain(view.subtitle), size=8.5, color=MUTED)
    for section in view.sections:
        if section.anchor == "requests" and doc.pdf.get_y() > doc.pdf.h / 2:
            doc.pdf.add_page()
        doc.heading(section.title)
        _blocks(doc, section.blocks, images)
    doc.para(view.footer, size=7.5, color=MUTED)
    return doc.output()
