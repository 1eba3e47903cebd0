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
    plot_w = width - left - right
    plot_h = height - top - bottom
    n = max(len(rows), 1)
    group = plot_w / n
    bar = min(group * 0.38, 28.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="14" font-family="sans-serif" font-size="12" '
        f'fill="{INK}">{escape(title)}</text>',
    ]
    # Legend.
    lx = width - right - 300
    out.append(f'<rect x="{lx}" y="20" width="10" height="10" fill="{BEFORE}"/>')
    out.append(
        f'<text x="{lx + 14}" y="29" font-family="sans-serif" font-size="10" '
        f'fill="{INK}">{escape(before_label)}</text>'
    )
    out.append(f'<rect x="{lx + 120}" y="20" width="10" height="10" fill="{AFTER}"/>')
    out.append(
        f'<text x="{lx + 134}" y="29" font-family="sans-serif" font-size="10" '
        f'fill="{INK}">{escape(after_label)}</text>'
    )
    out.append(f'<rect x="{lx + 230}" y="20" width="10" height="10" fill="{FORGOTTEN}"/>')
    out.append(
        f'<text x="{lx + 244}" y="29" font-family="sans-serif" font-size="10" '
        f'fill="{INK}">forgotten</text>'
    )
    # Axis and grid.
    for k in range(5):
        v = k / 4
        y = top + plot_h * (1 - v)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 3:.1f}" font-family="sans-serif" font-size="10" '
            f'fill="{INK}" text-anchor="end">{_num(v)}</text>'
        )
    base_y = top + plot_h
    for i, r in enumerate(rows):
        x0 = left + group * i + group / 2
        for offset, key, color in (
            (-bar, before_key, BEFORE),
            (0.0, after_key, FORGOTTEN if r.get("forgotten") else AFTER),
        ):
            got = r.get(key)
            if got is None:
                continue
            # A thin bar for 0, so that "0%" reads differently from "not measured".
            h = max(plot_h * max(0.0, min(1.0, float(got))), 1.5)
            out.append(
                f'<rect x="{x0 + offset:.1f}" y="{base_y - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"/>'
            )
        weight = "bold" if r.get("forgotten") else "normal"
        out.append(
            f'<text x="{x0:.1f}" y="{base_y + 14:.1f}" font-family="sans-serif" font-size="10" '
            f'font-weight="{weight}" fill="{INK}" text-anchor="middle">{r["class"]}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{base_y:.1f}" x2="{width - right}" y2="{base_y:.1f}" '
        f'stroke="{INK}" stroke-width="1"/>'
    )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-family="sans-serif" '
        f'font-size="10" fill="{INK}" text-anchor="middle">class id</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


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
