"""Build the view model (:class:`~lethe_audit.report._view.Document`) from the report dict.

This is the only place where the report's sentences are written; the HTML and PDF renderers
draw what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lethe_audit.report import _fmt
from lethe_audit.report._page_apply import apply_blocks
from lethe_audit.report._page_log import check_section, log_section
from lethe_audit.report._page_remeasure import remeasure_section
from lethe_audit.report._page_requests import requests_section
from lethe_audit.report._parts import good_cell, good_of, ids, ok_badge
from lethe_audit.report._view import (
    Block,
    Bullets,
    Code,
    Column,
    Document,
    Heading,
    Para,
    Row,
    Section,
    Table,
    Text,
    joined,
    rich,
)

HEADING = "Lethe audit report"
#: The summary's columns: header and key of ``summary``, in display order.
SUMMARY = (
    ("Requests", "requests"),
    ("Applied", "applied"),
    ("Masked, not yet erased", "masked_only"),
    ("Erased", "erased"),
    ("Pending", "pending"),
    ("Failed", "failed"),
    ("Rejected", "rejected"),
    ("Overdue or late", "overdue"),
    ("Shredded", "shredded"),
    ("Applies", "applies"),
    ("Failed applies", "failed_applies"),
)
VERIFIED = (
    "The bundle was verified offline: the manifest and file digests, every checkpoint's "
    "signature and origin, every entry's DSSE signature and statement, and the Merkle root "
    "recomputed from all entries at every checkpoint size."
)
TWO_PHASES = (
    "A deletion has two phases. Phase 1 (mask) is fast: a filter stops the model from using "
    'what it learned about the classes, but the weights still hold it ("masked, not yet '
    'erased"). Phase 2 (erase) changes the weights so that they no longer hold the classes; '
    "its depth is measured against a reference model retrained without a class."
)


def build_document(r: Mapping[str, Any]) -> Document:
    """The report dict (``lethe.report.v1``) as the blocks both renderers draw."""
    sections = [
        _summary(r),
        _verification(r),
        requests_section(r),
        _definitions(r),
        _failed(r),
        _rejected(r),
        _shredded(r),
    ]
    if r.get("remeasure"):
        sections.append(remeasure_section(r["remeasure"], r["definitions"]))
    sections += [log_section(r), check_section(r)]
    bundle = r["bundle"]
    subtitle = rich(
        "Log ",
        Code(r["log"]["origin"] or "unknown"),
        " · bundle ",
        Code(bundle["name"]),
        f" exported {_fmt.when(bundle['created_at'])}" if bundle["created_at"] else None,
        f" · deadlines as of {_fmt.when(r['generated_at'])} · made by {r['generator']}",
    )
    return Document(
        title=f"{HEADING} · {r['log']['origin'] or 'unknown log'}",
        heading=HEADING,
        headline=r["headline"],
        passed=bool(r["verification"]["passed"]),
        subtitle=subtitle,
        sections=tuple(sections),
        footer=f"{r['format']} · {r['generator']} · generated {r['generated_at']}",
        generator=r["generator"],
    )


def _summary(r: Mapping[str, Any]) -> Section:
    s = r["summary"]
    blocks: list[Block] = [
        Table(
            tuple(Column(label, True) for label, _ in SUMMARY),
            (Row(tuple(rich(str(s[key])) for _, key in SUMMARY)),),
        )
    ]
    if r["warnings"]:
        blocks += [
            Heading(rich("Warnings"), 3),
            Bullets(tuple(rich(w) for w in r["warnings"]), "warn"),
        ]
    return Section("summary", "Summary", tuple(blocks))


def _verification(r: Mapping[str, Any]) -> Section:
    ver = r["verification"]
    if ver["passed"]:
        first = Para(rich(ok_badge(True, "Passed"), ". ", VERIFIED))
    else:
        err = ver["error"]
        first = Para(rich(ok_badge(False, "", "Failed"), f". {err['type']}: {err['message']}"))
    blocks: list[Block] = [first]
    if ver["located"]:
        loc = ver["located"]
        text = (
            "Located by verifying again without the manifest's (unsigned) file digests: "
            f"{loc['type']}: {loc['message']}"
        )
        blocks.append(Para(rich(text), "bad"))
    blocks.append(
        Table(
            (Column("Trusted key", weight=2), Column("vkey", weight=4)),
            tuple(
                Row((rich(Code(k["key_hint"])), rich(Code(k["vkey"], digest=True))))
                for k in ver["trusted_keys"]
            ),
        )
    )
    return Section("verification", "Verification", tuple(blocks))


def _definitions(r: Mapping[str, Any]) -> Section:
    rows = tuple(
        Row((rich(d["label"]), rich(d["meaning"]), good_cell(good_of(d["direction"]))))
        for d in r["definitions"]
    )
    columns = (
        Column("Metric", weight=2),
        Column("Meaning", weight=6),
        Column("Good is", weight=1.3),
    )
    blocks: list[Block] = [Para(rich(TWO_PHASES)), Table(columns, rows, small=True)]
    return Section("definitions", "What the metrics mean", tuple(blocks))


def _failed(r: Mapping[str, Any]) -> Section:
    failed = [a for a in r["applies"] if a["outcome"] == "failed"]
    if not failed:
        return Section("failed", "Failed applies", (Para(rich("No apply failed.")),))
    blocks: list[Block] = [
        Para(
            rich(
                "A failed apply publishes nothing: the model stays as it was, and the requests "
                "wait to be approved again."
            )
        )
    ]
    for a in failed:
        blocks += [
            Heading(rich(f"Entry #{a['index']}: failed {_fmt.when(a['applied_at'])}"), 3),
            Para(
                rich(
                    "Requests: ",
                    joined([rich(Code(rid)) for rid in a["request_ids"]]),
                    f" · classes {ids(a['forgotten_classes'])}",
                )
            ),
            Para(rich(Text("Reasons:")), "bold"),
            Bullets(tuple(rich(f) for f in a["policy"]["failures"])),
            *apply_blocks(a),
        ]
    return Section("failed", "Failed applies", tuple(blocks))


def _rejected(r: Mapping[str, Any]) -> Section:
    rejected = [q for q in r["requests"] if q["status"] == "rejected"]
    if not rejected:
        return Section("rejected", "Rejected requests", (Para(rich("No request was rejected.")),))
    note = "The reasons for a rejection are kept in the operator's database, not in the log."
    labels = ("Request", "Classes", "Legal basis", "Received", "Due", "Rejected", "Deadline")
    columns = (*(Column(x, weight=1.5) for x in labels), Column("Entries"))
    rows = tuple(
        Row(
            (
                rich(Code(q["id"])),
                rich(ids(q["classes"])),
                rich(q["legal_basis"] or _fmt.DASH),
                rich(_fmt.when(q["received_at"])),
                rich(_fmt.when(q["due_at"])),
                rich(_fmt.when(q["rejected_at"])),
                rich(_fmt.deadline(q["deadline"])),
                rich(", ".join(f"#{ev['index']}" for ev in q["events"])),
            )
        )
        for q in rejected
    )
    blocks: list[Block] = [Para(rich(note), "muted", small=True), Table(columns, rows, small=True)]
    return Section("rejected", "Rejected requests", tuple(blocks))


def _shredded(r: Mapping[str, Any]) -> Section:
    shredded = [q for q in r["requests"] if q["shredded_at"]]
    if not shredded:
        return Section(
            "shredded", "Crypto-shredding", (Para(rich("No subject key was shredded.")),)
        )
    text = (
        "For these requests the key of the subject commitment was destroyed: the commitment in "
        "the log can no longer be linked to anyone."
    )
    rows = tuple(
        Row((rich(Code(q["id"])), rich(q["status"]), rich(_fmt.when(q["shredded_at"]))))
        for q in shredded
    )
    columns = (Column("Request", weight=2), Column("Status"), Column("Shredded", weight=1.5))
    return Section("shredded", "Crypto-shredding", (Para(rich(text)), Table(columns, rows)))
