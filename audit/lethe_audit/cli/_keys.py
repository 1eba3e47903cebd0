"""`lethe-audit keys`: generate, list, rotate and retire log signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lethe_audit.cli._common import emit, json_option, passphrase, passphrase_options

if TYPE_CHECKING:
    from lethe_audit.keys import KeyEntry
    from lethe_audit.log import AppendResult
    from lethe_audit.note import Signer

_KEYDIR = click.Path(file_okay=False, path_type=Path)


@click.group()
def keys() -> None:
    """Log signing keys (Ed25519 PEM files in a key directory)."""


@keys.command("generate")
@click.argument("keydir", type=_KEYDIR)
@click.option(
    "--name",
    required=True,
    metavar="NAME",
    help="Key name = log origin, e.g. example.org/lethe-log.",
)
@passphrase_options
@json_option
def keys_generate(
    keydir: Path, name: str, passphrase_env: str | None, passphrase_file: Path | None, as_json: bool
) -> None:
    """Create a key directory KEYDIR with a new Ed25519 key (PEM, mode 0600)."""
    from lethe_audit.keys import KeyRing

    ring = KeyRing.create(keydir, name=name, passphrase=passphrase(passphrase_env, passphrase_file))
    e = ring.entries[-1]
    emit(
        {"keydir": str(keydir), "key": e.to_dict()},
        as_json,
        f"created {keydir / e.file}\nvkey: {e.vkey}",
    )


@keys.command("list")
@click.argument("keydir", type=_KEYDIR)
@json_option
def keys_list(keydir: Path, as_json: bool) -> None:
    """List the keys of KEYDIR with their vkeys and status."""
    from lethe_audit.keys import KeyRing

    ring = KeyRing.open(keydir)

    def window(e: KeyEntry) -> str:
        k = e.trusted_key()
        return "untrusted" if k is None else f"sizes {k.window}"

    lines = [f"{e.key_id}  {e.status:8}  {window(e):<16}  {e.vkey}" for e in ring.entries]
    emit(
        {"keydir": str(keydir), "keys": [e.to_dict() for e in ring.entries]},
        as_json,
        "\n".join(lines),
    )


@keys.command("rotate")
@click.argument("keydir", type=_KEYDIR)
@click.option("--db", "url", required=True, metavar="URL", help="The log database URL.")
@passphrase_options
@json_option
def keys_rotate(
    keydir: Path, url: str, passphrase_env: str | None, passphrase_file: Path | None, as_json: bool
) -> None:
    """Start a rotation: add a new key to KEYDIR and the log (old and new keys both sign;
    the rotation is logged as a key.rotated event)."""
    from lethe_audit.keys import KeyRing
    from lethe_audit.log import AuditLog

    secret = passphrase(passphrase_env, passphrase_file)
    ring = KeyRing.open(keydir)
    log = AuditLog.open(url, signers=ring.signers(passphrase=secret))
    results: list[AppendResult] = []

    def register(signer: Signer) -> AppendResult:
        results.append(log.add_key(signer))
        return results[-1]  # its size is recorded in the keyring (the key's window)

    ring = ring.add_key(passphrase=secret, register=register)
    e, r = ring.entries[-1], results[0]
    emit(
        {"key": e.to_dict(), "index": r.index, "size": r.size},
        as_json,
        f"added key {e.key_id} (entry {r.index}); both keys now sign\nvkey: {e.vkey}",
    )


@keys.command("retire")
@click.argument("keydir", type=_KEYDIR)
@click.argument("key")
@click.option("--db", "url", required=True, metavar="URL", help="The log database URL.")
@passphrase_options
@json_option
def keys_retire(
    keydir: Path,
    key: str,
    url: str,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """End a rotation: stop signing with KEY (key id, name+id or vkey); logged as a
    key.rotated event."""
    from lethe_audit.keys import KeyRing
    from lethe_audit.log import AuditLog

    secret = passphrase(passphrase_env, passphrase_file)
    ring = KeyRing.open(keydir)
    log = AuditLog.open(url, signers=ring.signers(passphrase=secret))
    results: list[AppendResult] = []

    def unregister(vkey: str) -> AppendResult:
        results.append(log.retire_key(vkey))
        return results[-1]  # its size is recorded in the keyring (the key's window)

    ring = ring.retire(key, unregister=unregister)
    r = results[0]
    target = ring.find(key)
    emit(
        {"key": target.to_dict(), "index": r.index, "size": r.size},
        as_json,
        f"retired key {target.key_id} (entry {r.index})",
    )
