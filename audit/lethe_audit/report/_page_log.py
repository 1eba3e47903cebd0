"""The log summary and the copy-paste commands of the view model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lethe_audit._extras import INSTALL_WHERE, install_line
from lethe_audit.report import _fmt
from lethe_audit.report._parts import digest, ok_badge
from lethe_audit.report._view import (
    Block,
    Code,
    Column,
    Commands,
    Facts,
    Heading,
    Para,
    Row,
    Section,
    Table,
    rich,
)


def log_section(r: Mapping[str, Any]) -> Section:
    log = r["log"]
    cps = log["checkpoints"]
    latest = (
        rich(f"size {log['checkpoint_size']}, root ", digest(log["root"]))
        if log["checkpoint_size"] is not None
        else rich("none")
    )
    counts = "; ".join(f"{k}: {v}" for k, v in sorted(log["entry_counts"].items()))
    blocks: list[Block] = [
        Facts(
            (
                ("Origin", rich(Code(log["origin"] or _fmt.DASH))),
                ("Entries", rich(str(log["size"]))),
                ("Latest trusted checkpoint", latest),
                ("Checkpoints", rich(f"{cps['count']} ({cps['trusted']} signed by a trusted key)")),
                ("Entries by kind", rich(counts or _fmt.DASH)),
            )
        ),
        Heading(rich("Log keys"), 3),
        _keys_table(log["keys"]),
        Heading(rich(f"Checkpoints (newest {len(cps['listed'])})"), 3),
        Table(
            (Column("Size", True), Column("Root", weight=6), Column("Signature", weight=1.4)),
            tuple(
                Row(
                    (
                        rich(str(c["size"])),
                        rich(digest(c["root"])),
                        rich(ok_badge(c["trusted"], "trusted", "untrusted")),
                    )
                )
                for c in cps["listed"]
            ),
        ),
        Heading(rich("Attachments"), 3),
        *_attachments(log["attachments"]),
        Heading(rich("Timeline"), 3),
        Table(
            (
                Column("Entry", True),
                Column("Kind", weight=3),
                Column("Time", weight=2.6),
                Column("Summary", weight=5),
            ),
            tuple(
                Row(
                    (
                        rich(str(t["index"])),
                        rich(t["kind"]),
                        rich(_fmt.when(t["at"])),
                        rich(t["summary"]),
                    )
                )
                for t in log["timeline"]
            ),
            small=True,
        ),
    ]
    if log["timeline_truncated"]:
        text = f"Only the first {len(log['timeline'])} entries are listed."
        blocks.append(Para(rich(text), "muted", small=True))
    return Section("log", "Log summary", tuple(blocks))


def _keys_table(keys: list[dict[str, Any]]) -> Table:
    return Table(
        (
            Column("Key", weight=4),
            Column("Status"),
            Column("Added at size", True),
            Column("Retired at size", True),
            Column("Trusted by you"),
        ),
        tuple(
            Row(
                (
                    rich(Code(f"{k['name']}+{k['key_id']}")),
                    rich(str(k["status"])),
                    rich(str(k["added_at_size"])),
                    rich(_fmt.DASH if k["retired_at_size"] is None else str(k["retired_at_size"])),
                    rich(ok_badge(k["trusted"], "yes", "no")),
                )
            )
            for k in keys
        ),
    )


def _attachments(files: list[dict[str, Any]]) -> list[Block]:
    if not files:
        return [Para(rich("The bundle has no attachments."))]
    rows = tuple(
        Row(
            (
                rich(Code(f["path"])),
                rich(str(f["bytes"])),
                rich(digest(f["sha256"] or _fmt.DASH)),
                rich(ok_badge(True, "authenticated"), f" by entry #{f['event_index']}")
                if f["authenticated"]
                else rich(ok_badge(False, "", "unauthenticated"), f" {f['reason']}"),
            )
        )
        for f in files
    )
    columns = (
        Column("File", weight=3),
        Column("Bytes", True),
        Column("sha256", weight=3),
        Column("Status", weight=2.5),
    )
    return [Table(columns, rows, small=True)]


def check_section(r: Mapping[str, Any]) -> Section:
    keys = r["verification"]["trusted_keys"]
    name = _fmt.sh(r["bundle"]["name"])  # every inserted value is one shell word
    lines = [install_line("report")]
    lines += [f"lethe-audit verify {name} --key {_fmt.sh(k['vkey'], always=True)}" for k in keys]
    if keys:
        vkey = _fmt.sh(keys[0]["vkey"], always=True)
        lines.append(f"lethe-audit report {name} --key {vkey} -o report.html")
    blocks: list[Block] = [
        Para(
            rich(
                "Everything above can be re-checked offline with the log's public key and no "
                "PyTorch:"
            )
        ),
        Commands(tuple(lines)),
        Para(rich(INSTALL_WHERE), tone="muted"),
        Para(
            rich(
                "A data subject checks their own receipt with ",
                Code("lethe-audit receipt show RECEIPT --key VKEY"),
                ".",
            )
        ),
    ]
    return Section("check", "Check it yourself", tuple(blocks))
