"""Trusted log keys with a validity window of log sizes (after a rotation or a retirement).

A key is valid for the tree sizes ``from_size <= s <= until_size`` (``until_size`` None: no
end). It counts for a checkpoint of size ``s`` when ``s`` is in the window, and for log entry
``i`` when ``i + 1`` is (entry ``i`` first appears in the tree of size ``i + 1``). Outside its
window a key's signatures are ignored, as if it were unknown.

Written ``VKEY@FROM..UNTIL`` (either bound may be left out: ``VKEY@..42``, ``VKEY@7..``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from lethe_audit.errors import FormatError
from lethe_audit.note import Verifier

_WINDOW = re.compile(r"([0-9]{0,19})\.\.([0-9]{0,19})")


def _window_text(from_size: int, until_size: int | None) -> str:
    return f"{from_size if from_size else ''}..{'' if until_size is None else until_size}"


class TrustedKey(Verifier):
    """A :class:`~lethe_audit.note.Verifier` that counts only inside a window of log sizes.

    Everything that takes verifiers takes these; :func:`~lethe_audit.verify.verify_bundle` and
    :func:`~lethe_audit.verify.verify_receipt` enforce the window (a plain ``Verifier`` is valid
    at every size, narrowed in a bundle by the log's own ``key.rotated`` events).
    """

    __slots__ = ("from_size", "until_size")

    def __init__(
        self, name: str, public_key: bytes, *, from_size: int = 0, until_size: int | None = None
    ) -> None:
        super().__init__(name, public_key)
        if from_size < 0 or (until_size is not None and until_size < from_size):
            raise FormatError(
                f"key {self.key_hint}: window {_window_text(from_size, until_size)} is empty "
                "(FROM must be >= 0 and <= UNTIL)"
            )
        self.from_size = from_size
        self.until_size = until_size

    @classmethod
    def of(
        cls, verifier: Verifier, *, from_size: int = 0, until_size: int | None = None
    ) -> TrustedKey:
        """``verifier`` restricted to a window (narrowing any window it already has)."""
        if isinstance(verifier, TrustedKey):
            from_size = max(from_size, verifier.from_size)
            until_size = _min_until(until_size, verifier.until_size)
            if until_size is not None and until_size < from_size:
                raise FormatError(
                    f"key {verifier.key_hint}: its windows do not overlap (valid at no size)"
                )
        return cls(verifier.name, verifier.public_key, from_size=from_size, until_size=until_size)

    @classmethod
    def parse(cls, text: str) -> TrustedKey:
        """``VKEY`` or ``VKEY@FROM..UNTIL`` (a vkey has no ``@`` after its base64 key)."""
        vkey, sep, window = text.rpartition("@")
        m = _WINDOW.fullmatch(window) if sep else None
        if m is None:
            return TrustedKey.of(Verifier.from_vkey(text))
        lo, hi = m.groups()
        v = Verifier.from_vkey(vkey)
        return cls(v.name, v.public_key, from_size=int(lo or 0), until_size=int(hi) if hi else None)

    def valid_at(self, size: int) -> bool:
        return self.from_size <= size and (self.until_size is None or size <= self.until_size)

    @property
    def window(self) -> str:
        """``FROM..UNTIL`` as written on the command line (``..`` for no bounds)."""
        return _window_text(self.from_size, self.until_size)

    def __repr__(self) -> str:
        return f"TrustedKey({self.vkey!r}, window={self.window!r})"


def _min_until(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def merge_trusted(verifiers: Iterable[Verifier]) -> list[TrustedKey]:
    """One :class:`TrustedKey` per key; the same key given twice gets the intersection of its
    windows (the stricter statement wins). Order of first appearance is kept."""
    out: dict[tuple[str, bytes], TrustedKey] = {}
    for v in verifiers:
        k = (v.name, v.public_key)
        t = TrustedKey.of(v)
        out[k] = (
            TrustedKey.of(t, from_size=out[k].from_size, until_size=out[k].until_size)
            if (k in out)
            else t
        )
    return list(out.values())


def describe_keys(keys: Sequence[Verifier]) -> str:
    """``name+id`` of each key, with its window where it has one: for success messages."""
    parts = []
    for v in keys:
        w = v.window if isinstance(v, TrustedKey) else ".."
        parts.append(v.key_hint if w == ".." else f"{v.key_hint}@{w}")
    return ", ".join(parts)
