"""RFC 6962 / RFC 9162 Merkle trees, C2SP checkpoints and C2SP tlog-proofs.

Hashing: :func:`leaf_hash`, :func:`node_hash`, :func:`root`, :data:`EMPTY_ROOT`.
Proofs: :func:`inclusion_proof`, :func:`consistency_proof` (over a :class:`HashSource` or a
list of leaf hashes), :func:`verify_inclusion`, :func:`verify_consistency`.
Tree state: :class:`CompactRange` (the right border, for O(log n) appends).
Formats: :class:`Checkpoint` (c2sp.org/tlog-checkpoint) with :func:`sign_checkpoint` /
:func:`verify_checkpoint`, and :class:`TlogProof` (c2sp.org/tlog-proof).
"""

from __future__ import annotations

from collections.abc import Sequence

from lethe_audit import note
from lethe_audit.errors import CheckpointError, FormatError, SignatureError
from lethe_audit.tlog._checkpoint import Checkpoint
from lethe_audit.tlog._compact import CompactRange
from lethe_audit.tlog._hash import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash, root
from lethe_audit.tlog._proof import (
    HashSource,
    MemoryTree,
    NodeID,
    consistency_proof,
    inclusion_proof,
    range_nodes,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from lethe_audit.tlog._tlogproof import TlogProof

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Checkpoint",
    "CompactRange",
    "HashSource",
    "MemoryTree",
    "NodeID",
    "TlogProof",
    "checkpoint_signers",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root",
    "root_from_inclusion_proof",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]


def sign_checkpoint(checkpoint: Checkpoint, signers: note.Signer | Sequence[note.Signer]) -> str:
    """The checkpoint as a signed note (every signer adds a signature line)."""
    return note.sign(checkpoint.body(), signers)


def verify_checkpoint(
    note_text: str,
    verifiers: note.Verifier | Sequence[note.Verifier],
    *,
    origin: str | None = None,
) -> None:
    """Check a signed checkpoint: a trusted key signed it and, if given, the origin matches.

    Returns None or raises :class:`~lethe_audit.errors.SignatureError` (bad or no trusted
    signature), :class:`~lethe_audit.errors.CheckpointError` (wrong origin) or
    :class:`~lethe_audit.errors.FormatError` (not a checkpoint). Errors carry the size when the
    body could be read.
    """
    checkpoint_signers(note_text, verifiers, origin=origin)


def checkpoint_signers(
    note_text: str,
    verifiers: note.Verifier | Sequence[note.Verifier],
    *,
    origin: str | None = None,
) -> tuple[Checkpoint, tuple[note.Verifier, ...]]:
    """:func:`verify_checkpoint`, returning the checkpoint and the trusted keys that signed it."""
    parsed = note.parse(note_text)
    try:
        cp = Checkpoint.parse(parsed.text)
    except FormatError as e:
        raise FormatError(f"signed note is not a checkpoint: {e}") from None
    try:
        signers = note.signed_by(note_text, verifiers)
    except SignatureError as e:
        raise SignatureError(f"checkpoint at size {cp.size}: {e}", size=cp.size) from None
    if origin is not None and cp.origin != origin:
        raise CheckpointError(
            f"checkpoint at size {cp.size} is for log {cp.origin!r}, expected {origin!r}",
            size=cp.size,
        )
    return cp, signers
