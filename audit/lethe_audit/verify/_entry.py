"""Checking one log entry: canonical envelope, trusted signature, well-formed statement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lethe_audit.errors import EntryError, FormatError, SignatureError
from lethe_audit.note import Verifier
from lethe_audit.statements import Envelope, Statement, pae, validate_statement


@dataclass(frozen=True)
class VerifiedEntry:
    """A log entry whose envelope verified and whose statement is well-formed."""

    index: int
    envelope: Envelope
    statement: Statement

    @property
    def predicate_type(self) -> str:
        return self.statement.predicate_type


def check_envelope_signatures(envelope: Envelope, known: Mapping[str, Verifier]) -> frozenset[str]:
    """Like ``statements.verify_envelope`` with a prebuilt ``{key_hint: Verifier}`` map.

    Returns the key hints whose signature verified (a bad one by a known key raises)."""
    message = pae(envelope.payload_type, envelope.payload)
    verified: set[str] = set()
    for s in envelope.signatures:
        v = known.get(s.keyid)
        if v is not None:
            v.verify_bytes(message, s.sig)
            verified.add(s.keyid)
    if not verified:
        ids = ", ".join(s.keyid for s in envelope.signatures)
        raise SignatureError(f"no signature by a trusted key (signed by: {ids})")
    return frozenset(verified)


def check_entry_signed(
    data: bytes, known: Mapping[str, Verifier]
) -> tuple[VerifiedEntry, frozenset[str]]:
    """:func:`check_entry`, also returning the trusted key hints that signed the entry."""
    try:
        envelope = Envelope.from_json(data)
    except FormatError as e:
        raise EntryError(f"not a canonical DSSE envelope: {e}") from None
    signers = check_envelope_signatures(envelope, known)
    try:
        statement = Statement.from_envelope(envelope)
        validate_statement(statement)
    except FormatError as e:
        raise EntryError(f"statement is not well-formed: {e}") from None
    return VerifiedEntry(-1, envelope, statement), signers


def check_entry(data: bytes, known: Mapping[str, Verifier]) -> VerifiedEntry:
    """Check one entry's bytes; errors name no index (callers add it)."""
    return check_entry_signed(data, known)[0]


def known_keys(verifiers: Verifier | list[Verifier] | tuple[Verifier, ...]) -> dict[str, Verifier]:
    from lethe_audit.note import verifier_map

    return {v.key_hint: v for v in verifier_map(verifiers).values()}
