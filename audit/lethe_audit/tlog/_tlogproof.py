"""C2SP ``tlog-proof`` files (https://c2sp.org/tlog-proof): index, audit path, checkpoint."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lethe_audit.errors import FormatError
from lethe_audit.tlog._hash import HASH_SIZE

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,18})")  # a uint64


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise FormatError(f"tlog-proof {what} is not base64") from None


@dataclass(frozen=True)
class TlogProof:
    """An offline-verifiable proof that entry ``index`` is in the log.

    ``checkpoint`` is the signed checkpoint note, verbatim; ``extra`` is opaque application data
    (unauthenticated by the format itself; Lethe receipts carry the logged entry there, which
    the verifier hashes and proves included).
    """

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise FormatError(f"tlog-proof index must be >= 0, got {self.index}")
        for h in self.hashes:
            if len(h) != HASH_SIZE:
                raise FormatError(f"tlog-proof hashes must be {HASH_SIZE} bytes, got {len(h)}")
        if not self.checkpoint.endswith("\n"):
            raise FormatError("tlog-proof checkpoint must end with a newline")

    @classmethod
    def create(
        cls, index: int, hashes: Sequence[bytes], checkpoint: str, extra: bytes | None = None
    ) -> TlogProof:
        return cls(index=index, hashes=tuple(hashes), checkpoint=checkpoint, extra=extra)

    def to_text(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str | bytes) -> TlogProof:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError("tlog-proof is not UTF-8") from None
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise FormatError("tlog-proof has no blank line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise FormatError(f"tlog-proof must start with {HEADER!r}")
        pos = 1
        extra = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = _b64(lines[pos][len("extra ") :], "extra data")
            pos += 1
        if pos >= len(lines) or not (m := _INDEX.fullmatch(lines[pos])):
            raise FormatError("tlog-proof is missing its 'index N' line (N: at most 19 digits)")
        pos += 1
        hashes = []
        for line in lines[pos:]:
            h = _b64(line, "hash")
            if len(h) != HASH_SIZE:
                raise FormatError(f"tlog-proof hash is {len(h)} bytes, not {HASH_SIZE}")
            hashes.append(h)
        if not checkpoint:
            raise FormatError("tlog-proof has no checkpoint")
        return cls(index=int(m.group(1)), hashes=tuple(hashes), checkpoint=checkpoint, extra=extra)
