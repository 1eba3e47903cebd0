"""The secrets ``lethe serve`` holds must be readable by its own user only: refuse to start
when a private key in the key directory is open to the group or to others (POSIX)."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterable
from pathlib import Path

from lethe.errors import ConfigError
from lethe_audit.cli import safe_text

__all__ = ["check_key_files", "private_key_files"]


def private_key_files(directory: Path, listed: Iterable[str]) -> list[Path]:
    """The secrets in ``directory``: the keyring's key files (``listed``), ``*.key`` (console
    session, subject map) and any other private ``*.pem`` (not ``*.pub.pem``)."""
    found = {directory / name for name in listed}
    found.update(directory.glob("*.key"))
    found.update(p for p in directory.glob("*.pem") if not p.name.endswith(".pub.pem"))
    return sorted(p for p in found if p.is_file())


def check_key_files(directory: Path, listed: Iterable[str]) -> None:
    """``ConfigError`` (one line, with the ``chmod`` to run) when a private key file in
    ``directory`` is readable or writable by its group or others; nothing on non-POSIX."""
    if os.name != "posix":
        return
    for path in private_key_files(directory, listed):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            f, d = (safe_text(shlex.quote(str(p)), one_line=True) for p in (path, directory))
            raise ConfigError(
                f"key file {f} is open to its group or others (mode {mode:04o}); only the "
                f"`lethe serve` user may read it: run `chmod 600 {f}` (and `chmod 700 {d}`), "
                "then start the server again"
            )
