"""The right border ("compact range") of a Merkle tree: O(log n) state for O(log n) appends."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lethe_audit.errors import FormatError
from lethe_audit.tlog._hash import EMPTY_ROOT, HASH_SIZE, node_hash

#: Called with ``(level, index, hash)`` for each perfect subtree an append completes.
NodeCallback = Callable[[int, int, bytes], None]


class CompactRange:
    """The roots of the perfect subtrees covering leaves ``[0, size)``, largest first.

    There is one root per set bit of ``size``. Appending a leaf merges equal-height roots, which
    is exactly how the tree's stored interior nodes come into being.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise FormatError(f"tree size must be >= 0, got {size}")
        if len(hashes) != size.bit_count():
            raise FormatError(
                f"a compact range of size {size} holds {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            if len(h) != HASH_SIZE:
                raise FormatError(f"compact range hash must be {HASH_SIZE} bytes, got {len(h)}")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def append(self, leaf: bytes, on_node: NodeCallback | None = None) -> None:
        """Add one leaf hash; ``on_node`` sees every interior node this completes."""
        if len(leaf) != HASH_SIZE:
            raise FormatError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        h = leaf
        level = 0
        index = self._size
        while (self._size >> level) & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            index >>= 1
            if on_node is not None:
                on_node(level, index, h)
        self._hashes.append(h)
        self._size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            r = node_hash(left, r)
        return r

    def to_bytes(self) -> bytes:
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        if len(data) % HASH_SIZE:
            raise FormatError(f"compact range bytes must be a multiple of {HASH_SIZE}")
        return cls(size, [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
