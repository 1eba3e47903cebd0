"""Every exception `lethe_audit` raises.

One root, :class:`LetheAuditError`; a flat list of domain subclasses below it. Verification
failures carry the entry index and/or checkpoint size at fault (``None`` where it does not
apply), so tools can point at the exact place a log was tampered with.

The CLI maps these classes to exit codes in one place (``lethe_audit.cli.common.EXIT_CODES``).
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BundleError",
    "BundleWriteError",
    "CheckpointError",
    "ConsistencyProofError",
    "EntryError",
    "EvaluationSetError",
    "ForgetClassError",
    "FormatError",
    "InclusionProofError",
    "KeyFileError",
    "LetheAuditError",
    "LogStateError",
    "MetricsError",
    "MissingExtraError",
    "ModelInputError",
    "ModelVerificationError",
    "NothingToCheckError",
    "PolicyConfigError",
    "PolicyError",
    "PolicyViolationError",
    "ProofError",
    "ReceiptError",
    "ReportError",
    "ResultFormatError",
    "SchemaError",
    "SignatureError",
    "StatementError",
    "StoreError",
    "VerificationError",
]


class LetheAuditError(Exception):
    """Root of every error raised by `lethe_audit`."""


# --- malformed input ------------------------------------------------------------------------


class FormatError(LetheAuditError):
    """Bytes that do not follow their format: a signed note, checkpoint, vkey, DSSE envelope,
    tlog-proof, receipt or bundle file that cannot even be parsed."""


class StatementError(FormatError):
    """An in-toto statement or Lethe predicate that is not well-formed.

    ``field`` names the offending field as a dotted path (e.g. ``predicate.requests[0].classes``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- verification ---------------------------------------------------------------------------


class VerificationError(LetheAuditError):
    """Something did not verify. ``index`` is the log entry at fault and ``size`` the checkpoint
    (tree size) at fault, each ``None`` where it does not apply."""

    def __init__(self, message: str, *, index: int | None = None, size: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.size = size


class ProofError(VerificationError):
    """A Merkle proof does not verify."""


class InclusionProofError(ProofError):
    """An inclusion proof for entry ``index`` in the tree of ``size`` leaves does not verify."""


class ConsistencyProofError(ProofError):
    """A consistency proof between tree sizes ``size1`` and ``size2`` does not verify.

    ``size`` (the checkpoint at fault) is the newer one, ``size2``."""

    def __init__(self, message: str, *, size1: int, size2: int) -> None:
        super().__init__(message, size=size2)
        self.size1 = size1
        self.size2 = size2


class SignatureError(VerificationError):
    """A signature (signed note or DSSE envelope) is invalid, or no trusted key signed."""


class CheckpointError(VerificationError):
    """A checkpoint is wrong: unknown origin, sizes out of order, or a root that does not match
    the entries (the log was rewritten or forked)."""


class EntryError(VerificationError):
    """A log entry is wrong: not a canonical DSSE envelope, or its statement is not
    well-formed."""


class BundleError(VerificationError):
    """An auditor bundle is incomplete or inconsistent (missing files, wrong counts or
    digests)."""


class ReceiptError(VerificationError):
    """A deletion receipt does not verify (envelope, proof and checkpoint do not agree)."""


class PolicyError(VerificationError):
    """A policy failed: the one policy-failure error of Lethe and lethe-audit.

    Raised when a verification policy rejects an otherwise valid log or receipt
    (:mod:`lethe_audit.verify`), when a metrics result misses a threshold
    (:meth:`lethe_audit.metrics.Policy.check`), and by ``lethe`` when an exported model fails
    the project's policy. ``policy`` names the policy, ``reasons`` holds one message per failed
    check (empty where the message says it all), ``index``/``size`` point at the log entry or
    checkpoint at fault where there is one."""

    def __init__(
        self,
        message: str,
        *,
        policy: str = "policy",
        reasons: tuple[str, ...] = (),
        index: int | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__(message, index=index, size=size)
        self.policy = policy
        self.reasons = tuple(reasons)


class NothingToCheckError(PolicyError):
    """A policy found nothing to check (e.g. a metric or deadline policy on a receipt of a
    lifecycle event or of a failed apply): nothing checked is not a pass."""


# --- storage and keys -----------------------------------------------------------------------


class StoreError(LetheAuditError):
    """The log database cannot be used (connection, constraint or transaction failure)."""


class SchemaError(StoreError):
    """The database schema is not at the head migration. Run ``lethe-audit db upgrade URL``."""


class LogStateError(StoreError):
    """The stored log is not in the state the call needs (not initialised, already
    initialised, a key not registered, an index out of range)."""


class BundleWriteError(LetheAuditError):
    """A bundle or receipt cannot be written (target exists, unreadable attachment, I/O).

    (Formerly ``ExportError``, a name ``lethe`` uses for ONNX export failures: one name, one
    meaning. ``ExportError`` stays importable here as an alias of this class.)"""


#: Old name of :class:`BundleWriteError` (not in ``__all__``: ``lethe.errors.ExportError`` is
#: the ONNX export error).
ExportError = BundleWriteError


class KeyFileError(LetheAuditError):
    """A key file or keyring cannot be read, written or decrypted."""


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


#: Deprecated alias: the former name of a metrics-policy failure, now :class:`PolicyError`
#: itself (one class, one exit code): catch ``PolicyError``. Kept for one release; nothing in
#: lethe_audit or lethe uses this name.
PolicyViolationError = PolicyError


# --- end of the metrics block --------------------------------------------------------------------


# --- exported ONNX models (lethe_audit.model) -------------------------------------------------


class ModelVerificationError(VerificationError):
    """A signed ONNX model does not verify. ``what`` names the part at fault: ``"signature"``
    (missing, malformed or by no trusted key), ``"content"`` (graph or weights changed),
    ``"metadata:<key>"`` (a metadata entry changed, added or removed) or ``"receipt"`` (the
    receipt's attestation is not about this model)."""

    def __init__(
        self, message: str, *, what: str, index: int | None = None, size: int | None = None
    ) -> None:
        super().__init__(message, index=index, size=size)
        self.what = what


# --- auditor reports (lethe_audit.report) -----------------------------------------------------


class ReportError(LetheAuditError):
    """A report or receipt page cannot be made from what was given: unreadable evaluation data,
    a request that is not in the receipt, an output file that cannot be written. (A bundle that
    fails verification still yields a report; its error is the verifier's own.)"""


# --- installation (optional extras of the lethe-audit distribution) --------------------------


class MissingExtraError(LetheAuditError, ImportError):
    """A feature needs a package of an optional extra that is not installed. ``extra`` names
    the extra (``report``, ``remeasure``, ``store``); the message gives the install line."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {module!r} package of the [{extra}] extra, which is not "
            f"installed: pip install 'lethe-audit[{extra}]'"
        )
        self.feature = feature
        self.extra = extra
        self.module = module
