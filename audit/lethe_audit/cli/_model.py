"""`lethe-audit model`: signed ONNX models (verify on an edge device or an auditor's laptop)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
@click.option(
    "--openssf",
    is_flag=True,
    help="Also verify the model's OpenSSF Model Signing signature (FILE.sig) with the "
    "model_signing verifier; needs --openssf-key and the [openssf] extra.",
)
@click.option(
    "--openssf-key",
    "openssf_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The P-256 public key PEM of the OpenSSF signature (the project's "
    "openssf-p256.pub.pem; the log registers it in a key.registered event).",
)
@click.option(
    "--openssf-signature",
    "openssf_signature",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The OpenSSF signature file (default: FILE.sig beside the model).",
)
@json_option
def model_verify(
    file: Path,
    keys: tuple[str, ...],
    receipt_file: Path | None,
    origin: str | None,
    openssf: bool,
    openssf_key: Path | None,
    openssf_signature: Path | None,
    as_json: bool,
) -> None:
    """Verify the ONNX model FILE: signature by a trusted key (--key VKEY), the hash of its
    exact bytes, metadata, and with --receipt the log's inclusion proof for its attestation.
    """
    from lethe_audit.model import ModelMetadata, scan_model_path, verify_model

    if openssf and openssf_key is None:
        raise click.UsageError("--openssf needs --openssf-key PEM (the P-256 public key)")
    if not openssf and (openssf_key or openssf_signature):
        raise click.UsageError("--openssf-key and --openssf-signature go with --openssf")
    check_regular(file, "model")
    receipt = read_bytes(receipt_file, "receipt") if receipt_file is not None else None
    verifiers = load_verifiers(keys)
    scanned = scan_model_path(file)  # one streamed read and hash pass, no parse
    verify_model(scanned, verifiers, receipt=receipt, origin=origin)
    meta = ModelMetadata.from_props(scanned.props)
    info: dict[str, object] = {
        "file": str(file),
        "sha256": scanned.sha256,
        "bytes_hash": scanned.stripped,
        "metadata": meta.to_dict(),
        "receipt": None,
        "openssf": None,
    }
    text = (
        f"OK: {file.name} ({meta.variant}) is signed by the log key; bytes "
        f"{scanned.stripped}; forgets classes {list(meta.forgotten_classes)} for "
        f"{len(meta.requests)} request(s); log {meta.log_origin} at size {meta.log_size}"
    )
    if receipt is not None:
        r = info["receipt"] = _receipt_info(receipt, receipt_file)
        text += f"; attested by entry {r['index']}, included at size {r['size']}"
    if openssf and openssf_key is not None:
        o = info["openssf"] = _check_openssf(file, openssf_key, openssf_signature)
        text += f"; OpenSSF signature {Path(str(o['signature'])).name} verifies (key {o['key_id']})"
    feed = _feed_line(meta.preprocessing)
    emit(info, as_json, f"{feed}\n{text}" if feed else text)


def _feed_line(pre: Mapping[str, Any] | None) -> str | None:
    """How to feed the model, step by step, from its signed ``lethe.preprocessing``."""
    from lethe_audit.cli._terminal import safe_text
    from lethe_audit.feed import feed_steps

    # One line even if a (signed) record's interpolation held a newline.
    return safe_text("feed: " + feed_steps(pre), one_line=True) if pre else None


def _check_openssf(file: Path, key: Path, signature: Path | None) -> dict[str, object]:
    from lethe_audit.keys import openssf_key_id
    from lethe_audit.model import openssf_signature_path, verify_openssf

    sig = signature if signature is not None else openssf_signature_path(file)
    verify_openssf(file, key, signature_path=sig)
    return {"signature": str(sig), "key_id": openssf_key_id(read_bytes(key, "OpenSSF key"))}


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
