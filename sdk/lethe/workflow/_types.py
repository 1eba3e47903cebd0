"""The workflow's value objects, as apps and admins see them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from lethe.workflow._time import iso, utc
from lethe_audit.statements import ApplyOutcome, Phase, RequestStatus

if TYPE_CHECKING:  # rows are only read here: importing this module loads no SQLAlchemy
    from lethe_audit.metrics import MetricsResult, ReferenceInfo, Verdict
    from lethe_audit.store import ApplyRow, ModelRow, ReferenceRow, RequestRow

__all__ = [
    "MASKED_NOT_ERASED",
    "ApplyResult",
    "CalibrationSource",
    "DeletionRequest",
    "DepthReference",
    "EvalDataExport",
    "LogEntry",
    "ModelExport",
    "ModelInfo",
]

#: What every user-visible status of a phase-1-only deletion says (DESIGN §4).
MASKED_NOT_ERASED = "masked, not yet erased"
#: Which stored split calibrated an int8 export: ``train``, or ``eval`` for a model registered
#: without training data (then the images that calibrated it also score it).
CalibrationSource = Literal["train", "eval"]


@dataclass(frozen=True)
class DeletionRequest:
    """A deletion request. ``subject_key`` is the per-request HMAC key (hex) that lets the data
    subject check the commitment in their receipt: set only on what :meth:`Lethe.file` returns
    to the filer (``None`` from ``get``/``list``/decisions, and once shredded)."""

    id: str
    model: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    legal_basis: str
    status: RequestStatus
    subject_commitment: str
    received_at: datetime
    due_at: datetime
    idempotency_key: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    applied_at: datetime | None = None
    apply_id: str | None = None
    failure_reason: str | None = None
    shredded_at: datetime | None = None
    subject_key: str | None = field(default=None, repr=False)
    erased_at: datetime | None = None
    #: The authenticated principals (token name, role) that filed / decided / shredded it;
    #: None for in-process callers (see :class:`lethe.workflow.Principal`).
    filed_by: str | None = None
    filed_by_role: str | None = None
    decided_by_role: str | None = None
    shredded_by: str | None = None
    shredded_by_role: str | None = None

    @property
    def depth(self) -> str | None:
        """``"erased"`` once the published model covering it was erased (phase 2),
        ``"masked, not yet erased"`` while only the mask (phase 1) is published; None before
        it is applied."""
        if not self.status.is_done:
            return None
        return "erased" if self.erased_at is not None else MASKED_NOT_ERASED

    @property
    def overdue(self) -> bool:
        """Still open (not applied, rejected or superseded) after its due date."""
        return self.status.is_open and datetime.now(timezone.utc) > self.due_at

    @property
    def shredded(self) -> bool:
        return self.shredded_at is not None

    @classmethod
    def from_row(
        cls, row: RequestRow, class_names: tuple[str, ...], subject_key: bytes | None
    ) -> DeletionRequest:
        classes = tuple(json.loads(row.classes))
        return cls(
            id=row.id,
            model=row.model_name,
            classes=classes,
            class_names=tuple(class_names[c] for c in classes),
            legal_basis=row.legal_basis,
            status=RequestStatus(row.status),
            subject_commitment=row.subject_commitment,
            received_at=utc(row.received_at),
            due_at=utc(row.due_at),
            idempotency_key=row.idempotency_key,
            decided_at=utc(row.decided_at),
            decided_by=row.decided_by,
            decision_reason=row.decision_reason,
            applied_at=utc(row.applied_at),
            apply_id=row.apply_id,
            failure_reason=row.failure_reason,
            shredded_at=utc(row.shredded_at),
            subject_key=subject_key.hex() if subject_key is not None else None,
            erased_at=utc(row.erased_at),
            filed_by=row.filed_by,
            filed_by_role=row.filed_by_role,
            decided_by_role=row.decided_by_role,
            shredded_by=row.shredded_by,
            shredded_by_role=row.shredded_by_role,
        )

    def to_dict(self, *, include_subject_key: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "legal_basis": self.legal_basis,
            "status": self.status,
            "overdue": self.overdue,
            "subject_commitment": self.subject_commitment,
            "received_at": iso(self.received_at),
            "due_at": iso(self.due_at),
            "idempotency_key": self.idempotency_key,
            "decided_at": iso(self.decided_at),
            "decided_by": self.decided_by,
            "decision_reason": self.decision_reason,
            "applied_at": iso(self.applied_at),
            "apply_id": self.apply_id,
            "failure_reason": self.failure_reason,
            "shredded_at": iso(self.shredded_at),
            "erased_at": iso(self.erased_at),
            "depth": self.depth,
            "filed_by": self.filed_by,
            "filed_by_role": self.filed_by_role,
            "decided_by_role": self.decided_by_role,
            "shredded_by": self.shredded_by,
            "shredded_by_role": self.shredded_by_role,
        }
        if include_subject_key:
            d["subject_key"] = self.subject_key
        return d


@dataclass(frozen=True)
class ModelInfo:
    """A registered model and what is published for it now."""

    name: str
    spec: dict[str, Any]
    class_names: tuple[str, ...]
    base_digest: str
    checkpoint_path: str
    eval_data_digest: str
    train_data_digest: str | None
    bank_digest: str | None
    base_onnx_sha256: str | None
    current_apply_id: str | None
    registered_at: datetime
    #: The older version this model supersedes (it inherits its deletions), or None.
    supersedes: str | None = None

    @classmethod
    def from_row(cls, row: ModelRow) -> ModelInfo:
        return cls(
            name=row.name,
            spec=json.loads(row.spec),
            class_names=tuple(json.loads(row.class_names)),
            base_digest=row.base_digest,
            checkpoint_path=row.checkpoint_path,
            eval_data_digest=row.eval_data_digest,
            train_data_digest=row.train_data_digest,
            bank_digest=row.bank_digest,
            base_onnx_sha256=row.base_onnx_sha256,
            current_apply_id=row.current_apply_id,
            registered_at=utc(row.registered_at),
            supersedes=row.supersedes,
        )

    @property
    def base_accuracy(self) -> float | None:
        """The base accuracy registration measured on the eval data (``None`` for a model
        registered before Lethe measured it)."""
        reg = self.spec.get("registration")
        value = reg.get("base_accuracy") if isinstance(reg, dict) else None
        return float(value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "class_names": list(self.class_names),
            "base_digest": self.base_digest,
            "checkpoint_path": self.checkpoint_path,
            "eval_data_digest": self.eval_data_digest,
            "train_data_digest": self.train_data_digest,
            "bank_digest": self.bank_digest,
            "base_onnx_sha256": self.base_onnx_sha256,
            "current_apply_id": self.current_apply_id,
            "registered_at": iso(self.registered_at),
            "supersedes": self.supersedes,
        }


@dataclass(frozen=True)
class ApplyResult:
    """What one apply did: outcome, classes, metrics, verdict, log entry, artefacts.

    ``metrics`` is the :class:`~lethe_audit.metrics.MetricsResult` the policy judged and
    ``verdict`` its :class:`~lethe_audit.metrics.Verdict` (read back from the database: its
    ``checks`` are not stored, ``passed``, ``reasons`` and ``thresholds`` are). ``outcome`` is an
    :class:`~lethe_audit.statements.ApplyOutcome`, ``phase`` a
    :class:`~lethe_audit.statements.Phase` (string enums: equal to their stored strings)."""

    id: str
    model: str
    outcome: ApplyOutcome
    forgotten_classes: tuple[int, ...]
    request_ids: tuple[str, ...]
    new_request_ids: tuple[str, ...]
    folded_digest: str
    metrics: MetricsResult
    verdict: Verdict
    log_index: int
    checkpoint: str
    onnx_sha256: str | None = None
    onnx_content_hash: str | None = None
    checkpoint_path: str | None = None
    onnx_path: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    phase: Phase = Phase.MASK
    #: For an erase: the phase-1 apply it started from.
    starts_from: str | None = None
    #: The erase phase that followed this apply in the same call (``Lethe.apply(phase="both")``).
    erase: ApplyResult | None = None
    #: The authenticated principal (token name, role) that ran it; None when run in-process.
    applied_by: str | None = None
    applied_by_role: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == ApplyOutcome.APPLIED

    @property
    def depth(self) -> str | None:
        """What is deployed for these requests after this call: ``"erased"`` (a passed erase),
        ``"masked, not yet erased"`` (a passed mask, or a failed erase: the mask stays
        published), None for a failed mask (nothing was published)."""
        final = self.erase if self.erase is not None else self
        if final.phase == Phase.ERASE:
            return "erased" if final.passed else MASKED_NOT_ERASED
        return MASKED_NOT_ERASED if self.passed else None

    @classmethod
    def from_row(
        cls, row: ApplyRow, *, checkpoint: str, paths: tuple[str | None, str | None]
    ) -> ApplyResult:
        from lethe_audit.metrics import MetricsResult, Verdict

        return cls(
            id=row.id,
            model=row.model_name,
            outcome=ApplyOutcome(row.outcome),
            forgotten_classes=tuple(json.loads(row.forgotten_classes)),
            request_ids=tuple(json.loads(row.request_ids)),
            new_request_ids=(),
            folded_digest=row.folded_digest,
            metrics=MetricsResult.from_dict(json.loads(row.metrics)),
            verdict=Verdict.from_dict(json.loads(row.verdict)),
            log_index=row.log_index,
            checkpoint=checkpoint,
            onnx_sha256=row.onnx_sha256,
            onnx_content_hash=row.onnx_content_hash,
            checkpoint_path=paths[0],
            onnx_path=paths[1],
            started_at=utc(row.started_at),
            finished_at=utc(row.finished_at),
            phase=Phase(row.phase),
            starts_from=row.starts_from,
            applied_by=row.applied_by,
            applied_by_role=row.applied_by_role,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "phase": self.phase,
            "starts_from": self.starts_from,
            "depth": self.depth,
            "erase": self.erase.to_dict() if self.erase is not None else None,
            "outcome": self.outcome,
            "passed": self.passed,
            "forgotten_classes": list(self.forgotten_classes),
            "request_ids": list(self.request_ids),
            "new_request_ids": list(self.new_request_ids),
            "folded_digest": self.folded_digest,
            "metrics": self.metrics.to_dict(),
            "verdict": self.verdict.to_dict(),
            "log_index": self.log_index,
            "onnx_sha256": self.onnx_sha256,
            "onnx_content_hash": self.onnx_content_hash,
            "checkpoint_path": self.checkpoint_path,
            "onnx_path": self.onnx_path,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "applied_by": self.applied_by,
            "applied_by_role": self.applied_by_role,
        }


@dataclass(frozen=True)
class DepthReference:
    """A model's depth reference (``Lethe.train_reference``): the model retrained from scratch
    without ``classes``; ``info`` is the :class:`lethe_audit.metrics.ReferenceInfo` every
    erase attestation carries, ``reason`` why those classes were held out."""

    id: str
    model: str
    reason: str
    checkpoint_path: str
    log_index: int
    info: ReferenceInfo

    @classmethod
    def from_row(
        cls, row: ReferenceRow, info: ReferenceInfo, checkpoint_path: str
    ) -> DepthReference:
        return cls(
            id=row.id,
            model=row.model_name,
            reason=row.reason,
            checkpoint_path=checkpoint_path,
            log_index=row.log_index,
            info=info,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "reason": self.reason,
            "checkpoint_path": self.checkpoint_path,
            "log_index": self.log_index,
            **self.info.to_dict(),
        }


@dataclass(frozen=True)
class ModelExport:
    """What :meth:`Lethe.export_onnx` wrote: the signed ONNX file of the published apply.

    ``variant`` is ``fp32`` (the published file, copied after its signature verified) or
    ``int8`` (quantized, measured and re-signed); int8 exports carry their ``content_hash``,
    the forget/retain ``metrics`` summary, both file sizes and ``attestation_index``, the log
    index of the int8 file's own variant attestation (its receipt:
    ``lt.log.receipt(attestation_index)``, or ``lethe-audit log receipt INDEX``).
    ``openssf_signature`` is the OpenSSF Model Signing signature written beside the file
    (``<file>.sig``; None only for an export made without one). ``calibration_source`` (int8
    only): ``"train"``, or ``"eval"`` when the model has no training data and its evaluation
    images both calibrated and scored the int8 copy (a warning is logged; the variant
    attestation records it too)."""

    path: str
    sha256: str
    variant: str
    apply_id: str
    content_hash: str | None = None
    metrics: dict[str, Any] | None = None
    fp32_bytes: int | None = None
    int8_bytes: int | None = None
    openssf_signature: str | None = None
    attestation_index: int | None = None
    calibration_source: CalibrationSource | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "variant": self.variant,
            "apply_id": self.apply_id,
            "openssf_signature": self.openssf_signature,
        }
        if self.variant != "fp32":
            d.update(
                content_hash=self.content_hash,
                metrics=self.metrics,
                fp32_bytes=self.fp32_bytes,
                int8_bytes=self.int8_bytes,
                attestation_index=self.attestation_index,
                calibration_source=self.calibration_source,
            )
        return d


@dataclass(frozen=True)
class EvalDataExport:
    """What :meth:`Lethe.export_eval_data` wrote: the auditor's evaluation set (``.npz``)."""

    path: str
    samples: int
    dataset_digest: str
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "samples": self.samples,
            "dataset_digest": self.dataset_digest,
            "input_shape": list(self.input_shape),
        }


@dataclass(frozen=True)
class LogEntry:
    """One log entry described for admins (:meth:`Lethe.log_entries`): its index, predicate
    type, ``kind`` (the event type, or ``unlearning.<outcome>``), a one-line summary of ids
    and classes (the log holds no personal data) and its time."""

    index: int
    predicate_type: str
    kind: str
    summary: str
    at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "predicate_type": self.predicate_type,
            "kind": self.kind,
            "summary": self.summary,
            "at": self.at,
        }
