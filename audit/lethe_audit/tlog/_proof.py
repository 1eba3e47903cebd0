"""Inclusion and consistency proofs, RFC 9162 §2.1.3 and §2.1.4.

Generation works against any :class:`HashSource` (the stored nodes of a database, or a list of
leaf hashes in memory): each proof element is the hash of a leaf range, and every range splits
into at most log2(n) perfect subtrees, which a store can fetch by ``(level, index)`` in one
query. Verification follows the RFC's iterative algorithms to the letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from lethe_audit.errors import ConsistencyProofError, InclusionProofError
from lethe_audit.tlog._hash import HASH_SIZE, node_hash

#: A perfect subtree: ``(level, index)`` covers leaves ``[index << level, (index + 1) << level)``.
NodeID = tuple[int, int]


@runtime_checkable
class HashSource(Protocol):
    """Anything that can return the hashes of perfect subtrees (level 0 = leaf hashes)."""

    def node_hashes(self, ids: Sequence[NodeID]) -> Sequence[bytes]:
        """Hashes for ``ids``, in the same order. Raise if one is not available."""
        ...


class MemoryTree:
    """A :class:`HashSource` over leaf hashes held in memory (builds every level once)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def node_hashes(self, ids: Sequence[NodeID]) -> Sequence[bytes]:
        try:
            return [self._levels[level][index] for level, index in ids]
        except IndexError:
            raise ValueError("node outside the tree") from None


def _largest_power_of_two_below(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The perfect subtrees that tile leaves ``[begin, end)``, left to right.

    For the ranges RFC 9162 proofs use, right-folding these hashes gives MTH(D[begin:end]).
    """
    nodes: list[NodeID] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def _inclusion_ranges(index: int, begin: int, end: int) -> list[tuple[int, int]]:
    # RFC 9162 §2.1.3.1 PATH(m, D[n]), iteratively; collected top-down then reversed.
    out: list[tuple[int, int]] = []
    while end - begin > 1:
        k = _largest_power_of_two_below(end - begin)
        if index < begin + k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin = begin + k
    out.reverse()
    return out


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    # RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), iteratively; collected top-down then reversed.
    out: list[tuple[int, int]] = []
    m, begin, end, complete = size1, 0, size2, True
    while m != end - begin:
        k = _largest_power_of_two_below(end - begin)
        if m <= k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            m -= k
            begin += k
            complete = False
    if not complete:
        out.append((begin, end))
    out.reverse()
    return out


def _resolve(ranges: Sequence[tuple[int, int]], source: HashSource) -> list[bytes]:
    plans = [range_nodes(b, e) for b, e in ranges]
    wanted = sorted({node for plan in plans for node in plan})
    got = dict(zip(wanted, source.node_hashes(wanted), strict=True))
    proof = []
    for plan in plans:
        h = got[plan[-1]]
        for node in reversed(plan[:-1]):
            h = node_hash(got[node], h)
        proof.append(h)
    return proof


def _as_source(source: HashSource | Sequence[bytes]) -> HashSource:
    if isinstance(source, HashSource):
        return source
    return MemoryTree(source)


def inclusion_proof(index: int, size: int, source: HashSource | Sequence[bytes]) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of the first ``size`` leaves.

    ``source`` is a :class:`HashSource` or the list of leaf hashes itself.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    return _resolve(_inclusion_ranges(index, 0, size), _as_source(source))


def consistency_proof(size1: int, size2: int, source: HashSource | Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves.

    Empty when ``size1`` is 0 (nothing to prove: the first checkpoint is taken on trust) or
    equals ``size2``.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"need 0 <= size1 <= size2, got {size1}, {size2}")
    if size1 == 0 or size1 == size2:
        return []
    return _resolve(_consistency_ranges(size1, size2), _as_source(source))


def _check_hashes(proof: Sequence[bytes], *named: tuple[str, bytes]) -> str | None:
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            return f"proof element {i} is {len(p)} bytes, not {HASH_SIZE}"
    for name, h in named:
        if len(h) != HASH_SIZE:
            return f"{name} is {len(h)} bytes, not {HASH_SIZE}"
    return None


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1-5)."""

    def fail(why: str) -> InclusionProofError:
        return InclusionProofError(
            f"inclusion proof for entry {index} in tree size {size} is invalid: {why}",
            index=index,
            size=size,
        )

    if not 0 <= index < size:
        raise fail("the index is not inside the tree")
    bad = _check_hashes(proof, ("leaf hash", leaf_hash))
    if bad:
        raise fail(bad)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise fail("the proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail("the proof is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is entry ``index`` of the tree of ``size`` leaves with ``root``.

    Returns None or raises :class:`~lethe_audit.errors.InclusionProofError`.
    """
    if len(root) != HASH_SIZE:
        raise InclusionProofError(
            f"inclusion proof for entry {index}: the root is {len(root)} bytes, not {HASH_SIZE}",
            index=index,
            size=size,
        )
    got = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if got != root:
        raise InclusionProofError(
            f"inclusion proof for entry {index} in tree size {size} leads to root "
            f"{got.hex()}, not {root.hex()}",
            index=index,
            size=size,
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``(size1, root1)`` is a prefix of the tree ``(size2, root2)``.

    RFC 9162 §2.1.4.2. ``size1 == 0`` is accepted with an empty proof: there is nothing to
    prove about an empty tree, so the first checkpoint a verifier sees is taken on trust.
    Returns None or raises :class:`~lethe_audit.errors.ConsistencyProofError`.
    """

    def fail(why: str) -> ConsistencyProofError:
        return ConsistencyProofError(
            f"consistency proof from size {size1} to {size2} is invalid: {why}",
            size1=size1,
            size2=size2,
        )

    if size1 < 0 or size2 < size1:
        raise fail("the sizes go backwards")
    bad = _check_hashes(proof, ("root1", root1), ("root2", root2))
    if bad:
        raise fail(bad)
    if size1 == 0:
        if proof:
            raise fail("a proof from the empty tree must be empty")
        return
    if size1 == size2:
        if proof:
            raise fail("a proof between equal sizes must be empty")
        if root1 != root2:
            raise fail("equal sizes with different roots (the log forked)")
        return
    if not proof:
        raise fail("the proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail("the proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail("the proof is too short")
    if fr != root1:
        raise fail(f"it leads to old root {fr.hex()}, not {root1.hex()}")
    if sr != root2:
        raise fail(f"it leads to new root {sr.hex()}, not {root2.hex()}")
