"""HTML rendering (Jinja2): one self-contained file, no scripts, no network fetches."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

from lethe_audit.report import _fmt
from lethe_audit.report._page import build_document
from lethe_audit.report._view import Badge, Code, Document, Link, Note, Rich, Text


def environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("lethe_audit.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(_fmt.FILTERS)
    return env


def _css(env: Any) -> Markup:
    source, _, _ = env.loader.get_source(env, "report.css")
    return Markup(source)


def inline(text: Rich) -> Markup:
    """A rich run as HTML: every string escaped, badges as pills, digests breakable."""
    out: list[str] = []
    for p in text:
        if isinstance(p, Text):
            out.append(escape(p.text))
        elif isinstance(p, Code):
            css = ' class="digest"' if p.digest else ""
            out.append(f"<code{css}>{escape(p.text)}</code>")
        elif isinstance(p, Badge):
            out.append(f'<span class="badge {escape(p.css)}">{escape(p.text)}</span>')
        elif isinstance(p, Link):
            label = f"<code>{escape(p.text)}</code>" if p.code else escape(p.text)
            out.append(f'<a href="{escape(p.href)}">{label}</a>')
        elif isinstance(p, Note):
            out.append(f'<br><span class="muted">{escape(p.text)}</span>')
        else:
            out.append("<br>")
    return Markup("".join(out))


def render_report(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    """The report dict as one self-contained HTML page (from the same view model as the PDF)."""
    images = {
        path: "data:image/png;base64," + base64.b64encode(blob).decode("ascii")
        for path, blob in figures.items()
    }
    return render_document(build_document(data), images=images)


def render_document(
    doc: Document, *, images: Mapping[str, str] | None = None, extra_css: str = ""
) -> str:
    """One view-model document (a report or a receipt page) as a self-contained HTML page."""
    env = environment()
    env.filters["inline"] = inline
    return str(
        env.get_template("report.html.j2").render(
            doc=doc,
            css=_css(env),
            extra_css=Markup(extra_css),
            images=dict(images or {}),
            Markup=Markup,
        )
    )


#: The receipt page is one narrow column of larger text.
RECEIPT_CSS = "body { max-width: 760px; font-size: 15px; }"
