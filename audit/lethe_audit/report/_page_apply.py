"""One apply (an unlearning attestation) in the view model: facts, metrics, checks, figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lethe_audit.report import _charts, _fmt
from lethe_audit.report._parts import (
    digest,
    good_cell,
    ids,
    metric_cell,
    ok_badge,
    phase_badge,
    settings,
    verdict,
)
from lethe_audit.report._view import (
    Block,
    Break,
    Bullets,
    Chart,
    Code,
    Column,
    Facts,
    Figure,
    Heading,
    Inline,
    Note,
    Para,
    Rich,
    Row,
    Table,
    Text,
    rich,
)

PHASE_ERASE = "2, erase: the weights were changed so that they no longer hold the classes"
PHASE_MASK = (
    "1, mask: a filter masks the classes in weights that still hold them (masked, not yet erased)"
)


def apply_blocks(a: Mapping[str, Any], *, together: bool = False) -> list[Block]:
    """Everything one apply shows; ``together``: it covers other requests than this one."""
    blocks: list[Block] = [Facts(tuple(_facts(a, together)))]
    m = a["metrics"]
    blocks += _structured(a) if m.get("structured") else _unstructured(m)
    if a["exports"]:
        blocks += _exports(a)
    if a["figures"]:
        blocks.append(Heading(rich("Filter bank figures (authenticated by log entry)"), 4))
        for f in a["figures"]:
            caption = rich(
                f"{f['caption']}. ",
                Code(f["name"]),
                ", sha256 ",
                digest(f["sha256"]),
                f", logged in entry #{f['event_index']}.",
            )
            blocks.append(Figure(f["path"] if f["embedded"] else None, caption, f["caption"]))
    return blocks


def _facts(a: Mapping[str, Any], together: bool) -> list[tuple[str, Rich]]:
    onnx = a.get("onnx")
    erase = a["phase"] == "erase"
    rows: list[tuple[str, Rich]] = [
        ("Log entry", rich(f"#{a['index']} ({a['outcome']}, {_fmt.when(a['applied_at'])})")),
        ("Phase", rich(PHASE_ERASE if erase else PHASE_MASK)),
        *_provenance(a),
        ("Model", rich(Code(a["model"]["name"]))),
        ("Base model digest", rich(digest(a["model"]["base_digest"]))),
        (
            "Erased model digest" if erase else "Filtered model digest",
            rich(digest(a["model"]["folded_digest"] or _fmt.DASH)),
        ),
        ("Filter bank digest", rich(digest(a["filter_bank_digest"]))),
        ("ONNX file (sha256)", rich(digest(onnx["sha256"] if onnx else "— (nothing exported)"))),
        ("ONNX content hash", rich(digest(onnx["content_hash"] if onnx else _fmt.DASH))),
        ("Method", rich(f"{a['method']['name']} {a['method']['version']}")),
        *(
            [("Model input (preprocessing)", settings(a["preprocessing"]))]
            if a.get("preprocessing")
            else []
        ),
        ("Classes the model forgets", rich(ids(a["forgotten_classes"]))),
    ]
    if together and len(a["request_ids"]) > 1:
        others = len(a["request_ids"]) - 1
        rows.append(
            ("Applied together with", rich(f"{others} other request(s) (see their sections)"))
        )
    rows.append(("Inclusion proof", _inclusion(a["inclusion"])))
    policy = a["policy"]
    rows.append(
        (
            "Policy verdict (logged)",
            rich(
                verdict(a),
                " " if policy["thresholds"] else None,
                settings(policy["thresholds"], numbers=True),
                [x for f in policy["failures"] for x in (Break(), Text(f"• {f}"))],
            ),
        )
    )
    return rows


def _provenance(a: Mapping[str, Any]) -> list[tuple[str, Rich]]:
    """Where an erase starts from and how it was made (nothing for a mask)."""
    rows: list[tuple[str, Rich]] = []
    sf = a.get("starts_from")
    if sf:
        where = (
            f"the masked model of log entry #{sf['index']}"
            if sf["index"] is not None
            else "a masked model not in this bundle"
        )
        rows.append(
            (
                "Starts from",
                rich(
                    f"{where} (apply ",
                    Code(str(sf["apply_id"])),
                    ", model sha256 ",
                    digest(sf["model_sha256"]),
                    ")",
                ),
            )
        )
    er = a.get("erase")
    if er:
        rows.append(
            (
                "Erase method",
                rich(
                    f"{er['method']}, {_fmt.num(er['seconds'])} s on {er['retain_samples']} "
                    "retained training samples; settings ",
                    settings(er["config"]),
                ),
            )
        )
    return rows


def _inclusion(inc: Mapping[str, Any]) -> Rich:
    out: list[Inline] = [ok_badge(inc["verified"]), Text(f" {inc['message']}")]
    if inc["root"]:
        out += [Break(), Text("checkpoint root "), digest(inc["root"])]
    if inc["proof"]:
        out += [Break(), Text(f"{len(inc['proof'])} proof hash(es):")]
        for h in inc["proof"]:
            out += [Break(), digest(h)]
    return tuple(out)


def _structured(a: Mapping[str, Any]) -> list[Block]:
    m = a["metrics"]
    after = "After (erased)" if a["phase"] == "erase" else "After (masked)"
    blocks: list[Block] = [
        Heading(
            rich(
                f"Verification metrics (evaluation set: {m['samples']} samples, "
                f"{m['forget_samples']} of forgotten classes, backend {m['backend']})"
            ),
            4,
        ),
        Table(
            (
                Column("Metric", weight=5),
                Column("Good is", weight=1.5),
                Column("Before (unfiltered)", True, weight=0.3),
                Column(after, True, weight=0.3),
                Column("Change", True, weight=0.3),
                Column("Retrained", True, weight=0.3),
                Column("Reference", True, weight=0.3),
            ),
            tuple(_metric_row(r) for r in m["rows"]),
            small=True,
        ),
    ]
    if m.get("depth"):
        blocks.append(Para(rich(_depth_sentence(m["depth"], m)), small=True))
    blocks.append(Para(rich("Dataset digest ", digest(m["dataset_digest"])), "muted", small=True))
    blocks += _recheck(a)
    blocks += [
        Heading(rich("Per-class accuracy"), 4),
        Chart(_charts.per_class_accuracy(m["per_class"])),
        per_class_table(
            m["per_class"], ("before", "after", "delta"), ("Before", "After", "Change")
        ),
    ]
    if m["warnings"]:
        blocks.append(Bullets(tuple(rich(w) for w in m["warnings"]), "warn"))
    for sk in m["skipped"]:
        blocks.append(Para(rich(f"{sk['label']} not measured: {sk['reason']}"), "muted", True))
    return blocks


def _metric_row(r: Mapping[str, Any]) -> Row:
    unit = r["unit"]
    return Row(
        (
            metric_cell(r["label"], r["meaning"]),
            good_cell(r["good"]),
            rich(_fmt.value(r["before"], unit)),
            rich(_fmt.value(r["after"], unit)),
            rich(_fmt.change(r["delta"], unit)),
            rich(_fmt.value(r["retrained"], unit)),
            rich(_fmt.value(r["reference"], unit)),
        )
    )


def _depth_sentence(depth: Mapping[str, Any], m: Mapping[str, Any]) -> str:
    ref = depth["reference"]
    return (
        f"Depth is measured against a reference: {ref['description']} ({ref['kind']}), made "
        f"{_fmt.when(ref['created_at'])} in {_fmt.num(ref['seconds'])} s, weights sha256 "
        f"{ref['model_sha256']}. It relearns its held-out class in "
        f"{_fmt.num(ref['relearn_steps'])} steps (runs {ids(ref['relearn_runs'])}, seeds "
        f"{ids(ref['seeds'])}); its feature probe AUC is {_fmt.num(ref['probe_auc'])}. This "
        f"model relearns in {_fmt.num(depth['relearn_steps'])} steps (runs "
        f"{ids(depth['relearn_runs'])})."
    )


def _recheck(a: Mapping[str, Any]) -> list[Block]:
    rc = a["metrics"]["recheck"]
    if not rc["available"]:
        return [Para(rich(str(rc["note"])), "muted", small=True)]
    title: list[Inline] = [
        Text("Policy checks recomputed from the logged metrics: "),
        ok_badge(rc["passed"], "pass", "fail"),
    ]
    if rc["passed"] and a["outcome"] == "applied":
        title += [Text(" "), phase_badge(a)]
    if not rc["agrees_with_log"]:
        title += [Text(" "), ok_badge(False, "", "disagrees with the logged verdict")]
    rows = tuple(
        Row(
            (
                rich(c["label"]),
                rich(_fmt.num(c["value"])),
                rich(f"{c['op']} {_fmt.num(c['threshold'])}"),
                rich(
                    ok_badge(c["passed"], "pass", "fail"),
                    f" {c['reason']}" if c["reason"] else None,
                ),
            )
        )
        for c in rc["checks"]
    ) or (Row((rich("No thresholds were set."), (), (), ())),)
    columns = (
        Column("Check", weight=3),
        Column("Value", True),
        Column("Threshold", True),
        Column("Result", weight=2),
    )
    return [Heading(tuple(title), 4), Table(columns, rows)]


def per_class_table(
    rows: list[dict[str, Any]], keys: tuple[str, str, str], labels: tuple[str, str, str]
) -> Table:
    """Per-class accuracies, two columns and their difference, forgotten classes highlighted."""
    first, second, diff = keys
    return Table(
        (
            Column("Class", True),
            Column("Samples", True),
            *(Column(label, True) for label in labels),
        ),
        tuple(
            Row(
                (
                    rich(f"{c['class']}" + (" (forgotten)" if c["forgotten"] else "")),
                    rich(str(c["samples"])),
                    rich(_fmt.pct(c[first])),
                    rich(_fmt.pct(c[second])),
                    rich(_fmt.pp(c[diff])),
                ),
                highlight=bool(c["forgotten"]),
            )
            for c in rows
        ),
    )


def _exports(a: Mapping[str, Any]) -> list[Block]:
    """The model files exported from this apply (fp32 and int8) with their logged accuracies."""
    rows = {r["metric"]: r for r in a["metrics"].get("rows", [])}
    onnx = a.get("onnx")
    table = [
        Row(
            (
                rich("fp32 (this attestation)"),
                rich(digest(onnx["sha256"] if onnx else None)),
                rich(_fmt.pct(rows.get("forget_accuracy", {}).get("after"))),
                rich(_fmt.pct(rows.get("retain_accuracy", {}).get("after"))),
                rich(f"#{a['index']}"),
            )
        )
    ]
    for x in a["exports"]:
        table.append(
            Row(
                (
                    rich(x["variant"] or _fmt.DASH),
                    rich(digest(x["sha256"])),
                    rich(_fmt.pct(x["forget_accuracy"])),
                    rich(_fmt.pct(x["retain_accuracy"])),
                    _export_source(x),
                )
            )
        )
    columns = (
        Column("Model file", weight=1.6),
        Column("sha256", weight=4),
        Column("Forget accuracy (↓ low is good)", True, weight=1.2),
        Column("Retain accuracy (↑ high is good)", True, weight=1.2),
        Column("Logged in", weight=1.6),
    )
    note = (
        "Every exported file with the accuracies measured on it before it was published: a "
        "quantized (int8) model must not bring a forgotten class back."
    )
    return [
        Heading(rich("Exported models"), 4),
        Para(rich(note), "muted", small=True),
        Table(columns, tuple(table), small=True),
    ]


def _export_source(x: Mapping[str, Any]) -> Rich:
    where = f"#{x['index']} ({_fmt.when(x['at'])})"
    if not x.get("attested"):
        return rich(where, Note("export event"))
    return rich(where, Note("variant attestation, policy "), ok_badge(x.get("passed"), "passed"))


def _unstructured(m: Mapping[str, Any]) -> list[Block]:
    return [
        Heading(rich("Logged metrics"), 4),
        Para(rich(str(m["note"])), "muted", small=True),
        Table(
            (Column("Metric"), Column("Value", True)),
            tuple(Row((rich(Code(v["metric"])), rich(_fmt.num(v["value"])))) for v in m["values"]),
        ),
    ]
