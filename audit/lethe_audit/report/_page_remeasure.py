"""The re-measured model (``--model`` and ``--eval-data``) in the view model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lethe_audit.report import _charts, _fmt
from lethe_audit.report._page_apply import per_class_table
from lethe_audit.report._parts import digest, good_cell, good_of, metric_cell, ok_badge
from lethe_audit.report._view import (
    Block,
    Bullets,
    Chart,
    Code,
    Column,
    Facts,
    Heading,
    Para,
    Rich,
    Row,
    Section,
    Table,
    rich,
)


def remeasure_section(rm: Mapping[str, Any], definitions: list[dict[str, Any]]) -> Section:
    model, data = rm["model"], rm["eval_data"]
    target = (
        f"entry #{model['attestation_index']}"
        if model["attestation_index"] is not None
        else "no entry"
    )
    blocks: list[Block] = [
        Para(
            rich(
                "The model ",
                Code(model["name"]),
                f" was run with {rm['backend']} on ",
                Code(data["name"]),
                f" ({data['samples']} samples) and compared with the metrics logged in {target}. ",
                ok_badge(rm["agrees"], "agrees with the log", "differs from the log"),
            )
        ),
        Facts(tuple(_model_facts(model, data))),
        _rows_table(rm["rows"], definitions),
    ]
    if rm["checks"]:
        blocks.append(_checks_table(rm["checks"]))
    blocks += [
        Chart(_charts.remeasured_accuracy(rm["per_class"])),
        per_class_table(
            rm["per_class"],
            ("logged", "measured", "difference"),
            ("Logged", "Re-measured", "Difference"),
        ),
        *_probe(rm["probe"], definitions),
        Para(
            rich(
                "Also measured on the ONNX model (not comparable with the logged value, whose "
                f"reference was a torch model): ZRF {_fmt.num(rm['extra']['zrf'])}."
            ),
            "muted",
            small=True,
        ),
    ]
    if rm["warnings"]:
        blocks.append(Bullets(tuple(rich(w) for w in rm["warnings"]), "warn"))
    return Section("remeasure", "Re-measured model", tuple(blocks))


def _model_facts(model: Mapping[str, Any], data: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    index = model["attestation_index"]
    if model["matches_attestation"]:
        attested = rich(ok_badge(True, "yes"), f" this exact file is named by entry #{index}")
    else:
        attested = rich(
            ok_badge(False, "", "no"),
            " no applied attestation names this file",
            f"; compared with the latest apply of its model (entry #{index})"
            if index is not None
            else None,
        )
    if data["digest_matches"]:
        dataset = rich(
            digest(data["dataset_digest"]), " ", ok_badge(True, "equals the logged digest")
        )
    else:
        dataset = rich(
            digest(data["dataset_digest"]),
            " ",
            ok_badge(False, "", "differs from the logged digest"),
            " logged ",
            digest(data["logged_dataset_digest"] or _fmt.DASH),
        )
    signature = model["signature"]
    return [
        ("Model file sha256", rich(digest(model["sha256"]))),
        ("Content hash", rich(digest(model["content_hash"]))),
        ("Signature", rich(ok_badge(signature["verified"]), f" {signature['message']}")),
        ("Attested model", attested),
        ("Dataset digest", dataset),
    ]


def _rows_table(rows: list[dict[str, Any]], definitions: list[dict[str, Any]]) -> Table:
    """Logged against re-measured accuracies, each metric with its meaning and good direction."""
    defs = {d["metric"]: d for d in definitions}
    out = []
    for row in rows:
        d = defs.get(row["metric"], {})
        differing = f" ({row['differing_samples']} samples)" if row["differing_samples"] else ""
        out.append(
            Row(
                (
                    metric_cell(row["label"], d.get("meaning")),
                    good_cell(good_of(d.get("direction"))),
                    rich(_fmt.pct(row["logged"])),
                    rich(_fmt.pct(row["measured"])),
                    rich(_fmt.pp(row["difference"]) + differing),
                    rich(str(row["samples"])),
                )
            )
        )
    columns = (
        Column("Metric", weight=4),
        Column("Good is", weight=1.2),
        Column("Logged", True),
        Column("Re-measured", True),
        Column("Difference", True, weight=1.5),
        Column("Samples", True),
    )
    return Table(columns, tuple(out), small=True)


def _checks_table(checks: list[dict[str, Any]]) -> Table:
    return Table(
        (
            Column("Check (logged thresholds)", weight=3),
            Column("Value", True),
            Column("Threshold", True),
            Column("Result"),
        ),
        tuple(
            Row(
                (
                    rich(c["label"]),
                    rich(_fmt.num(c["value"])),
                    rich(f"{c['op']} {_fmt.num(c['threshold'])}"),
                    rich(ok_badge(c["passed"], "pass", "fail")),
                )
            )
            for c in checks
        ),
    )


def _probe(pr: Mapping[str, Any], definitions: list[dict[str, Any]]) -> list[Block]:
    meaning = next((d["meaning"] for d in definitions if d["metric"] == "probe_auc"), "")
    blocks: list[Block] = [
        Heading(rich("Feature probe on the model's own features"), 3),
        Para(rich(f"Feature probe AUC: {meaning} Features: {pr['features']}."), "muted", True),
    ]
    if pr["measured"] is None:
        return [*blocks, Para(rich(f"Not re-measured: {pr['skipped']}."))]
    agrees = rich(_fmt.DASH) if pr["agrees"] is None else rich(ok_badge(pr["agrees"], "yes", "no"))
    rows = [
        Row(
            (
                metric_cell("Feature probe AUC", None),
                good_cell("low"),
                rich(_fmt.num(pr["logged"])),
                rich(_fmt.num(pr["measured"])),
                rich(_fmt.signed(pr["difference"])),
                agrees,
            )
        )
    ]
    if pr["reference_auc"] is not None:
        label = (
            f"Probe AUC gap to the reference (logged reference AUC {_fmt.num(pr['reference_auc'])})"
        )
        rows.append(
            Row(
                (
                    rich(label),
                    good_cell("low"),
                    rich(_fmt.num(pr["logged_gap"])),
                    rich(_fmt.num(pr["measured_gap"])),
                    (),
                    (),
                )
            )
        )
    columns = (
        Column("Metric", weight=3),
        Column("Good is", weight=1.2),
        Column("Logged", True),
        Column("Re-measured", True),
        Column("Difference", True),
        Column(f"Agrees (within {_fmt.num(pr['tolerance'])})", weight=1.3),
    )
    blocks.append(Table(columns, tuple(rows)))
    if pr["logged_relearn_ratio"] is not None:
        blocks.append(
            Para(
                rich(
                    "The relearn ratio to the reference (logged "
                    f"{_fmt.num(pr['logged_relearn_ratio'])}) needs the trainable model and is "
                    "not re-measured here."
                ),
                "muted",
                small=True,
            )
        )
    return blocks
