"""Deletion requests in the view model: one article per handled request, pending ones compact.

A request nothing was applied to yet (received or approved, no apply attempted) has nothing to
show but its dates, so all of them share one table, one row each; the 16 pending requests of a
busy week no longer take 16 pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lethe_audit.report import _fmt
from lethe_audit.report._page_apply import apply_blocks
from lethe_audit.report._parts import (
    digest,
    entries,
    good_cell,
    ids,
    metric_cell,
    ok_badge,
    verdict,
)
from lethe_audit.report._view import (
    Article,
    Badge,
    Block,
    Code,
    Column,
    Facts,
    Heading,
    Inline,
    Link,
    Para,
    Rich,
    Row,
    Section,
    Table,
    Text,
    joined,
    rich,
)
from lethe_audit.statements import RequestStatus

PHASE_WORDS = {"masked": "masked, not yet erased", "erased": "erased"}


def is_pending(q: Mapping[str, Any]) -> bool:
    """Waiting and never attempted: shown as one row of the pending table."""
    return (
        q["status"] not in (RequestStatus.REJECTED, RequestStatus.APPLIED)
        and q["apply_index"] is None
        and q["erase_index"] is None
        and not q["failed_applies"]
    )


def requests_section(r: Mapping[str, Any]) -> Section:
    applies = {a["index"]: a for a in r["applies"]}
    shown = [q for q in r["requests"] if q["status"] != RequestStatus.REJECTED]
    handled = [q for q in shown if not is_pending(q)]
    pending = [q for q in shown if is_pending(q)]
    blocks: list[Block] = []
    if not shown:
        blocks.append(Para(rich("No deletion requests in this log.")))
    # An apply that covers several requests is shown in full once, in the first one's section.
    first: dict[int, str] = {}
    for q in handled:
        if q["apply_index"] is not None:
            first.setdefault(q["apply_index"], q["id"])
    for q in handled:
        blocks.append(Article(f"request-{q['id']}", tuple(_article(q, applies, first))))
    if pending:
        blocks += pending_blocks(pending)
    return Section("requests", "Deletion requests", tuple(blocks))


def _badges(q: Mapping[str, Any]) -> list[Inline]:
    out: list[Inline] = [Badge(q["status"], q["status"])]
    if q["phase"] in PHASE_WORDS:
        out += [
            Text(" "),
            Badge(PHASE_WORDS[q["phase"]], "ok" if q["phase"] == "erased" else "warn"),
        ]
    if q["overdue"]:
        out += [Text(" "), Badge(q["deadline"]["state"], "overdue")]
    return out


def _article(
    q: Mapping[str, Any], applies: Mapping[int, Any], first: Mapping[int, str]
) -> list[Block]:
    blocks: list[Block] = [
        Heading(rich("Request ", Code(q["id"]), " ", _badges(q)), 3),
        Facts(tuple(_request_facts(q))),
    ]
    if q["comparison"]:
        blocks += _comparison(q)
    if q["erase_index"] is not None:
        blocks.append(Heading(rich(f"Erased by log entry #{q['erase_index']}"), 4))
        blocks += apply_blocks(applies[q["erase_index"]], together=True)
    blocks += _applied_part(q, applies, first)
    return blocks


def _applied_part(
    q: Mapping[str, Any], applies: Mapping[int, Any], first: Mapping[int, str]
) -> list[Block]:
    index = q["apply_index"]
    if index is not None and first[index] == q["id"]:
        blocks: list[Block] = [Heading(rich(f"Applied (masked) by log entry #{index}"), 4)]
        blocks += apply_blocks(applies[index], together=True)
        if len(q["covered_by"]) > 1:
            later = entries(q["covered_by"][1:])
            blocks.append(Para(rich(f"Later applies also cover this request: {later}."), "muted"))
        return blocks
    if index is not None:
        owner = first[index]
        return [
            Heading(
                rich(
                    f"Applied (masked) by log entry #{index}, together with request ",
                    Link(owner, f"#request-{owner}", code=True),
                ),
                4,
            ),
            Para(in_short(applies[index], q["classes"])),
        ]
    if q["failed_applies"]:
        return [
            Para(
                rich(
                    f"Not applied: the latest attempt (entry #{q['failed_applies'][-1]}) failed "
                    "verification; see ",
                    Link("Failed applies", "#failed"),
                    ".",
                )
            )
        ]
    return [Para(rich("Not applied yet."))]


def in_short(a: Mapping[str, Any], classes: Sequence[int]) -> Rich:
    """The gist of an apply shown in full in another request's section."""
    parts: list[Rich] = [
        rich("policy ", verdict(a)),
        rich("inclusion proof ", ok_badge(a["inclusion"]["verified"])),
    ]
    m = a["metrics"]
    if m.get("structured"):
        for row in m["rows"][:2]:
            before = _fmt.value(row["before"], row["unit"])
            after = _fmt.value(row["after"], row["unit"])
            parts.append(rich(f"{row['label'].lower()} {before} → {after}"))
        for c in m["per_class"]:
            if c["class"] in classes:
                parts.append(
                    rich(f"class {c['class']} {_fmt.pct(c['before'])} → {_fmt.pct(c['after'])}")
                )
    onnx = a.get("onnx")
    return rich(
        "Its section shows the metrics, digests, inclusion proof and figures of that apply. "
        "In short: ",
        joined(parts),
        "; filtered model ",
        digest(a["model"]["folded_digest"]),
        [Text(", ONNX sha256 "), digest(onnx["sha256"])] if onnx else None,
        ".",
    )


