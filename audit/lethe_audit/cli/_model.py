"""`lethe-audit model`: signed ONNX models (verify on an edge device or an auditor's laptop)."""

from __future__ import annotations

from pathlib import Path

import click

from lethe_audit.cli._common import emit, json_option, key_option, load_verifiers
from lethe_audit.cli._files import check_regular, read_bytes


@click.group()
def model() -> None:
    """Signed ONNX models exported by Lethe."""


@model.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@key_option
@click.option(
    "--receipt",
    "receipt_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A deletion receipt whose attestation must name this model (its inclusion proof "
    "is checked against the signed checkpoint).",
)
@click.option("--origin", metavar="ORIGIN", help="Require the model to name this log origin.")
@json_option
def model_verify(
    file: Path,
    keys: tuple[str, ...],
    receipt_file: Path | None,
    origin: str | None,
    as_json: bool,
) -> None:
    """Verify the ONNX model FILE: signature by a trusted key (--key VKEY), the hash of its
    exact bytes, metadata, and with --receipt the log's inclusion proof for its attestation.
    """
    from lethe_audit.model import ModelMetadata, read_model_bytes, scan_model_bytes, verify_model

    check_regular(file, "model")
    scanned = scan_model_bytes(read_model_bytes(file))  # one read, one hash pass, no parse
    receipt = read_bytes(receipt_file, "receipt") if receipt_file is not None else None
    verify_model(scanned, load_verifiers(keys), receipt=receipt, origin=origin)
    meta = ModelMetadata.from_props(scanned.props)
    info: dict[str, object] = {
        "file": str(file),
        "sha256": scanned.sha256,
        "bytes_hash": scanned.stripped,
        "metadata": meta.to_dict(),
        "receipt": None,
    }
    text = (
        f"OK: {file.name} ({meta.variant}) is signed by the log key; bytes "
        f"{scanned.stripped}; forgets classes {list(meta.forgotten_classes)} for "
        f"{len(meta.requests)} request(s); log {meta.log_origin} at size {meta.log_size}"
    )
    if receipt is not None:
        r = info["receipt"] = _receipt_info(receipt, receipt_file)
        text += f"; attested by entry {r['index']}, included at size {r['size']}"
    emit(info, as_json, text)


def _receipt_info(receipt: bytes, receipt_file: Path | None) -> dict[str, object]:
    from lethe_audit.verify import parse_receipt

    r = parse_receipt(receipt)
    return {
        "file": str(receipt_file),
        "index": r.index,
        "size": r.checkpoint.size,
        "origin": r.checkpoint.origin,
    }


@model.command("info")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
def model_info(file: Path, as_json: bool) -> None:
    """Show the ONNX model FILE's digests and Lethe metadata (verifies nothing)."""
    from lethe_audit.model import read_model

    check_regular(file, "model")
    signed = read_model(file)
    meta = signed.metadata()
    info = {
        "file": str(file),
        "sha256": signed.sha256,
        "content_hash": signed.content_hash,
        "signed": signed.signature is not None,
        "metadata": meta.to_dict(),
    }
    lines = [
        f"file          {file}",
        f"sha256        {signed.sha256}",
        f"content hash  {signed.content_hash}",
        f"signed        {'yes (not verified)' if signed.signature is not None else 'no'}",
    ]
    lines += [f"{k:<13} {v}" for k, v in meta.to_dict().items()]
    emit(info, as_json, "\n".join(lines))
