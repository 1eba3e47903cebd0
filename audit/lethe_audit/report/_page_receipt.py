"""The receipt page on the report's typed view model (:mod:`lethe_audit.report._view`).

:func:`receipt_document` turns the receipt page's data (``ReceiptPage.data``, the JSON the
golden file pins) into one :class:`~lethe_audit.report._view.Document`; the HTML page (the
report's template) and the plain text (:func:`document_text`) both walk it, so they carry the
same words, as the report's HTML and PDF do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from lethe_audit._extras import INSTALL_WHERE
from lethe_audit.report import _charts
from lethe_audit.report._fmt import deadline, pct, when
from lethe_audit.report._view import (
    Badge,
    Block,
    Bullets,
    Chart,
    Code,
    Column,
    Commands,
    Document,
    Facts,
    Heading,
    Para,
    Rich,
    Row,
    Section,
    Table,
    plain,
    rich,
)

__all__ = ["document_text", "receipt_document"]

_CHECK_INTRO = (
    "With Python installed, anyone can check this receipt offline, with only the log's public key:"
)
#: The section after whose paragraphs the per-class chart and table stand.
_VERIFIED = "How it was verified"


def receipt_document(d: Mapping[str, Any]) -> Document:
    """The whole receipt page: the headline, the explained sections, the numbers' meaning,
    the details and the commands to check it."""
    variant = d.get("kind") == "variant"
    title = "Your deletion receipt" + (f": the {d['variant']['name']} model" if variant else "")
    rec, req = d["receipt"], d["request"]
    subtitle = rich(
        "Request ",
        Code(req["id"]),
        " · receipt ",
        Code(rec["name"]),
        " · log ",
        Code(rec["origin"]),
        f", entry {rec['index']} of {rec['checkpoint_size']}",
    )
    sections = [_explained(s, d) for s in d["sections"]]
    if d.get("definitions"):
        sections.append(_section("What the numbers mean", [_definitions(d["definitions"])]))
    sections.append(_section("Details", [Facts(tuple(_details(d)))]))
    sections.append(_section("Check it yourself", _check_blocks(d)))
    return Document(
        title=d["headline"],
        heading=title,
        headline=d["headline"],
        passed=bool(d["verification"]["passed"]) and d.get("outcome") != "failed",
        subtitle=subtitle,
        sections=tuple(sections),
        footer=f"{d['format']} · {d['generator']} · generated {d['generated_at']}",
        generator=d["generator"],
    )


def _section(title: str, blocks: Iterable[Block]) -> Section:
    anchor = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    return Section(anchor, title, tuple(blocks), nav=False)


def _explained(s: Mapping[str, Any], d: Mapping[str, Any]) -> Section:
    blocks: list[Block] = [Para(rich(p)) for p in s["paragraphs"]]
    rows = (d.get("metrics") or {}).get("classes") or []
    if s["title"] == _VERIFIED and rows:
        blocks.append(_chart(d, rows))
        blocks.append(_class_table(d))
    return _section(s["title"], blocks)


def _chart(d: Mapping[str, Any], rows: list[dict[str, Any]]) -> Chart:
    labels = (
        {"before_label": "original model", "after_label": f"{d['variant']['name']} model"}
        if d.get("kind") == "variant"
        else {}
    )
    svg = _charts.per_class_accuracy(
        rows, title="How often the model recognised your classes", width=420, height=200, **labels
    )
    return Chart(svg)


def _class_table(d: Mapping[str, Any]) -> Table:
    """Your classes, before and after (and, for a variant with its source, the fp32 model)."""
    m = d["metrics"]
    variant = d.get("kind") == "variant"
    fp32 = variant and bool(m.get("fp32_shown"))
    after = f"{d['variant']['name']} model" if variant else "Recognised after"
    labels = ["Your class", "Test images", "Original model" if variant else "Recognised before"]
    labels += ["fp32 model"] if fp32 else []
    columns = tuple(Column(label, numeric=True) for label in [*labels, after])
    rows = []
    for c in m["classes"]:
        cells = [str(c["class"]), str(c["samples"]), pct(c["before"])]
        cells += [pct(c.get("fp32_after"))] if fp32 else []
        rows.append(Row(tuple(rich(x) for x in [*cells, pct(c["after"])])))
    if m.get("retain_after") is not None:
        cells = ["all other classes", "", pct(m.get("retain_before"))]
        cells += [pct(m.get("fp32_retain_after"))] if fp32 else []
        rows.append(Row(tuple(rich(x) for x in [*cells, pct(m["retain_after"])])))
    return Table(columns, tuple(rows))


def _definitions(defs: list[Mapping[str, Any]]) -> Table:
    columns = (Column("Number"), Column("Meaning"), Column("Good is"))
    rows = tuple(Row((rich(x["label"]), rich(x["meaning"]), rich(x["direction"]))) for x in defs)
    return Table(columns, rows)


def _details(d: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    req = d["request"]
    out: list[tuple[str, Rich]] = [
        ("Request", rich(Code(req["id"]))),
        ("Classes (ids)", rich(", ".join(str(c) for c in req.get("classes") or []) or "—")),
        ("Legal basis", rich(req.get("legal_basis") or "—")),
        ("Received", rich(when(req.get("received_at")))),
        ("Due", rich(when(req.get("due_at")))),
    ]
    if d.get("kind") == "unlearning":
        out += _apply_details(d)
    elif d.get("kind") == "variant":
        out += _variant_details(d)
    out += _trust_details(d)
    return out


def _carried_out(d: Mapping[str, Any]) -> Rich:
    label = f" ({d['phase_label']})" if d.get("phase_label") else ""
    return rich(when(d.get("applied_at")) + label)


def _apply_details(d: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    req, model = d["request"], d["model"]
    phase = "2, erase" if d.get("phase") == "erase" else "1, mask"
    starts = d.get("starts_from")
    since = rich(", starting from apply ", Code(starts["apply_id"])) if starts else ()
    phase_text = rich(phase, since)
    return [
        ("Approved", rich(when(req.get("approved_at")))),
        ("Carried out" if d.get("outcome") == "applied" else "Attempted", _carried_out(d)),
        ("Phase", phase_text),
        ("Deadline", rich(deadline(req.get("deadline")))),
        ("Model", rich(Code(model["name"]))),
        ("Model digest", rich(Code(model.get("folded_digest") or "—", digest=True))),
        ("ONNX file sha256", rich(Code(model.get("onnx_sha256") or "—", digest=True))),
    ]


def _variant_details(d: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    req, model, v = d["request"], d["model"], d["variant"]
    out: list[tuple[str, Rich]] = []
    if "deadline" in req:
        out += [
            ("Approved", rich(when(req.get("approved_at")))),
            ("Carried out", _carried_out(d)),
            ("Deadline", rich(deadline(req.get("deadline")))),
        ]
    made_from = rich(
        f"log entry {v['source_index']} (the deletion), fp32 file sha256 ",
        Code(v["source_onnx_sha256"], digest=True),
    )
    out.append((f"{v['name']} model exported", rich(when(v.get("exported_at")))))
    out.append(("Made from", made_from))
    calib = v.get("calibration")
    if calib is not None:
        what = "evaluation (test) images" if calib["source"] == "eval" else "training images"
        out.append(("Calibrated on", rich(what)))
    out.append(("Model", rich(Code(model["name"]))))
    out.append((f"{v['name']} file sha256", rich(Code(model["onnx_sha256"], digest=True))))
    return out


def _trust_details(d: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    req, rec, ver = d["request"], d["receipt"], d["verification"]
    commitment: list[Any] = [Code(req.get("subject_commitment") or "—", digest=True)]
    matches = (d.get("subject_check") or {}).get("matches")
    if matches is not None:
        word = "matches what you gave" if matches else "does not match what you gave"
        commitment += [" ", Badge(word, "ok" if matches else "bad")]
    checkpoint = rich(f"{rec['checkpoint_size']} entries, root ", Code(rec["root"], digest=True))
    verified = (
        rich(Badge("yes", "ok"))
        if ver["passed"]
        else rich(Badge("no", "bad"), " " + ver["error"]["message"])
    )
    return [
        ("Subject commitment", rich(*commitment)),
        ("Log checkpoint", checkpoint),
        ("Receipt verified", verified),
    ]


def _check_blocks(d: Mapping[str, Any]) -> list[Block]:
    return [
        Para(rich(_CHECK_INTRO)),
        Commands(tuple(d["commands"])),
        Para(
            rich(
                INSTALL_WHERE,
                " Replace YOUR IDENTIFIER and YOUR-KEY-HEX with the identifier you filed the "
                "request under and the key you were given; MODEL.onnx is the model file the "
                "operator ships.",
            ),
            tone="muted",
        ),
    ]


def document_text(doc: Document) -> str:
    """The document as plain text (``lethe-audit receipt show``): the headline, then each
    section's title and its blocks indented by two spaces (charts left out)."""
    lines = [doc.headline, ""]
    for s in doc.sections:
        lines.append(s.title)
        for b in s.blocks:
            lines.extend(f"  {line}" for line in _block_lines(b))
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _block_lines(b: Block) -> list[str]:
    if isinstance(b, Para | Heading):
        return [plain(b.text)]
    if isinstance(b, Bullets):
        return [f"- {plain(x)}" for x in b.items]
    if isinstance(b, Commands):
        return list(b.lines)
    if isinstance(b, Facts):
        return [f"{label}: {plain(value)}" for label, value in b.rows]
    if isinstance(b, Table):
        head = " | ".join(c.label for c in b.columns)
        return [head, *(" | ".join(plain(c) for c in row.cells) for row in b.rows)]
    return []
