"""Exceptions raised by :mod:`lethe`.

Every error Lethe raises on purpose derives from :class:`LetheError`, so a caller (or the
CLI's single error map) can catch the whole family at once and still tell the domains apart;
the one exception is a failed policy, :class:`PolicyError` (re-exported from
:mod:`lethe_audit.errors`), the same class auditors' tools raise.
Messages say what went wrong *and* what to do about it.
"""

from __future__ import annotations

from lethe_audit.errors import PolicyError

__all__ = [
    "AlreadyErasedError",
    "ApplyError",
    "ApplyLockLostError",
    "BankClassCountError",
    "BankFormatError",
    "BankIntegrityError",
    "BankMismatchError",
    "BankModelMismatchError",
    "BankShapeError",
    "BaseAccuracyError",
    "CalibrationError",
    "CheckpointFormatError",
    "ClassMismatchError",
    "ClassSelectionError",
    "ConfigError",
    "DataError",
    "ExportError",
    "ExportInputError",
    "ExportMappingError",
    "FilterError",
    "IdempotencyConflictError",
    "InconsistentStateError",
    "InheritedDeletionsPendingError",
    "InsufficientSpaceError",
    "InvalidTransitionError",
    "LetheError",
    "MissingReferenceError",
    "ModelError",
    "ModelRegistrationError",
    "NonFiniteError",
    "NothingToApplyError",
    "OnnxCheckError",
    "ParityError",
    "PatchError",
    "PolicyError",
    "PolicyFailedError",
    "PreprocessingError",
    "ProjectError",
    "PublishedLinkError",
    "QuantizationError",
    "ReceiptUnavailableError",
    "ReferenceTrainingError",
    "RequestError",
    "RollbackError",
    "SampleLevelRequestError",
    "SeparationOfDutiesError",
    "TargetSelectionError",
    "TrainedWithoutRefusedError",
    "TrainingError",
    "UnattachedBankError",
    "UnknownClassError",
    "UnknownModelError",
    "UnknownRequestError",
    "WorkflowError",
]


class LetheError(Exception):
    """Root of every error raised on purpose by :mod:`lethe`."""


class ConfigError(LetheError, ValueError):
    """An option or configuration value is invalid."""


class DataError(LetheError):
    """A dataset could not be read, or its contents do not fit what was asked."""


class ModelError(LetheError):
    """A model could not be built, loaded or used as asked."""


class FilterError(LetheError):
    """Base class of weight-filter errors (targets, banks, training, folding)."""


class TargetSelectionError(FilterError):
    """The selected filter targets are empty, unknown or cannot be filtered safely."""


class ClassSelectionError(FilterError, ValueError):
    """A forget set is empty or names a class the filter bank does not have."""


class NonFiniteError(FilterError):
    """A filter value or a folded weight is NaN or infinite."""


class TrainingError(FilterError):
    """Filter training cannot start or resume as configured."""


class BankFormatError(FilterError):
    """A file is not a Lethe filter bank, or uses a format version this Lethe cannot read."""


class BankMismatchError(FilterError):
    """A filter bank does not belong to the model (or file) it was used with."""


class BankModelMismatchError(BankMismatchError):
    """The bank was trained for another model (its base-model digest differs)."""


class BankShapeError(BankMismatchError):
    """The bank's target layers or channel counts differ from the model's."""


class BankClassCountError(BankShapeError):
    """The bank has a different number of classes than the model's classifier."""


class BankIntegrityError(BankMismatchError):
    """The bank's stored digest does not match its contents (corrupted or tampered file)."""


class ExportError(LetheError):
    """Base class of ONNX export errors (export, patching, checking, signing, quantization)."""


class ExportMappingError(ExportError):
    """A conv/linear weight or bias is not an ONNX initializer under its torch name with its
    exact value, so the exported graph cannot be patched by name."""


class PatchError(ExportError, ValueError):
    """Scales passed to :func:`lethe.export.patch` do not fit the base export."""


class OnnxCheckError(ExportError):
    """The ONNX model fails ``onnx.checker`` (full check) or cannot be loaded by onnxruntime."""


