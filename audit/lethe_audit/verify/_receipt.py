"""Deletion receipts: a C2SP tlog-proof whose ``extra`` line carries the logged envelope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lethe_audit import note
from lethe_audit.errors import (
    EntryError,
    FormatError,
    ReceiptError,
    SignatureError,
    VerificationError,
)
from lethe_audit.note import Verifier
from lethe_audit.statements import Envelope, Statement
from lethe_audit.tlog import (
    Checkpoint,
    TlogProof,
    checkpoint_signers,
    leaf_hash,
    verify_inclusion,
)
from lethe_audit.verify._entry import VerifiedEntry, check_entry_signed
from lethe_audit.verify._policies import LogView, Policy
from lethe_audit.verify._windows import KeyWindows


@dataclass(frozen=True)
class Receipt:
    """A parsed (unverified) receipt: use :func:`verify_receipt` before trusting it."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    checkpoint: Checkpoint
    envelope_bytes: bytes
    envelope: Envelope
    statement: Statement


def parse_receipt(data: str | bytes) -> Receipt:
    """Read a receipt file. Verifies nothing; raises FormatError / ReceiptError if malformed."""
    proof = TlogProof.parse(data)
    if proof.extra is None:
        raise ReceiptError(
            "this tlog-proof carries no log entry (no 'extra' line): it is not a Lethe receipt",
            index=proof.index,
        )
    cp = Checkpoint.parse(note.parse(proof.checkpoint).text)
    envelope = Envelope.from_json(proof.extra)
    return Receipt(
        index=proof.index,
        proof=proof.hashes,
        checkpoint_note=proof.checkpoint,
        checkpoint=cp,
        envelope_bytes=proof.extra,
        envelope=envelope,
        statement=Statement.from_envelope(envelope),
    )


def verify_receipt(
    data: str | bytes,
    verifiers: Verifier | Sequence[Verifier],
    *,
    origin: str | None = None,
    policies: Sequence[Policy] = (),
) -> None:
    """Verify a deletion receipt offline with only the log's public key(s).

    Checks, in order: the checkpoint is signed by a trusted key (and is for ``origin`` when
    given); the envelope is included at the receipt's index in that checkpoint's tree; the
    envelope is canonical, signed by a trusted key, and its statement well-formed; then each
    policy. Keys count only inside their validity window (:class:`~lethe_audit.keys.TrustedKey`:
    the checkpoint at its size, the entry at ``index + 1``): a receipt signed only by a key past
    its retirement is rejected. Returns None or raises a
    :class:`~lethe_audit.errors.VerificationError` subclass (or FormatError for a file that is
    not a receipt).
    """
    windows = KeyWindows(verifiers)
    known = windows.known
    if not known:
        raise VerificationError("no trusted keys given: pass the log's vkey")
    proof = TlogProof.parse(data)
    if proof.extra is None:
        raise ReceiptError(
            "this tlog-proof carries no log entry (no 'extra' line): it is not a Lethe receipt",
            index=proof.index,
        )
    cp, cp_signers = checkpoint_signers(proof.checkpoint, list(known.values()), origin=origin)
    windows.check(f"the checkpoint at size {cp.size}", cp.size, (v.key_hint for v in cp_signers))
    verify_inclusion(leaf_hash(proof.extra), proof.index, cp.size, proof.hashes, cp.root)
    try:
        entry, signers = check_entry_signed(proof.extra, known)
    except (SignatureError, EntryError) as e:
        raise type(e)(f"entry {proof.index}: {e}", index=proof.index, size=cp.size) from None
    except FormatError as e:  # pragma: no cover - check_entry wraps these
        raise EntryError(f"entry {proof.index}: {e}", index=proof.index) from None
    windows.check(f"entry {proof.index}", proof.index + 1, signers, index=proof.index)
    verified = VerifiedEntry(proof.index, entry.envelope, entry.statement)
    view = LogView(
        origin=cp.origin,
        size=cp.size,
        root=cp.root,
        checkpoints=(cp,),
        entries=lambda: iter((verified,)),
        root_at=None,
        complete=False,
    )
    for p in policies:
        p.verify(view)
