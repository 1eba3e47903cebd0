"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

>>> signer = Signer.generate("example.org/log")
>>> signed = sign("hello\\n", signer)
>>> verify(signed, [Verifier.from_vkey(signer.vkey)])

Signing other bytes: :meth:`Signer.sign_bytes` returns a raw RFC 8032 signature. To get a
signature in signed-note form (verifiable with a vkey by any C2SP implementation), put the
bytes' digest in a note text, e.g. ``sign(f"lethe.onnx/v1\\n{sha256_hex}\\n", signer)``.
"""

from __future__ import annotations

from lethe_audit.note._note import (
    ALG_ED25519,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    key_id,
    parse,
    sign,
    signed_by,
    verifier_map,
    verify,
)

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "key_id",
    "parse",
    "sign",
    "signed_by",
    "verifier_map",
    "verify",
]
