"""What the log records: in-toto Statements v1 in DSSE envelopes, as RFC 8785 canonical JSON.

Build a predicate (:class:`UnlearningAttestation` or :class:`LifecycleEvent`), turn it into a
:class:`Statement` (``.to_statement()``), sign it into an :class:`Envelope`
(:func:`sign_statement`); the log leaf is ``envelope.to_json()``. The domain vocabulary
(:class:`RequestStatus`, :class:`EventType`, :class:`ApplyOutcome`, :class:`Phase`) lives here
too: writers and readers use the same enums.
"""

from __future__ import annotations

from collections.abc import Sequence

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

__all__ = [
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
    validate_statement(statement)
    return sign_envelope(statement.to_json(), signers, payload_type=INTOTO_PAYLOAD_TYPE)
