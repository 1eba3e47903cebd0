"""Key validity windows during verification: which trusted key counts at which log size.

Windows come from the auditor (:class:`~lethe_audit.keys.TrustedKey`: ``VKEY@FROM..UNTIL``,
or a key directory's recorded sizes) and, in a bundle, from the log's own ``key.rotated``
events: a key retired by the event at entry ``r`` counts up to size ``r + 1``; a key added by
the event at entry ``a`` counts from size ``a + 1``. Events only ever narrow a window. A
checkpoint of size ``s`` (an entry ``i``: size ``i + 1``) verifies only if a key valid at that
size signed it; signatures by keys outside their window are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lethe_audit.errors import SignatureError
from lethe_audit.keys import TrustedKey, merge_trusted
from lethe_audit.note import Verifier
from lethe_audit.statements import EVENT_V1, EventType, Statement
from lethe_audit.verify._entry import known_keys

#: A ``key.rotated`` event found in the log: (entry index, action, vkey of the key).
KeyEvent = tuple[int, str, str]


def key_event(index: int, statement: Statement) -> KeyEvent | None:
    """The ``key.rotated`` event of a (verified) entry's statement, if it is one."""
    p = statement.predicate
    if statement.predicate_type != EVENT_V1 or p.get("event") != EventType.KEY_ROTATED:
        return None
    details: Any = p.get("details")
    if not isinstance(details, dict):
        return None
    action, key = details.get("action"), details.get("key")
    if action not in ("added", "retired") or not isinstance(key, str):
        return None
    return (index, action, key)


class KeyWindows:
    """The trusted keys (one per key, in a fixed order: bit ``k`` of a mask = key ``k``) with
    their current windows, and why each bound is there (for error messages)."""

    def __init__(self, verifiers: Verifier | Sequence[Verifier]) -> None:
        given = [verifiers] if isinstance(verifiers, Verifier) else list(verifiers)
        self.keys: list[TrustedKey] = merge_trusted(given)
        self.known: dict[str, Verifier] = known_keys(list[Verifier](self.keys))
        self.hints = [k.key_hint for k in self.keys]
        self._bit = {h: i for i, h in enumerate(self.hints)}
        self._by_vkey = {k.vkey: i for i, k in enumerate(self.keys)}
        self._from = [k.from_size for k in self.keys]
        self._until: list[int | None] = [k.until_size for k in self.keys]
        self._why = [self._stated(k) for k in self.keys]
        self._added: set[int] = set()

    @staticmethod
    def _stated(k: TrustedKey) -> str:
        return "" if k.window == ".." else f"trusted for sizes {k.window} as given"

    @property
    def vkeys(self) -> list[str]:
        return [k.vkey for k in self.keys]

    def mask(self, hints: Iterable[str]) -> int:
        m = 0
        for h in hints:
            if h in self._bit:
                m |= 1 << self._bit[h]
        return m

    def apply_events(self, events: Iterable[KeyEvent]) -> None:
        """Narrow the windows with the log's ``key.rotated`` events (in index order)."""
        for index, action, vkey in sorted(events):
            k = self._by_vkey.get(vkey)
            if k is None:
                continue
            size, at = index + 1, f"by the key.rotated event at entry {index}"
            if action == "retired":
                until = self._until[k]
                if until is None or size < until:
                    self._until[k] = size
                    self._why[k] = f"retired at size {size} {at}"
            elif k not in self._added:
                self._added.add(k)
                if size > self._from[k]:
                    self._from[k] = size
                    self._why[k] = f"added at size {size} {at}"

    def first_uncovered(self, mask: int, lo: int, hi: int) -> int | None:
        """The smallest size in ``[lo, hi]`` at which no key of ``mask`` is valid, or None."""
        spans = []
        for k in range(len(self.keys)):
            if mask >> k & 1:
                until = self._until[k]
                spans.append((self._from[k], hi if until is None else until))
        cur = lo
        for start, end in sorted(spans):
            if start > cur:
                break
            cur = max(cur, end + 1)
            if cur > hi:
                return None
        return cur if cur <= hi else None

    def error(self, what: str, size: int, mask: int, *, index: int | None = None) -> SignatureError:
        """``what`` (e.g. ``entry 12``) is signed only by keys not valid at ``size``."""
        parts = []
        for k in range(len(self.keys)):
            if mask >> k & 1:
                why = self._why[k] or "outside its window"
                parts.append(f"{self.hints[k]} ({why})")
        return SignatureError(
            f"{what} is signed only by key(s) not valid at log size {size}: "
            f"{', '.join(parts)}; a key past its retirement proves nothing",
            index=index,
            size=size,
        )

    def check(
        self, what: str, size: int, hints: Iterable[str], *, index: int | None = None
    ) -> None:
        """Raise :meth:`error` unless a key among ``hints`` is valid at ``size``."""
        m = self.mask(hints)
        if self.first_uncovered(m, size, size) is not None:
            raise self.error(what, size, m, index=index)
