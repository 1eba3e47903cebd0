"""The domain vocabulary, one set of string enums for writers (``lethe``) and readers (verifier,
reports, CLIs) alike: request statuses, lifecycle event types, apply outcomes and phases.

Each member *is* its string (``RequestStatus.APPLIED == "applied"``), so what is stored in the
database and the log is unchanged; compare and build with the members, never with literals.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """:class:`enum.StrEnum` for Python 3.10: members are (and print as) their values."""

        def __str__(self) -> str:
            return str(self.value)


__all__ = ["ApplyOutcome", "EventType", "Phase", "RequestStatus", "StrEnum"]


class RequestStatus(StrEnum):
    """Where a deletion request stands (docs/workflow.md has the state machine).

    ``received`` -> ``approved`` | ``rejected``; ``approved`` -> ``applied`` | ``failed``
    (``failed`` may be approved again); ``applied`` -> ``superseded`` when a later apply covers
    it (the later apply still forgets its classes)."""

    RECEIVED = "received"
    APPROVED = "approved"
    REJECTED = "rejected"
    APPLIED = "applied"
    FAILED = "failed"
    SUPERSEDED = "superseded"

    @property
    def is_open(self) -> bool:
        """Still waiting for a decision or an apply (it can become overdue)."""
        return self in _OPEN

    @property
    def is_done(self) -> bool:
        """Applied, or applied and covered by a later apply (a receipt exists)."""
        return self in _DONE


_OPEN = frozenset({RequestStatus.RECEIVED, RequestStatus.APPROVED, RequestStatus.FAILED})
_DONE = frozenset({RequestStatus.APPLIED, RequestStatus.SUPERSEDED})


class EventType(StrEnum):
    """The lifecycle events (``urn:lethe:event:v1``) Lethe itself writes. Readers accept any
    name matching the event pattern (an older or newer writer may add some)."""

    REQUEST_RECEIVED = "request.received"
    REQUEST_APPROVED = "request.approved"
    REQUEST_REJECTED = "request.rejected"
    REQUEST_SHREDDED = "request.shredded"
    REQUEST_SUPERSEDED = "request.superseded"
    MODEL_REGISTERED = "model.registered"
    MODEL_BANK_ATTACHED = "model.bank_attached"
    MODEL_REFERENCE = "model.reference"
    MODEL_EXPORTED = "model.exported"
    MODEL_SUPERSEDED = "model.superseded"
    MODEL_ATTESTED_WITHOUT = "model.attested_without"
    APPLY_FIGURES = "apply.figures"
    APPLY_ROLLED_BACK = "apply.rolled_back"
    APPLY_PRINCIPAL = "apply.principal"
    KEY_ROTATED = "key.rotated"
    KEY_REGISTERED = "key.registered"
    LOG_NOTE = "log.note"


class ApplyOutcome(StrEnum):
    """What an apply (or erase) attempt came to: ``applied`` (published) or ``failed`` (the
    policy failed; nothing was published)."""

    APPLIED = "applied"
    FAILED = "failed"


class Phase(StrEnum):
    """Which phase of a deletion an attestation records (DESIGN §3, §5).

    ``MASK``: phase 1, the filter masks the class in intact weights ("masked, not yet erased").
    ``ERASE``: phase 2, the weights were changed so that they no longer hold the class.
    """

    MASK = "mask"
    ERASE = "erase"
