"""What the log records: in-toto Statements v1 in DSSE envelopes, as RFC 8785 canonical JSON.

Build a predicate (:class:`UnlearningAttestation` or :class:`LifecycleEvent`), turn it into a
:class:`Statement` (``.to_statement()``), sign it into an :class:`Envelope`
(:func:`sign_statement`); the log leaf is ``envelope.to_json()``. The domain vocabulary
(:class:`RequestStatus`, :class:`EventType`, :class:`ApplyOutcome`, :class:`Phase`) lives here
too: writers and readers use the same enums.

Names load on first use (PEP 562): the vocabulary alone (``from lethe_audit.statements import
RequestStatus``) does not import the signing code and its cryptography dependency, so CLIs
can build their options from the enums and stay fast to start.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lethe_audit.note import Signer
    from lethe_audit.statements._canonical import canonical_json, loads_canonical
    from lethe_audit.statements._dsse import (
        INTOTO_PAYLOAD_TYPE,
        Envelope,
        EnvelopeSignature,
        pae,
        sign_envelope,
        verify_envelope,
    )
    from lethe_audit.statements._intoto import STATEMENT_TYPE, Statement, Subject
    from lethe_audit.statements._predicates import (
        CALIBRATION_SOURCES,
        EVENT_V1,
        STATEMENT_VALIDATORS,
        UNLEARNING_V1,
        VARIANT_V1,
        LifecycleEvent,
        MethodRef,
        ModelRef,
        OnnxRef,
        PolicyVerdict,
        RequestRecord,
        UnlearningAttestation,
        VariantAttestation,
        hmac_commitment,
        parse_predicate,
        parse_rfc3339,
        rfc3339,
        sha256_digest,
        validate_event,
        validate_statement,
        validate_unlearning,
        validate_variant,
    )
    from lethe_audit.statements._vocab import ApplyOutcome, EventType, Phase, RequestStatus

_WHERE = {
    "canonical_json": "_canonical",
    "loads_canonical": "_canonical",
    "INTOTO_PAYLOAD_TYPE": "_dsse",
    "Envelope": "_dsse",
    "EnvelopeSignature": "_dsse",
    "pae": "_dsse",
    "sign_envelope": "_dsse",
    "verify_envelope": "_dsse",
    "STATEMENT_TYPE": "_intoto",
    "Statement": "_intoto",
    "Subject": "_intoto",
    "CALIBRATION_SOURCES": "_predicates",
    "EVENT_V1": "_predicates",
    "STATEMENT_VALIDATORS": "_predicates",
    "UNLEARNING_V1": "_predicates",
    "VARIANT_V1": "_predicates",
    "LifecycleEvent": "_predicates",
    "MethodRef": "_predicates",
    "ModelRef": "_predicates",
    "OnnxRef": "_predicates",
    "PolicyVerdict": "_predicates",
    "RequestRecord": "_predicates",
    "UnlearningAttestation": "_predicates",
    "VariantAttestation": "_predicates",
    "hmac_commitment": "_predicates",
    "parse_predicate": "_predicates",
    "parse_rfc3339": "_predicates",
    "rfc3339": "_predicates",
    "sha256_digest": "_predicates",
    "validate_event": "_predicates",
    "validate_statement": "_predicates",
    "validate_unlearning": "_predicates",
    "validate_variant": "_predicates",
    "ApplyOutcome": "_vocab",
    "EventType": "_vocab",
    "Phase": "_vocab",
    "RequestStatus": "_vocab",
}

__all__ = [
    "CALIBRATION_SOURCES",
    "EVENT_V1",
    "INTOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "STATEMENT_VALIDATORS",
    "UNLEARNING_V1",
    "VARIANT_V1",
    "ApplyOutcome",
    "Envelope",
    "EnvelopeSignature",
    "EventType",
    "LifecycleEvent",
    "MethodRef",
    "ModelRef",
    "OnnxRef",
    "Phase",
    "PolicyVerdict",
    "RequestRecord",
    "RequestStatus",
    "Statement",
    "Subject",
    "UnlearningAttestation",
    "VariantAttestation",
    "canonical_json",
    "hmac_commitment",
    "loads_canonical",
    "pae",
    "parse_predicate",
    "parse_rfc3339",
    "rfc3339",
    "sha256_digest",
    "sign_envelope",
    "sign_statement",
    "validate_event",
    "validate_statement",
    "validate_unlearning",
    "validate_variant",
    "verify_envelope",
]


def sign_statement(statement: Statement, signers: Signer | Sequence[Signer]) -> Envelope:
    """Validate a Lethe statement and sign its canonical JSON into a DSSE envelope."""
    from lethe_audit.statements._dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
    from lethe_audit.statements._predicates import validate_statement

    validate_statement(statement)
    return sign_envelope(statement.to_json(), signers, payload_type=INTOTO_PAYLOAD_TYPE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
