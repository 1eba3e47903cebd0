"""Charts as small, self-made SVG: crisp in print, searchable text, no plotting library.

The same SVG goes inline into the HTML report and, through fpdf2's SVG support, into the PDF,
so it sticks to what both understand: rect, line, text, plain attributes, no CSS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

BEFORE = "#9aa5b1"
AFTER = "#2563a8"
FORGOTTEN = "#c0392b"
INK = "#222222"
GRID = "#dddddd"


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def per_class_accuracy(
    rows: Sequence[dict[str, Any]],
    *,
    title: str = "Per-class accuracy before and after",
    before_key: str = "before",
    after_key: str = "after",
    before_label: str = "before (unfiltered)",
    after_label: str = "after (filtered)",
    width: int = 640,
    height: int = 240,
) -> str:
    """Grouped bars per class id: ``before_key`` grey, ``after_key`` blue (red when the class
    is forgotten). Missing values (``None``) draw no bar."""
    left, right, top, bottom = 44, 12, 34, 34
    plot = _Plot(left, top, width - left - right, height - top - bottom)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="14" font-family="sans-serif" font-size="12" '
        f'fill="{INK}">{escape(title)}</text>',
    ]
    out += _legend(width - right - 300, before_label, after_label)
    out += _grid(plot)
    out += _bars(plot, rows, before_key, after_key)
    out.append(
        f'<line x1="{left}" y1="{plot.base:.1f}" x2="{width - right}" y2="{plot.base:.1f}" '
        f'stroke="{INK}" stroke-width="1"/>'
    )
    out.append(
        f'<text x="{left + plot.w / 2:.1f}" y="{height - 4}" font-family="sans-serif" '
        f'font-size="10" fill="{INK}" text-anchor="middle">class id</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


class _Plot:
    """The plot area: left/top corner, width and height in SVG units."""

    def __init__(self, x: float, y: float, w: float, h: float) -> None:
        self.x, self.y, self.w, self.h = x, y, w, h
        self.base = y + h


def _legend(lx: float, before_label: str, after_label: str) -> list[str]:
    out = []
    for dx, color, label in (
        (0, BEFORE, before_label),
        (120, AFTER, after_label),
        (230, FORGOTTEN, "forgotten"),
    ):
        out.append(f'<rect x="{lx + dx}" y="20" width="10" height="10" fill="{color}"/>')
        out.append(
            f'<text x="{lx + dx + 14}" y="29" font-family="sans-serif" font-size="10" '
            f'fill="{INK}">{escape(label)}</text>'
        )
    return out


def _grid(plot: _Plot) -> list[str]:
    out = []
    for k in range(5):
        v = k / 4
        y = plot.y + plot.h * (1 - v)
        out.append(
            f'<line x1="{plot.x}" y1="{y:.1f}" x2="{plot.x + plot.w}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{plot.x - 6}" y="{y + 3:.1f}" font-family="sans-serif" font-size="10" '
            f'fill="{INK}" text-anchor="end">{_num(v)}</text>'
        )
    return out


def _bars(
    plot: _Plot, rows: Sequence[dict[str, Any]], before_key: str, after_key: str
) -> list[str]:
    group = plot.w / max(len(rows), 1)
    bar = min(group * 0.38, 28.0)
    out = []
    for i, r in enumerate(rows):
        x0 = plot.x + group * i + group / 2
        for offset, key, color in (
            (-bar, before_key, BEFORE),
            (0.0, after_key, FORGOTTEN if r.get("forgotten") else AFTER),
        ):
            got = r.get(key)
            if got is None:
                continue
            # A thin bar for 0, so that "0%" reads differently from "not measured".
            h = max(plot.h * max(0.0, min(1.0, float(got))), 1.5)
            out.append(
                f'<rect x="{x0 + offset:.1f}" y="{plot.base - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"/>'
            )
        weight = "bold" if r.get("forgotten") else "normal"
        out.append(
            f'<text x="{x0:.1f}" y="{plot.base + 14:.1f}" font-family="sans-serif" '
            f'font-size="10" font-weight="{weight}" fill="{INK}" text-anchor="middle">'
            f"{escape(str(r['class']))}</text>"
        )
    return out


def remeasured_accuracy(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`per_class_accuracy` of logged against re-measured (ONNX) accuracies."""
    return per_class_accuracy(
        rows,
        title="Per-class accuracy: logged vs re-measured",
        before_key="logged",
        after_key="measured",
        before_label="logged (after)",
        after_label="re-measured",
    )
