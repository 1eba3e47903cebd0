"""`lethe-audit receipt`: deletion receipts (C2SP tlog-proof + the logged envelope)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from lethe_audit.cli._common import (
    as_of_option,
    build_policies,
    emit,
    json_option,
    key_option,
    load_verifiers,
    policy_options,
    trusted_keys_data,
    trusted_keys_line,
)
from lethe_audit.cli._files import check_regular, read_bytes
from lethe_audit.cli._terminal import safe_text


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

    data = read_bytes(file, "receipt")
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


@receipt.command("show")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@key_option
@click.option(
    "--request",
    "request_id",
    metavar="ID",
    help="Your request id, when the receipt covers several requests.",
)
@click.option(
    "--subject",
    metavar="ID",
    help="Your identifier: check that the request's commitment is yours (needs --subject-key).",
)
@click.option(
    "--subject-key",
    metavar="HEX",
    help="The commitment key you were given with your request (hex).",
)
@click.option(
    "--origin", metavar="ORIGIN", help="Require the receipt to come from this log origin."
)
@click.option(
    "--source-receipt",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With the receipt of an int8 model: the receipt of the deletion it was made from "
    "(your request's), to show the fp32 model's numbers and your request beside it.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the page as self-contained HTML (.json: JSON, .txt: text) instead of printing.",
)
@as_of_option
@json_option
def receipt_show(
    file: Path,
    keys: tuple[str, ...],
    request_id: str | None,
    subject: str | None,
    subject_key: str | None,
    origin: str | None,
    source_receipt: Path | None,
    out: Path | None,
    as_of: datetime | None,
    as_json: bool,
) -> None:
    """Explain a receipt FILE to its data subject in plain language (what was deleted, when,
    how it was verified, how to check it), verified with the log's key (--key VKEY).

    Shows only the subject's own request. A receipt that does not verify still gets its page;
    the command then exits with the verification error's code.
    """
    from lethe_audit.report import build_receipt_page

    if (subject is None) != (subject_key is None):
        raise click.UsageError("--subject and --subject-key go together")
    check_regular(file, "receipt")
    if source_receipt is not None:
        check_regular(source_receipt, "--source-receipt")
    page = build_receipt_page(
        file,
        load_verifiers(keys),
        request_id=request_id,
        subject=subject,
        subject_key=subject_key,
        origin=origin,
        source_receipt=source_receipt,
        now=as_of,
    )
    if out is not None:
        page.write(out)
    if page.error is not None:
        if out is not None:
            click.echo(safe_text(f"wrote {out}: {page.headline}"), err=True)
        elif not as_json:
            click.echo(safe_text(page.to_text()), err=True)
        raise page.error
    if as_json:
        doc = page.to_dict()
        if out is not None:
            doc["file"] = str(out)
        doc.setdefault("trusted_keys", trusted_keys_data())
        click.echo(
            safe_text(json.dumps({"ok": True, **doc}, indent=2, ensure_ascii=False), json=True)
        )
    elif out is not None:
        click.echo(safe_text(f"{trusted_keys_line()}\nwrote {out}\n{page.headline}"))
    else:
        # The page reads top-down (its headline is the verdict); the keys it trusted follow.
        click.echo(safe_text(page.to_text()), nl=False)
        click.echo(trusted_keys_line())
