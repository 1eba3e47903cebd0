"""RFC 6962 / RFC 9162 §2.1.1 Merkle tree hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes (``EMPTY_ROOT`` for none).

    Runs in O(n) time and O(log n) memory by keeping the right border of the tree.
    """
    # stack holds perfect subtree roots with their heights, largest first.
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        height = 0
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            h = node_hash(left, h)
            height += 1
        stack.append((height, h))
    if not stack:
        return EMPTY_ROOT
    r = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        r = node_hash(left, r)
    return r
