"""`lethe-audit receipt`: deletion receipts (C2SP tlog-proof + the logged envelope)."""

from __future__ import annotations

from pathlib import Path

import click

from lethe_audit.cli._common import (
    build_policies,
    emit,
    json_option,
    key_option,
    load_verifiers,
    policy_options,
)


@click.group()
def receipt() -> None:
    """Deletion receipts."""


@receipt.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@key_option
@click.option(
    "--origin", metavar="ORIGIN", help="Require the receipt to come from this log origin."
)
@policy_options
@json_option
def receipt_verify(
    file: Path,
    keys: tuple[str, ...],
    origin: str | None,
    metrics: tuple[str, ...],
    deadlines: bool,
    as_json: bool,
) -> None:
    """Verify a receipt FILE offline with the log's public key (--key VKEY)."""
    from lethe_audit.verify import parse_receipt, verify_receipt

    data = file.read_bytes()
    verify_receipt(
        data, load_verifiers(keys), origin=origin, policies=build_policies(metrics, deadlines)
    )
    r = parse_receipt(data)
    info = {
        "file": str(file),
        "origin": r.checkpoint.origin,
        "index": r.index,
        "size": r.checkpoint.size,
        "predicate_type": r.statement.predicate_type,
        "subjects": [s.name for s in r.statement.subject],
    }
    emit(
        info,
        as_json,
        f"OK: entry {r.index} ({r.statement.predicate_type}) is in log {r.checkpoint.origin} "
        f"at size {r.checkpoint.size}",
    )