class ParityError(ExportError):
    """The ONNX model's logits differ from the torch model's by more than the threshold."""

    def __init__(self, message: str, *, max_abs_diff: float, threshold: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.threshold = threshold


class ExportInputError(ExportError, ValueError):
    """Images given for a parity check or calibration have the wrong type, dtype, shape or
    values (they must be float32 ``[N, C, H, W]`` matching the model input)."""


class CalibrationError(ExportInputError):
    """Calibration images for quantization have the wrong type, dtype, shape or values."""


class QuantizationError(ExportError):
    """onnxruntime could not quantize the model."""


class WorkflowError(LetheError):
    """Base class of deletion-workflow errors (projects, models, requests, applies)."""


class ProjectError(WorkflowError):
    """The project directory or database is missing, not initialised, or already exists."""


class UnknownModelError(WorkflowError, LookupError):
    """No model of that name is registered."""


class ModelRegistrationError(WorkflowError):
    """A model, its data or its filter bank cannot be registered as asked."""


class RequestError(WorkflowError, ValueError):
    """A deletion request is malformed (subject, classes, legal basis, key)."""


class UnknownClassError(RequestError, ClassSelectionError):
    """A class name or id the model does not have: in a request, a depth reference's held-out
    class or a filter bank's selection (:func:`lethe.classes.resolve_class_ids`, the one rule
    set; also a :class:`ClassSelectionError`, so filter-bank callers catch it as before)."""


class SampleLevelRequestError(RequestError):
    """A request asks to delete individual samples; Lethe unlearns whole classes."""


class UnknownRequestError(WorkflowError, LookupError):
    """No request with that id exists."""


class InvalidTransitionError(WorkflowError):
    """The request is not in a state that allows this action (e.g. approving a rejected one)."""


class IdempotencyConflictError(WorkflowError):
    """An idempotency key was reused for a request with different contents."""


class ApplyError(WorkflowError):
    """An apply cannot run (no filter bank, no data, artefacts missing)."""


class NothingToApplyError(ApplyError):
    """No approved request waits for this model."""


#: Deprecated alias of :class:`lethe_audit.errors.PolicyError`, the one policy-failure error (an
#: apply's, an int8 export's, the auditor's tools'; ``policy``, ``reasons``): catch
#: ``PolicyError``. Kept for one release; nothing in Lethe uses this name.
PolicyFailedError = PolicyError


class ReceiptUnavailableError(WorkflowError):
    """The request has no applied deletion to prove yet."""


class MissingReferenceError(ApplyError):
    """The erase phase needs the model's depth reference, and none was made yet."""


class AlreadyErasedError(NothingToApplyError):
    """The published model is already the erased one: erasing again is a no-op."""


class ReferenceTrainingError(WorkflowError):
    """The depth reference cannot be made (no training data, a held-out class without samples,
    bad recipe; an unknown class is :class:`UnknownClassError`)."""


class ApplyLockLostError(ApplyError):
    """The apply lost its lock (the database ended the session holding it) before it
    committed: nothing was committed or published. Run the apply again."""


class InsufficientSpaceError(WorkflowError):
    """A disk filled up (or lacks the space) for files Lethe writes; what this call wrote is
    removed again. The message names the path and the space needed."""

    def __init__(self, message: str, *, path: str = "", needed: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.needed = needed


class UnattachedBankError(WorkflowError):
    """The model's filter bank file is not the bank the log attached (its digest differs), e.g.
    after a crash during an attach of an older version, or an edit by hand."""


class PublishedLinkError(ApplyError):
    """The model's ``published`` entry is not the symlink Lethe keeps there and cannot be
    repaired automatically."""


class InconsistentStateError(WorkflowError):
    """The project's database contradicts itself (a row another row names is missing), e.g.
    after a partial restore or an edit by hand. Restore the database from a backup."""


class SeparationOfDutiesError(WorkflowError):
    """The principal that filed a request may not also approve it (four-eyes rule of
    ``lethe serve``): another token with the ``dpo`` role must decide."""


# --- bring-your-own models (registration checks; exit codes 170-179) --------------------------


class CheckpointFormatError(ModelError):
    """A weight file is not in a format Lethe reads safely (or holds no state dict)."""


class PreprocessingError(ModelRegistrationError):
    """The model's preprocessing is unknown, or the values given contradict the recorded ones."""


class BaseAccuracyError(ModelRegistrationError):
    """The base model's measured accuracy is near chance, or far below the expected one."""


class ClassMismatchError(ModelRegistrationError):
    """The data's class list and the checkpoint's head (or the class names given) disagree."""


class InheritedDeletionsPendingError(ApplyError):
    """A model version still has deletions of the model it supersedes that are neither applied
    to it nor attested absent: it cannot be published (erased, exported) until they are."""


class TrainedWithoutRefusedError(WorkflowError):
    """An attestation that a model version was trained without some classes was refused: the
    model still recognises them (their forget accuracy exceeds the policy); nothing is logged."""


class RollbackError(ApplyError):
    """A rollback target is not an earlier successful apply of the model, or forgets less than
    what is published now."""
