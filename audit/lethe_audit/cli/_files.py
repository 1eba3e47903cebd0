"""Reading the files a `lethe-audit` command is given: regular files only, bounded, typed errors.

A FIFO, a device or a link to ``/dev/zero`` passed as a receipt, checkpoint or model must not
hang the command or fill memory, and a binary file where text is expected must give a one-line
error with an exit code, not a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lethe_audit.errors import FormatError, LetheAuditError

__all__ = ["MAX_MODEL_BYTES", "MAX_TEXT_BYTES", "check_regular", "read_bytes", "read_text"]

#: Receipts, checkpoints, key and passphrase files are small text files.
MAX_TEXT_BYTES = 64 << 20
#: ONNX models (protobuf refuses more than 2 GiB anyway).
MAX_MODEL_BYTES = 2 << 30

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _open(path: Path, what: str, error: type[LetheAuditError]) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{what} {path} is not a regular file")
    return fd


def check_regular(path: Path, what: str, *, error: type[LetheAuditError] = FormatError) -> None:
    """Raise ``error`` unless ``path`` is a readable regular file (a FIFO would block)."""
    os.close(_open(path, what, error))


def read_bytes(
    path: Path,
    what: str,
    *,
    limit: int = MAX_TEXT_BYTES,
    error: type[LetheAuditError] = FormatError,
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit``; ``error`` otherwise."""
    fd = _open(path, what, error)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {limit} bytes")
    return data


def read_text(
    path: Path,
    what: str,
    *,
    limit: int = MAX_TEXT_BYTES,
    error: type[LetheAuditError] = FormatError,
) -> str:
    """:func:`read_bytes` decoded as UTF-8; ``error`` for binary content."""
    data = read_bytes(path, what, limit=limit, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
