"""Exceptions raised by :mod:`lethe_audit`.

Every error the package raises on purpose derives from :class:`LetheAuditError`, so callers can
catch one root. Messages say what went wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "EvaluationSetError",
    "ForgetClassError",
    "LetheAuditError",
    "MetricsError",
    "ModelInputError",
    "PolicyConfigError",
    "PolicyViolationError",
    "ResultFormatError",
]


class LetheAuditError(Exception):
    """Root of every error raised by :mod:`lethe_audit`."""


# --- verification metrics and policy (lethe_audit.metrics) --------------------------------------
# This block belongs to the metrics module (issue 4); keep other modules' errors outside it.


class MetricsError(LetheAuditError):
    """A verification metric could not be computed or checked."""


class EvaluationSetError(MetricsError, ValueError):
    """An image set is unusable: empty, wrong dtype or shape, non-finite, labels out of range."""


class ForgetClassError(MetricsError, ValueError):
    """The set of forgotten classes is invalid for the evaluation set it is measured on."""


class ModelInputError(MetricsError, ValueError):
    """Images do not match what the model accepts (shape, rank or dtype)."""


class BackendError(MetricsError):
    """A backend cannot provide what was asked (model file, features, random model, outputs)."""


class ResultFormatError(MetricsError, ValueError):
    """A serialised metrics result or verdict is malformed or of an unknown format version."""


class PolicyConfigError(MetricsError, ValueError):
    """A policy configuration has unknown keys, wrong types or out-of-range thresholds."""


class PolicyViolationError(MetricsError):
    """A metrics result fails a policy; ``reasons`` holds one message per failed check."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        self.reasons = reasons
        super().__init__("policy failed: " + "; ".join(reasons))


# --- end of the metrics block --------------------------------------------------------------------
