"""C2SP ``tlog-checkpoint`` bodies (https://c2sp.org/tlog-checkpoint)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from lethe_audit.errors import FormatError
from lethe_audit.tlog._hash import HASH_SIZE

# At most 19 digits: a tree size is a uint64 (C2SP), and Python refuses huge int() parses.
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: ``origin``, tree ``size`` and ``root`` hash, plus optional extension lines.

    :meth:`body` is the note text that gets signed; :meth:`parse` reads one back.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise FormatError("checkpoint origin must be a non-empty single line")
        if self.size < 0:
            raise FormatError(f"checkpoint size must be >= 0, got {self.size}")
        if len(self.root) != HASH_SIZE:
            raise FormatError(f"checkpoint root must be {HASH_SIZE} bytes, got {len(self.root)}")
        for line in self.extensions:
            if not line or "\n" in line:
                raise FormatError("checkpoint extension lines must be non-empty single lines")

    def body(self) -> str:
        """The checkpoint as note text (ends with a newline)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint body (the note text, not the signed note)."""
        if not text.endswith("\n"):
            raise FormatError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("a checkpoint has at least three lines: origin, size, root hash")
        origin, size_s, root_s, *ext = lines
        if not origin:
            raise FormatError("checkpoint origin line is empty")
        if not _SIZE.fullmatch(size_s):
            raise FormatError(
                f"checkpoint size {size_s[:40]!r} is not a decimal without leading zeros "
                "of at most 19 digits"
            )
        try:
            root = base64.b64decode(root_s, validate=True)
        except (binascii.Error, ValueError):
            raise FormatError(f"checkpoint root {root_s[:80]!r} is not base64") from None
        if any(not line for line in ext):
            raise FormatError("checkpoint extension lines must be non-empty")
        return cls(origin=origin, size=int(size_s), root=root, extensions=tuple(ext))