def _log_entries(q: Mapping[str, Any]) -> str:
    parts = [f"#{ev['index']} {ev['event']} ({_fmt.when(ev['at'])})" for ev in q["events"]]
    if q["covered_by"]:
        parts.append("applied in " + entries(q["covered_by"]))
    if q["erase_indexes"]:
        parts.append("erased in " + entries(q["erase_indexes"]))
    if q["failed_applies"]:
        parts.append("failed applies " + entries(q["failed_applies"]))
    return "; ".join(parts) or _fmt.DASH


def _request_facts(q: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    phase = PHASE_WORDS.get(q["phase"] or "")
    commitment = rich(digest(q["subject_commitment"] or _fmt.DASH))
    if q["shredded_at"]:
        commitment += (Text(" "), Badge(f"key shredded {_fmt.when(q['shredded_at'])}", "warn"))
    erased = (
        f"{_fmt.when(q['erased_at'])} (log entry #{q['erase_index']})"
        if q["erased_at"]
        else "not yet"
    )
    return [
        ("Status", rich(q["status"] + (f" ({phase})" if phase else ""))),
        ("Legal basis", rich(q["legal_basis"] or _fmt.DASH)),
        ("Classes (ids)", rich(ids(q["classes"]))),
        ("Model", rich(q["model"] or _fmt.DASH)),
        ("Subject commitment", commitment),
        ("Received", rich(_fmt.when(q["received_at"]))),
        ("Due", rich(_fmt.when(q["due_at"]))),
        ("Approved", rich(_fmt.when(q["approved_at"]))),
        ("Applied (masked)", rich(_fmt.when(q["applied_at"]))),
        ("Erased", rich(erased)),
        ("Deadline", rich(_fmt.deadline(q["deadline"]))),
        ("Log entries", rich(_log_entries(q))),
    ]


def _comparison(q: Mapping[str, Any]) -> list[Block]:
    rows = tuple(
        Row(
            (
                metric_cell(c["label"], c["meaning"]),
                good_cell(c["good"]),
                rich(_fmt.value(c["before"], c["unit"])),
                rich(_fmt.value(c["mask"], c["unit"])),
                rich(_fmt.value(c["erase"], c["unit"])),
                rich(_fmt.value(c["reference"], c["unit"])),
            )
        )
        for c in q["comparison"]
    )
    columns = (
        Column("Metric", weight=5),
        Column("Good is", weight=1.5),
        Column("Before", True, weight=0.3),
        Column("Masked", True, weight=0.3),
        Column("Erased", True, weight=0.3),
        Column("Reference", True, weight=0.3),
    )
    title = (
        f"Mask (phase 1, entry #{q['apply_index']}) and erase (phase 2, entry "
        f"#{q['erase_index']}) side by side"
    )
    return [Heading(rich(title), 4), Table(columns, rows, small=True)]


PENDING_COLUMNS = (
    Column("Request", weight=0.5),
    Column("Status", weight=0.5),
    Column("Classes", weight=0.5),
    Column("Legal basis", weight=1.2),
    Column("Received", weight=1.0),
    Column("Due", weight=1.0),
    Column("Approved", weight=1.0),
    Column("Deadline", weight=2.5),
    Column("Entries", weight=1.0),
)


def pending_blocks(pending: Sequence[Mapping[str, Any]]) -> list[Block]:
    """All requests nothing was applied to yet, one row each."""
    rows = tuple(
        Row(
            (
                rich(Code(q["id"])),
                rich(Badge(q["status"], q["status"])),
                rich(ids(q["classes"])),
                rich(q["legal_basis"] or _fmt.DASH),
                rich(_fmt.when(q["received_at"])),
                rich(_fmt.when(q["due_at"])),
                rich(_fmt.when(q["approved_at"])),
                rich(_fmt.deadline(q["deadline"])),
                rich(", ".join(f"#{ev['index']}" for ev in q["events"]) or _fmt.DASH),
            ),
            highlight=bool(q["overdue"]),
        )
        for q in pending
    )
    overdue = sum(bool(q["overdue"]) for q in pending)
    return [
        Heading(rich(f"Pending requests ({len(pending)}, {overdue} overdue)"), 3),
        Para(
            rich(
                "Received or approved, nothing applied yet. The deadline column counts from the "
                "report's time (lethe-audit report --as-of TIME shows another day)."
            ),
            "muted",
            small=True,
        ),
        Table(PENDING_COLUMNS, rows, small=True, css="pending"),
    ]
