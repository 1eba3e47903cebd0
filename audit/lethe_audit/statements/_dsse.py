"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, envelope.md and protocol.md).

Signatures are Ed25519 over PAE(payloadType, payload); ``keyid`` is the C2SP key hint
``name+hexid`` of the note key that signed, so one vkey verifies both checkpoints and entries.
The envelope is stored and logged as RFC 8785 canonical JSON, so signing the same payload with
the same keys always gives the same bytes (Ed25519 is deterministic).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from lethe_audit.errors import FormatError, SignatureError
from lethe_audit.note import Signer, Verifier, verifier_map
from lethe_audit.statements._canonical import canonical_json, loads_canonical

#: The payload type of in-toto statements.
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: ``payload`` bytes of ``payload_type``, with signatures."""

    payload: bytes
    payload_type: str
    signatures: tuple[EnvelopeSignature, ...]

    def to_json(self) -> bytes:
        """Canonical JSON bytes (RFC 8785): what the log stores and hashes."""
        return canonical_json(
            {
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "payloadType": self.payload_type,
                "signatures": [
                    {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                    for s in self.signatures
                ],
            }
        )

    @classmethod
    def from_json(cls, data: bytes, *, require_canonical: bool = True) -> Envelope:
        """Parse envelope JSON. Raises FormatError when malformed (or not canonical)."""
        if require_canonical:
            obj = loads_canonical(data, "DSSE envelope")
        else:
            import json

            try:
                obj = json.loads(data)
            except (ValueError, RecursionError) as e:
                raise FormatError(f"DSSE envelope is not valid JSON: {type(e).__name__}") from None
        if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
            raise FormatError(
                "DSSE envelope must be an object with exactly payload, payloadType, signatures"
            )
        payload_type = obj["payloadType"]
        sigs = obj["signatures"]
        if not isinstance(payload_type, str) or not isinstance(obj["payload"], str):
            raise FormatError("DSSE payload and payloadType must be strings")
        _check_text(payload_type, "payloadType")
        if not isinstance(sigs, list) or not sigs:
            raise FormatError("DSSE envelope must have at least one signature")
        out = []
        for s in sigs:
            if (
                not isinstance(s, dict)
                or set(s) != {"keyid", "sig"}
                or not isinstance(s["keyid"], str)
                or not isinstance(s["sig"], str)
            ):
                raise FormatError("DSSE signatures must be objects with string keyid and sig")
            _check_text(s["keyid"], "keyid")
            out.append(EnvelopeSignature(s["keyid"], _b64(s["sig"], "signature")))
        return cls(_b64(obj["payload"], "payload"), payload_type, tuple(out))


def _check_text(value: str, what: str) -> None:
    """Text that can be encoded (JSON may carry lone surrogates such as "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"DSSE {what} is not valid Unicode text") from None


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise FormatError(f"DSSE {what} is not base64") from None


def sign_envelope(
    payload: bytes,
    signers: Signer | Sequence[Signer],
    *,
    payload_type: str = INTOTO_PAYLOAD_TYPE,
) -> Envelope:
    """Sign ``payload`` with every signer (in the order given)."""
    signer_list = [signers] if isinstance(signers, Signer) else list(signers)
    if not signer_list:
        raise FormatError("sign_envelope needs at least one Signer")
    message = pae(payload_type, payload)
    sigs = tuple(EnvelopeSignature(s.key_hint, s.sign_bytes(message)) for s in signer_list)
    if len({s.keyid for s in sigs}) != len(sigs):
        raise FormatError("the same signer was given twice")
    return Envelope(payload, payload_type, sigs)


def verify_envelope(envelope: Envelope, verifiers: Verifier | Sequence[Verifier]) -> None:
    """Check the envelope's signatures against trusted keys.

    As for signed notes: signatures whose keyid names no trusted key are ignored, a bad
    signature by a trusted key fails, and at least one trusted key must have signed.
    Returns None or raises :class:`~lethe_audit.errors.SignatureError`.
    """
    known = {v.key_hint: v for v in verifier_map(verifiers).values()}
    message = pae(envelope.payload_type, envelope.payload)
    verified = 0
    for s in envelope.signatures:
        v = known.get(s.keyid)
        if v is None:
            continue
        v.verify_bytes(message, s.sig)
        verified += 1
    if not verified:
        ids = ", ".join(s.keyid for s in envelope.signatures)
        raise SignatureError(f"envelope has no signature by a trusted key (signed by: {ids})")
