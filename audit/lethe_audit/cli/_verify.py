"""`lethe-audit verify`: check an auditor bundle end to end."""

from __future__ import annotations

import base64
from pathlib import Path

import click

from lethe_audit.cli._common import (
    build_policies,
    emit,
    json_option,
    key_option,
    load_verifiers,
    policy_options,
    progress_option,
    want_progress,
)
from lethe_audit.cli._files import read_text


@click.command("verify")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@key_option
@click.option("--origin", metavar="ORIGIN", help="Require the bundle to be of this log origin.")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A checkpoint you saw earlier: the log must extend it (nothing rewritten).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), metavar="N", help="Processes (default: all cores)."
)
@policy_options
@progress_option
@json_option
def verify(
    bundle: Path,
    keys: tuple[str, ...],
    origin: str | None,
    checkpoint_file: Path | None,
    workers: int | None,
    metrics: tuple[str, ...],
    deadlines: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Verify the auditor BUNDLE (directory or .zip) with the log's public key (--key VKEY):
    every signature, the Merkle root at every checkpoint, every statement, the policies."""
    from lethe_audit.errors import BundleError, FormatError
    from lethe_audit.verify import ConsistentWith, open_bundle, verify_bundle

    policies = build_policies(metrics, deadlines)
    if checkpoint_file is not None:
        text = read_text(checkpoint_file, "--checkpoint file")
        try:
            policies.append(ConsistentWith(text))
        except ValueError as e:
            raise FormatError(f"--checkpoint file {checkpoint_file}: {e}") from None
    with open_bundle(bundle) as snap:  # verify and show the same bytes
        verify_bundle(
            snap,
            load_verifiers(keys),
            origin=origin,
            policies=policies,
            workers=workers,
            progress=want_progress(progress),
        )
        m = snap.manifest
    if m is None:  # verify_bundle raises first; never show an unread manifest
        raise BundleError(f"{bundle}: no manifest was read")
    root = base64.b64encode(m.root).decode("ascii")
    emit(
        {"bundle": str(bundle), "origin": m.origin, "size": m.size, "root": root},
        as_json,
        f"OK: {m.size} entries of log {m.origin} verified (root {root})",
    )
