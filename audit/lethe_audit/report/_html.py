"""HTML rendering (Jinja2): one self-contained file, no scripts, no network fetches."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from lethe_audit.report import _charts, _fmt


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


def render_report(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    env = environment()
    charts: dict[int, Markup] = {}
    for a in data["applies"]:
        m = a["metrics"]
        if m.get("structured"):
            charts[a["index"]] = Markup(_charts.per_class_accuracy(m["per_class"]))
    remeasure_chart = None
    rm = data.get("remeasure")
    if rm is not None:
        remeasure_chart = Markup(_charts.remeasured_accuracy(rm["per_class"]))
    images = {
        path: "data:image/png;base64," + base64.b64encode(blob).decode("ascii")
        for path, blob in figures.items()
    }
    requests = {r["id"]: r for r in data["requests"]}
    applies = {a["index"]: a for a in data["applies"]}
    return str(
        env.get_template("report.html.j2").render(
            r=data,
            css=_css(env),
            charts=charts,
            remeasure_chart=remeasure_chart,
            images=images,
            requests_by_id=requests,
            applies=applies,
        )
    )


def render_receipt(data: Mapping[str, Any]) -> str:
    env = environment()
    chart = None
    rows = (data.get("metrics") or {}).get("classes") or []
    if rows:
        chart = Markup(
            _charts.per_class_accuracy(
                rows,
                title="How often the model recognised your classes",
                width=420,
                height=200,
            )
        )
    return str(env.get_template("receipt.html.j2").render(r=data, css=_css(env), chart=chart))
