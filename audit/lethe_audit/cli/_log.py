"""`lethe-audit log`: initialise, append to, inspect and export the log database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lethe_audit.cli._common import (
    emit,
    json_option,
    passphrase,
    passphrase_options,
    progress_option,
    want_progress,
)
from lethe_audit.cli._files import MAX_TEXT_BYTES, check_regular, read_bytes
from lethe_audit.cli._terminal import safe_text

_DB = click.option("--db", "url", required=True, metavar="URL", help="The log database URL.")
_KEYS = click.option(
    "--keys",
    "keydir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The key directory (all its active keys sign).",
)


@click.group()
def log() -> None:
    """The signed log in its database."""


def _open(url: str, keydir: Path | None, secret: bytes | None) -> Any:
    from lethe_audit.keys import KeyRing
    from lethe_audit.log import AuditLog

    signers = KeyRing.open(keydir).signers(passphrase=secret) if keydir else []
    return AuditLog.open(url, signers=signers)


@log.command("init")
@_DB
@_KEYS
@click.option("--origin", metavar="ORIGIN", help="Log origin (default: the key name).")
@passphrase_options
@json_option
def log_init(
    url: str,
    keydir: Path,
    origin: str | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Create the empty log (size 0) signed by the active keys of --keys."""
    audit_log = _open(url, keydir, passphrase(passphrase_env, passphrase_file))
    note_text = audit_log.initialize(origin=origin)
    emit({"checkpoint": note_text}, as_json, note_text.rstrip("\n"))


def _parse_detail(values: tuple[str, ...]) -> dict[str, Any] | None:
    if not values:
        return None
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--detail")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


@log.command("append")
@_DB
@_KEYS
@click.argument(
    "file",
    required=False,
    type=click.Path(dir_okay=False, exists=True, allow_dash=True, path_type=Path),
)
@click.option(
    "--event", metavar="NAME", help="Append a lifecycle event of this name instead of FILE."
)
@click.option("--request-id", metavar="ID", help="The event's request id.")
@click.option(
    "--detail",
    "details",
    multiple=True,
    metavar="KEY=VALUE",
    help="Event detail (JSON value or text). Repeatable.",
)
@click.option("--at", "at", metavar="TIME", help="Event time, RFC 3339 UTC (default: now).")
@passphrase_options
@json_option
def log_append(
    url: str,
    keydir: Path,
    file: Path | None,
    event: str | None,
    request_id: str | None,
    details: tuple[str, ...],
    at: str | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Append FILE (an in-toto statement or DSSE envelope as JSON, '-' for stdin) or an
    --event; prints the entry's index and the checkpoint that covers it."""
    from datetime import datetime, timezone

    from lethe_audit.errors import FormatError
    from lethe_audit.statements import Envelope, LifecycleEvent, Statement, rfc3339

    item: Any
    if event is not None:
        if file is not None:
            raise click.UsageError("give FILE or --event, not both")
        item = LifecycleEvent(
            event,
            at or rfc3339(datetime.now(timezone.utc)),
            request_id=request_id,
            details=_parse_detail(details),
        )
    else:
        if file is None:
            raise click.UsageError("give a statement FILE ('-' for stdin) or --event NAME")
        if str(file) == "-":
            import sys

            data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
            if len(data) > MAX_TEXT_BYTES:
                raise FormatError(f"the statement on stdin is larger than {MAX_TEXT_BYTES} bytes")
        else:
            data = read_bytes(file, "statement file")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise FormatError(f"{file} is not JSON: {type(e).__name__}") from None
        if isinstance(obj, dict) and "payloadType" in obj:
            item = Envelope.from_json(data, require_canonical=False)
        else:
            item = Statement.from_dict(obj)
    audit_log = _open(url, keydir, passphrase(passphrase_env, passphrase_file))
    r = audit_log.append(item)
    emit(
        {
            "index": r.index,
            "size": r.size,
            "leaf_hash": r.leaf_hash.hex(),
            "duplicate": r.duplicate,
            "checkpoint": r.checkpoint,
        },
        as_json,
        f"{'already logged as' if r.duplicate else 'appended'} entry {r.index}; log size {r.size}",
    )


@log.command("head")
@_DB
@json_option
def log_head(url: str, as_json: bool) -> None:
    """Print the latest signed checkpoint."""
    audit_log = _open(url, None, None)
    note_text = audit_log.checkpoint()
    cp = audit_log.head()
    emit(
        {"origin": cp.origin, "size": cp.size, "root": cp.root.hex(), "checkpoint": note_text},
        as_json,
        note_text.rstrip("\n"),
    )


@log.command("export")
@_DB
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--attach",
    "attachments",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Add a file under attachments/ (figures, metric tables). Repeatable.",
)
@progress_option
@json_option
def log_export(
    url: str, out: Path, attachments: tuple[Path, ...], progress: bool | None, as_json: bool
) -> None:
    """Export the auditor bundle to OUT (a new directory, or a .zip file)."""
    from lethe_audit.errors import ExportError
    from lethe_audit.verify import read_manifest

    for a in attachments:
        check_regular(a, "--attach file", error=ExportError)
    audit_log = _open(url, None, None)
    audit_log.export_bundle(out, attachments=attachments, progress=want_progress(progress))
    m = read_manifest(out)
    emit(
        {"bundle": str(out), "origin": m.origin, "size": m.size},
        as_json,
        f"exported {m.size} entries of {m.origin} to {out}",
    )


@log.command("receipt")
@_DB
@click.argument("index", type=click.IntRange(min=0))
@click.option(
    "--size",
    type=click.IntRange(min=1),
    metavar="N",
    help="Prove against the checkpoint of this size (default: latest).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the receipt here (default: stdout).",
)
@json_option
def log_receipt(url: str, index: int, size: int | None, output: Path | None, as_json: bool) -> None:
    """Export the deletion receipt of entry INDEX (a C2SP tlog-proof carrying the entry)."""
    from lethe_audit.errors import ExportError

    text = _open(url, None, None).receipt(index, size=size)
    if output is not None:
        try:
            with output.open("x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            raise ExportError(f"{output} already exists: refusing to overwrite it") from None
        except OSError as e:
            raise ExportError(f"cannot write the receipt to {output}: {e.strerror}") from None
        emit(
            {"index": index, "file": str(output)},
            as_json,
            f"wrote receipt of entry {index} to {output}",
        )
    elif as_json:
        emit({"index": index, "receipt": text}, as_json, text)
    else:
        click.echo(safe_text(text), nl=False)
