"""PDF rendering with fpdf2 (pure Python): the same sections, tables and charts as the HTML.

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

from lethe_audit.report import _charts, _fmt

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

    def table(
        self,
        rows: Sequence[Sequence[Any]],
        *,
        header: Sequence[str] | None = None,
        widths: Sequence[float] | None = None,
        numeric: Sequence[int] = (),
        size: float = 8,
        highlight: Sequence[bool] | None = None,
    ) -> None:
        from fpdf.fonts import FontFace

        if not rows and header is None:
            return
        ncols = len(header) if header is not None else len(rows[0])
        self.font(size=size)
        aligns = ["RIGHT" if i in numeric else "LEFT" for i in range(ncols)]
        with self.pdf.table(
            col_widths=tuple(widths) if widths else None,
            width=self.width,
            first_row_as_headings=header is not None,
            headings_style=FontFace(emphasis="BOLD", fill_color=(246, 248, 250)),
            line_height=size * 0.5,
            text_align=tuple(aligns),
            padding=1,
            borders_layout="ALL",
        ) as table:
            if header is not None:
                row = table.row()
                for h in header:
                    row.cell(self.t(h))
            for k, values in enumerate(rows):
                style = None
                if highlight is not None and highlight[k]:
                    style = FontFace(fill_color=(253, 241, 240))
                row = table.row(style=style)
                for v in values:
                    row.cell(self.t(v))
        self.pdf.ln(2)

    def facts(self, pairs: Sequence[tuple[str, Any]]) -> None:
        self.table([(k, v) for k, v in pairs], widths=(32, 88))

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


def _ok(flag: Any, yes: str = "verified", no: str = "FAILED") -> str:
    return yes if flag else no


def _verdict(a: Mapping[str, Any]) -> str:
    """The logged verdict with the phase beside it: never "passed" alone for a masked model."""
    text = _ok(a["policy"]["passed"], "passed", "FAILED")
    return f"{text} ({a['phase_label']})" if a["outcome"] == "applied" else text


def _phase_facts(a: Mapping[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        (
            "Phase",
            "2, erase: the weights were changed so that they no longer hold the classes"
            if a["phase"] == "erase"
            else "1, mask: a filter masks the classes in weights that still hold them (masked, "
            "not yet erased)",
        )
    ]
    sf = a.get("starts_from")
    if sf:
        where = (
            f"the masked model of log entry #{sf['index']}"
            if sf["index"] is not None
            else "a masked model not in this bundle"
        )
        pairs.append(
            ("Starts from", f"{where} (apply {sf['apply_id']}, model sha256 {sf['model_sha256']})")
        )
    er = a.get("erase")
    if er:
        settings = ", ".join(f"{k} = {v}" for k, v in sorted(er["config"].items()))
        pairs.append(
            (
                "Erase method",
                f"{er['method']}, {_fmt.num(er['seconds'])} s on {er['retain_samples']} retained "
                f"training samples; settings {settings}",
            )
        )
    return pairs


def _depth_para(doc: _Doc, m: Mapping[str, Any]) -> None:
    depth = m.get("depth")
    if not depth:
        return
    ref = depth["reference"]
    doc.para(
        f"Depth is measured against a reference: {ref['description']} ({ref['kind']}), made "
        f"{_fmt.when(ref['created_at'])} in {_fmt.num(ref['seconds'])} s, weights sha256 "
        f"{ref['model_sha256']}. It relearns its held-out class in "
        f"{_fmt.num(ref['relearn_steps'])} steps (runs "
        f"{', '.join(map(str, ref['relearn_runs']))}, seeds {', '.join(map(str, ref['seeds']))}); "
        f"its feature probe AUC is {_fmt.num(ref['probe_auc'])}. This model relearns in "
        f"{_fmt.num(depth['relearn_steps'])} steps (runs "
        f"{', '.join(map(str, depth['relearn_runs']))}).",
        size=8.5,
    )


def _apply(doc: _Doc, a: Mapping[str, Any], images: Mapping[str, bytes], *, others: int) -> None:
    m = a["metrics"]
    inc = a["inclusion"]
    onnx = a.get("onnx") or {}
    policy = a["policy"]
    thresholds = ", ".join(f"{k} = {_fmt.num(v)}" for k, v in sorted(policy["thresholds"].items()))
    pairs: list[tuple[str, Any]] = [
        ("Log entry", f"#{a['index']} ({a['outcome']}, {_fmt.when(a['applied_at'])})"),
        *_phase_facts(a),
        ("Model", a["model"]["name"]),
        ("Base model digest", a["model"]["base_digest"]),
        (
            "Erased model digest" if a["phase"] == "erase" else "Filtered model digest",
            a["model"]["folded_digest"] or _fmt.DASH,
        ),
        ("Filter bank digest", a["filter_bank_digest"]),
        ("ONNX file (sha256)", onnx.get("sha256") or "— (nothing exported)"),
        ("ONNX content hash", onnx.get("content_hash") or _fmt.DASH),
        ("Method", f"{a['method']['name']} {a['method']['version']}"),
        ("Classes the model forgets", ", ".join(map(str, a["forgotten_classes"])) or _fmt.DASH),
    ]
    if others:
        pairs.append(("Applied together with", f"{others} other request(s)"))
    proof = "; ".join(inc["proof"])
    pairs.append(
        (
            "Inclusion proof",
            f"{_ok(inc['verified'])}: {inc['message']}"
            + (f"; checkpoint root {inc['root']}" if inc["root"] else "")
            + (f"; proof hashes: {proof}" if proof else ""),
        )
    )
    pairs.append(
        (
            "Policy verdict (logged)",
            _verdict(a)
            + (f"; thresholds {thresholds}" if thresholds else "")
            + ("; " + "; ".join(policy["failures"]) if policy["failures"] else ""),
        )
    )
    doc.facts(pairs)
    if m.get("structured"):
        doc.heading(
            f"Verification metrics (evaluation set: {m['samples']} samples, "
            f"{m['forget_samples']} of forgotten classes, backend {m['backend']})",
            4,
        )
        after = "After (erased)" if a["phase"] == "erase" else "After (masked)"
        doc.table(
            [
                (
                    r["label"] + (f"\n{r['meaning']}" if r["meaning"] else ""),
                    _fmt.good(r["good"]),
                    _fmt.value(r["before"], r["unit"]),
                    _fmt.value(r["after"], r["unit"]),
                    _fmt.change(r["delta"], r["unit"]),
                    _fmt.value(r["retrained"], r["unit"]),
                    _fmt.value(r["reference"], r["unit"]),
                )
                for r in m["rows"]
            ],
            header=("Metric", "Good is", "Before", after, "Change", "Retrained", "Reference"),
            widths=(62, 18, 16, 17, 16, 16, 16),
            numeric=(2, 3, 4, 5, 6),
            size=7,
        )
        _depth_para(doc, m)
        doc.para(f"Dataset digest {m['dataset_digest']}", size=7.5, color=MUTED)
        rc = m["recheck"]
        if rc["available"]:
            verdict = _ok(rc["passed"], "pass", "FAIL")
            if rc["passed"] and a["outcome"] == "applied":
                verdict += f" ({a['phase_label']})"
            if not rc["agrees_with_log"]:
                verdict += " (DISAGREES with the logged verdict)"
            doc.heading(f"Policy checks recomputed from the logged metrics: {verdict}", 4)
            doc.table(
                [
                    (
                        c["label"],
                        _fmt.num(c["value"]),
                        f"{c['op']} {_fmt.num(c['threshold'])}",
                        _ok(c["passed"], "pass", "FAIL")
                        + (f" {c['reason']}" if c["reason"] else ""),
                    )
                    for c in rc["checks"]
                ]
                or [("No thresholds were set.", "", "", "")],
                header=("Check", "Value", "Threshold", "Result"),
                widths=(50, 20, 22, 40),
                numeric=(1, 2),
            )
        else:
            doc.para(str(rc["note"]), size=8, color=MUTED)
        doc.heading("Per-class accuracy", 4)
        doc.svg(_charts.per_class_accuracy(m["per_class"]), width=min(doc.width, 170))
        _per_class_table(
            doc, m["per_class"], ("before", "after", "delta"), ("Before", "After", "Change")
        )
        for w in m["warnings"]:
            doc.para(w, size=8, color=WARN)
        for sk in m["skipped"]:
            doc.para(f"{sk['label']} not measured: {sk['reason']}", size=8, color=MUTED)
    else:
        doc.heading("Logged metrics", 4)
        doc.para(str(m["note"]), size=8, color=MUTED)
        doc.table(
            [(v["metric"], _fmt.num(v["value"])) for v in m["values"]],
            header=("Metric", "Value"),
            numeric=(1,),
        )
    if a["figures"]:
        doc.heading("Filter bank figures (authenticated by log entry)", 4)
        for f in a["figures"]:
            caption = (
                f"{f['caption']}. {f['name']}, sha256 {f['sha256']}, logged in entry "
                f"#{f['event_index']}."
            )
            blob = images.get(f["path"])
            if f["embedded"] and blob is not None:
                doc.png(blob, caption)
            else:
                doc.para(caption, size=8, color=MUTED)


def _in_short(a: Mapping[str, Any], classes: Sequence[int]) -> str:
    parts = [
        f"policy {_verdict(a)}",
        f"inclusion proof {_ok(a['inclusion']['verified'])}",
    ]
    m = a["metrics"]
    if m.get("structured"):
        for row in m["rows"][:2]:
            before = _fmt.value(row["before"], row["unit"])
            after = _fmt.value(row["after"], row["unit"])
            parts.append(f"{row['label'].lower()} {before} → {after}")
        for c in m["per_class"]:
            if c["class"] in classes:
                parts.append(f"class {c['class']} {_fmt.pct(c['before'])} → {_fmt.pct(c['after'])}")
    text = "Its section shows the metrics, digests, inclusion proof and figures of that apply. "
    text += "In short: " + ", ".join(parts)
    text += f"; filtered model {a['model']['folded_digest']}"
    if a.get("onnx"):
        text += f", ONNX sha256 {a['onnx']['sha256']}"
    return text + "."


def _erase_part(
    doc: _Doc, q: Mapping[str, Any], applies: Mapping[int, Any], images: Mapping[str, bytes]
) -> None:
    """Mask and erase side by side, then the erase apply (when the request was erased)."""
    if q["comparison"]:
        doc.heading(
            f"Mask (phase 1, entry #{q['apply_index']}) and erase (phase 2, entry "
            f"#{q['erase_index']}) side by side",
            4,
        )
        doc.table(
            [
                (
                    c["label"] + (f"\n{c['meaning']}" if c["meaning"] else ""),
                    _fmt.good(c["good"]),
                    _fmt.value(c["before"], c["unit"]),
                    _fmt.value(c["mask"], c["unit"]),
                    _fmt.value(c["erase"], c["unit"]),
                    _fmt.value(c["reference"], c["unit"]),
                )
                for c in q["comparison"]
            ],
            header=("Metric", "Good is", "Before", "Masked", "Erased", "Reference"),
            widths=(70, 18, 17, 17, 17, 17),
            numeric=(2, 3, 4, 5),
            size=7,
        )
    if q["erase_index"] is not None:
        a = applies[q["erase_index"]]
        doc.heading(f"Erased by log entry #{q['erase_index']}", 4)
        _apply(doc, a, images, others=len(a["request_ids"]) - 1)


def _definitions(doc: _Doc, r: Mapping[str, Any]) -> None:
    doc.heading("What the metrics mean")
    doc.para(
        "A deletion has two phases. Phase 1 (mask) is fast: a filter stops the model from using "
        'what it learned about the classes, but the weights still hold it ("masked, not yet '
        'erased"). Phase 2 (erase) changes the weights so that they no longer hold the '
        "classes; its depth is measured against a reference model retrained without a class."
    )
    doc.table(
        [(d["label"], d["meaning"], d["direction"]) for d in r["definitions"]],
        header=("Metric", "Meaning", "Good is"),
        widths=(35, 110, 25),
        size=7.5,
    )


def render_report(r: Mapping[str, Any], images: Mapping[str, bytes]) -> bytes:
    doc = _Doc(f"Lethe audit report · {r['log']['origin'] or 'unknown log'}")
    ver = r["verification"]
    doc.banner(r["headline"], bool(ver["passed"]))
    doc.heading("Lethe audit report", 1)
    bundle = r["bundle"]
    doc.para(
        f"Log {r['log']['origin'] or 'unknown'} · bundle {bundle['name']}"
        + (f" exported {_fmt.when(bundle['created_at'])}" if bundle["created_at"] else "")
        + f" · report generated {_fmt.when(r['generated_at'])} by {r['generator']}",
        size=8.5,
        color=MUTED,
    )

    doc.heading("Summary")
    s = r["summary"]
    doc.table(
        [
            (
                s["requests"],
                s["applied"],
                s["masked_only"],
                s["erased"],
                s["pending"],
                s["failed"],
                s["rejected"],
                s["overdue"],
                s["shredded"],
                s["applies"],
                s["failed_applies"],
            )
        ],
        header=(
            "Requests",
            "Applied",
            "Masked, not yet erased",
            "Erased",
            "Pending",
            "Failed",
            "Rejected",
            "Overdue/late",
            "Shredded",
            "Applies",
            "Failed applies",
        ),
        numeric=tuple(range(11)),
    )
    if r["warnings"]:
        doc.heading("Warnings", 3)
        for w in r["warnings"]:
            doc.para(f"• {w}", size=8.5, color=WARN)

    doc.heading("Verification")
    if ver["passed"]:
        doc.para(
            "Passed. The bundle was verified offline: the manifest and file digests, every "
            "checkpoint's signature and origin, every entry's DSSE signature and statement, and "
            "the Merkle root recomputed from all entries at every checkpoint size."
        )
    else:
        err = ver["error"]
        doc.para(f"FAILED. {err['type']}: {err['message']}", bold=True, color=FAIL)
    if ver["located"]:
        loc = ver["located"]
        doc.para(
            "Located by verifying again without the manifest's (unsigned) file digests: "
            f"{loc['type']}: {loc['message']}",
            bold=True,
        )
    doc.table(
        [(k["key_hint"], k["vkey"]) for k in ver["trusted_keys"]],
        header=("Trusted key", "vkey"),
        widths=(45, 75),
    )

    applies = {a["index"]: a for a in r["applies"]}
    if doc.pdf.get_y() > doc.pdf.h / 2:
        doc.pdf.add_page()
    doc.heading("Deletion requests")
    shown = [q for q in r["requests"] if q["status"] != "rejected"]
    if not shown:
        doc.para("No deletion requests in this log.")
    # An apply that covers several requests is shown in full once, in the first one's section.
    first: dict[int, str] = {}
    for q in shown:
        if q["apply_index"] is not None:
            first.setdefault(q["apply_index"], q["id"])
    for k, q in enumerate(shown):
        if k and doc.pdf.get_y() > doc.pdf.h / 2:
            doc.pdf.add_page()
        flag = f" [{q['deadline']['state'].upper()}]" if q["overdue"] else ""
        phase = {"masked": ", masked, not yet erased", "erased": ", erased"}.get(q["phase"], "")
        doc.heading(f"Request {q['id']} ({q['status']}{phase}){flag}", 3)
        events = "; ".join(
            f"#{e['index']} {e['event']} ({_fmt.when(e['at'])})" for e in q["events"]
        )
        if q["covered_by"]:
            events += (
                ("; " if events else "") + "applied in #" + ", #".join(map(str, q["covered_by"]))
            )
        if q["erase_indexes"]:
            events += "; erased in #" + ", #".join(map(str, q["erase_indexes"]))
        if q["failed_applies"]:
            events += "; failed applies #" + ", #".join(map(str, q["failed_applies"]))
        commitment = q["subject_commitment"] or _fmt.DASH
        if q["shredded_at"]:
            commitment += f" (key shredded {_fmt.when(q['shredded_at'])})"
        doc.facts(
            [
                ("Status", q["status"] + (f" ({phase[2:]})" if phase else "")),
                ("Legal basis", q["legal_basis"] or _fmt.DASH),
                ("Classes (ids)", ", ".join(map(str, q["classes"])) or _fmt.DASH),
                ("Model", q["model"] or _fmt.DASH),
                ("Subject commitment", commitment),
                ("Received", _fmt.when(q["received_at"])),
                ("Due", _fmt.when(q["due_at"])),
                ("Approved", _fmt.when(q["approved_at"])),
                ("Applied (masked)", _fmt.when(q["applied_at"])),
                (
                    "Erased",
                    f"{_fmt.when(q['erased_at'])} (log entry #{q['erase_index']})"
                    if q["erased_at"]
                    else "not yet",
                ),
                ("Deadline", _fmt.deadline(q["deadline"])),
                ("Log entries", events or _fmt.DASH),
            ]
        )
        _erase_part(doc, q, applies, images)
        if q["apply_index"] is not None and first[q["apply_index"]] == q["id"]:
            a = applies[q["apply_index"]]
            doc.heading(f"Applied (masked) by log entry #{q['apply_index']}", 4)
            _apply(doc, a, images, others=len(a["request_ids"]) - 1)
            if len(q["covered_by"]) > 1:
                later = ", #".join(map(str, q["covered_by"][1:]))
                doc.para(f"Later applies also cover this request: #{later}.", size=8, color=MUTED)
        elif q["apply_index"] is not None:
            a = applies[q["apply_index"]]
            doc.heading(
                f"Applied (masked) by log entry #{q['apply_index']}, together with request "
                f"{first[q['apply_index']]}",
                4,
            )
            doc.para(_in_short(a, q["classes"]))
        elif q["failed_applies"]:
            doc.para(
                f"Not applied: the latest attempt (entry #{q['failed_applies'][-1]}) failed "
                "verification; see Failed applies."
            )
        else:
            doc.para("Not applied yet.")

    _definitions(doc, r)

    doc.heading("Failed applies")
    failed = [a for a in r["applies"] if a["outcome"] == "failed"]
    if not failed:
        doc.para("No apply failed.")
    else:
        doc.para(
            "A failed apply publishes nothing: the model stays as it was, and the requests wait "
            "to be approved again."
        )
    for a in failed:
        doc.heading(f"Entry #{a['index']}: failed {_fmt.when(a['applied_at'])}", 3)
        doc.para(
            "Requests: "
            + ", ".join(a["request_ids"])
            + " · classes "
            + ", ".join(map(str, a["forgotten_classes"]))
        )
        doc.para("Reasons:", bold=True)
        for f in a["policy"]["failures"]:
            doc.para(f"• {f}")
        _apply(doc, a, images, others=0)

    doc.heading("Rejected requests")
    rejected = [q for q in r["requests"] if q["status"] == "rejected"]
    if not rejected:
        doc.para("No request was rejected.")
    else:
        doc.para(
            "The reasons for a rejection are kept in the operator's database, not in the log.",
            size=8,
            color=MUTED,
        )
        doc.table(
            [
                (
                    q["id"],
                    ", ".join(map(str, q["classes"])) or _fmt.DASH,
                    q["legal_basis"] or _fmt.DASH,
                    _fmt.when(q["received_at"]),
                    _fmt.when(q["due_at"]),
                    _fmt.when(q["rejected_at"]),
                    _fmt.deadline(q["deadline"]),
                    ", ".join(f"#{e['index']}" for e in q["events"]),
                )
                for q in rejected
            ],
            header=(
                "Request",
                "Classes",
                "Legal basis",
                "Received",
                "Due",
                "Rejected",
                "Deadline",
                "Entries",
            ),
            size=7,
        )

    doc.heading("Crypto-shredding")
    shredded = [q for q in r["requests"] if q["shredded_at"]]
    if not shredded:
        doc.para("No subject key was shredded.")
    else:
        doc.para(
            "For these requests the key of the subject commitment was destroyed: the commitment "
            "in the log can no longer be linked to anyone."
        )
        doc.table(
            [(q["id"], q["status"], _fmt.when(q["shredded_at"])) for q in shredded],
            header=("Request", "Status", "Shredded"),
        )

    rm = r.get("remeasure")
    if rm:
        _remeasure(doc, rm)

    _log(doc, r)

    doc.heading("Check it yourself")
    doc.para("Everything above can be re-checked offline with the log's public key and no PyTorch:")
    lines = ["pip install 'lethe-audit[report]'"]
    sh = _fmt.sh
    name = sh(bundle["name"])  # every inserted value is one shell word
    lines += [
        f"lethe-audit verify {name} --key {sh(k['vkey'], always=True)}" for k in ver["trusted_keys"]
    ]
    if ver["trusted_keys"]:
        lines.append(
            f"lethe-audit report {name} --key {sh(ver['trusted_keys'][0]['vkey'], always=True)} "
            "-o report.html"
        )
    doc.para("\n".join(lines), size=7.5, mono=True)
    doc.para(
        "A data subject checks their own receipt with lethe-audit receipt show RECEIPT --key VKEY."
    )
    doc.para(
        f"{r['format']} · {r['generator']} · generated {r['generated_at']}", size=7.5, color=MUTED
    )
    return doc.output()


def _remeasure(doc: _Doc, rm: Mapping[str, Any]) -> None:
    doc.heading("Re-measured model")
    model, data = rm["model"], rm["eval_data"]
    target = (
        f"entry #{model['attestation_index']}"
        if model["attestation_index"] is not None
        else "no entry"
    )
    doc.para(
        f"The model {model['name']} was run with {rm['backend']} on {data['name']} "
        f"({data['samples']} samples) and compared with the metrics logged in {target}: "
        + ("agrees with the log." if rm["agrees"] else "DIFFERS from the log.")
    )
    if model["matches_attestation"]:
        attested = f"yes: this exact file is named by entry #{model['attestation_index']}"
    else:
        attested = "NO applied attestation names this file"
        if model["attestation_index"] is not None:
            index = model["attestation_index"]
            attested += f"; compared with the latest apply of its model (entry #{index})"
    digest = data["dataset_digest"] + (
        " (equals the logged digest)"
        if data["digest_matches"]
        else f" (DIFFERS from the logged digest {data['logged_dataset_digest'] or _fmt.DASH})"
    )
    doc.facts(
        [
            ("Model file sha256", model["sha256"]),
            ("Content hash", model["content_hash"]),
            (
                "Signature",
                f"{_ok(model['signature']['verified'])}: {model['signature']['message']}",
            ),
            ("Attested model", attested),
            ("Dataset digest", digest),
        ]
    )
    doc.table(
        [
            (
                row["label"],
                _fmt.pct(row["logged"]),
                _fmt.pct(row["measured"]),
                _fmt.pp(row["difference"])
                + (f" ({row['differing_samples']} samples)" if row["differing_samples"] else ""),
                row["samples"],
            )
            for row in rm["rows"]
        ],
        header=("Metric", "Logged", "Re-measured", "Difference", "Samples"),
        numeric=(1, 2, 3, 4),
    )
    if rm["checks"]:
        doc.table(
            [
                (
                    c["label"],
                    _fmt.num(c["value"]),
                    f"{c['op']} {_fmt.num(c['threshold'])}",
                    _ok(c["passed"], "pass", "FAIL"),
                )
                for c in rm["checks"]
            ],
            header=("Check (logged thresholds)", "Value", "Threshold", "Result"),
            widths=(60, 20, 22, 18),
            numeric=(1, 2),
        )
    doc.svg(
        _charts.remeasured_accuracy(rm["per_class"]),
        width=min(doc.width, 170),
    )
    _per_class_table(
        doc,
        rm["per_class"],
        ("logged", "measured", "difference"),
        ("Logged", "Re-measured", "Difference"),
    )
    _remeasured_probe(doc, rm["probe"])
    doc.para(
        "Also measured on the ONNX model (not comparable with the logged value, whose reference "
        f"was a torch model): ZRF {_fmt.num(rm['extra']['zrf'])}.",
        size=8,
        color=MUTED,
    )
    for w in rm["warnings"]:
        doc.para(w, size=8, color=WARN)


def _remeasured_probe(doc: _Doc, pr: Mapping[str, Any]) -> None:
    from lethe_audit.metrics import metric_definition

    doc.heading("Feature probe on the model's own features", 4)
    meaning = metric_definition("probe_auc")
    doc.para(
        f"Feature probe AUC: {meaning.meaning if meaning else ''} Features: {pr['features']}.",
        size=8,
        color=MUTED,
    )
    if pr["measured"] is None:
        doc.para(f"Not re-measured: {pr['skipped']}.")
        return
    agrees = "—" if pr["agrees"] is None else _ok(pr["agrees"], "yes", "NO")
    rows = [
        (
            "Feature probe AUC",
            _fmt.good("low"),
            _fmt.num(pr["logged"]),
            _fmt.num(pr["measured"]),
            _fmt.signed(pr["difference"]),
            agrees,
        )
    ]
    if pr["reference_auc"] is not None:
        rows.append(
            (
                f"Probe AUC gap to the reference (logged reference AUC "
                f"{_fmt.num(pr['reference_auc'])})",
                _fmt.good("low"),
                _fmt.num(pr["logged_gap"]),
                _fmt.num(pr["measured_gap"]),
                "",
                "",
            )
        )
    doc.table(
        rows,
        header=("Metric", "Good is", "Logged", "Re-measured", "Difference",
                f"Agrees (within {_fmt.num(pr['tolerance'])})"),
        widths=(60, 20, 18, 20, 18, 24),
        numeric=(2, 3, 4),
    )  # fmt: skip
    if pr["logged_relearn_ratio"] is not None:
        doc.para(
            f"The relearn ratio to the reference (logged {_fmt.num(pr['logged_relearn_ratio'])}) "
            "needs the trainable model and is not re-measured here.",
            size=8,
            color=MUTED,
        )


def _log(doc: _Doc, r: Mapping[str, Any]) -> None:
    log = r["log"]
    doc.heading("Log summary")
    counts = "; ".join(f"{k}: {v}" for k, v in sorted(log["entry_counts"].items()))
    latest = (
        f"size {log['checkpoint_size']}, root {log['root']}"
        if log["checkpoint_size"] is not None
        else "none"
    )
    cps = log["checkpoints"]
    doc.facts(
        [
            ("Origin", log["origin"] or _fmt.DASH),
            ("Entries", log["size"]),
            ("Latest trusted checkpoint", latest),
            ("Checkpoints", f"{cps['count']} ({cps['trusted']} signed by a trusted key)"),
            ("Entries by kind", counts or _fmt.DASH),
        ]
    )
    doc.heading("Log keys", 3)
    doc.table(
        [
            (
                f"{k['name']}+{k['key_id']}",
                k["status"],
                k["added_at_size"],
                _fmt.DASH if k["retired_at_size"] is None else k["retired_at_size"],
                _ok(k["trusted"], "yes", "no"),
            )
            for k in log["keys"]
        ],
        header=("Key", "Status", "Added at size", "Retired at size", "Trusted by you"),
        widths=(60, 16, 16, 16, 16),
        numeric=(2, 3),
    )
    doc.heading(f"Checkpoints (newest {len(cps['listed'])})", 3)
    doc.table(
        [(c["size"], c["root"], _ok(c["trusted"], "trusted", "untrusted")) for c in cps["listed"]],
        header=("Size", "Root", "Signature"),
        widths=(12, 90, 18),
        numeric=(0,),
    )
    doc.heading("Attachments", 3)
    if not log["attachments"]:
        doc.para("The bundle has no attachments.")
    else:
        doc.table(
            [
                (
                    f["path"],
                    f["bytes"],
                    f["sha256"] or _fmt.DASH,
                    f"authenticated by entry #{f['event_index']}"
                    if f["authenticated"]
                    else f"unauthenticated: {f['reason']}",
                )
                for f in log["attachments"]
            ],
            header=("File", "Bytes", "sha256", "Status"),
            widths=(40, 12, 40, 30),
            numeric=(1,),
            size=7,
        )
    doc.heading("Timeline", 3)
    doc.table(
        [(t["index"], t["kind"], _fmt.when(t["at"]), t["summary"]) for t in log["timeline"]],
        header=("Entry", "Kind", "Time", "Summary"),
        widths=(10, 30, 28, 52),
        numeric=(0,),
        size=7,
    )
    if log["timeline_truncated"]:
        doc.para(f"Only the first {len(log['timeline'])} entries are listed.", size=8, color=MUTED)


def _per_class_table(
    doc: _Doc, rows: Sequence[Mapping[str, Any]], keys: tuple[str, str, str], labels: Sequence[str]
) -> None:
    """Per-class accuracies, two columns and their difference, forgotten classes highlighted."""
    first, second, diff = keys
    doc.table(
        [
            (
                f"{c['class']}" + (" (forgotten)" if c["forgotten"] else ""),
                c["samples"],
                _fmt.pct(c[first]),
                _fmt.pct(c[second]),
                _fmt.pp(c[diff]),
            )
            for c in rows
        ],
        header=("Class", "Samples", *labels),
        numeric=(0, 1, 2, 3, 4),
        highlight=[c["forgotten"] for c in rows],
    )
