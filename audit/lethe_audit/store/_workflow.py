"""Tables of the deletion workflow: registered models, requests, subject keys, applies.

They live beside the log's tables (one database, one Alembic history) so that a request's
state change and its log entry commit in the same transaction. None of them is the log: the
log is ``tlog_entries``; these rows may change (a request moves through its states).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lethe_audit.statements import ApplyOutcome, Phase, RequestStatus
from lethe_audit.store._models import Base

__all__ = [
    "TOKEN_ROLES",
    "ApplyRow",
    "ModelRow",
    "ReferenceRow",
    "RequestRow",
    "SubjectKeyRow",
    "TokenRow",
]

#: Roles of API tokens (``lethe serve``): app files and reads its own requests; dpo approves,
#: rejects, shreds; operator applies, erases, exports; auditor reads the log and receipts.
TOKEN_ROLES = ("app", "dpo", "operator", "auditor")

_UTC = DateTime(timezone=True)


def _known(column: str, values: type[Enum], name: str) -> CheckConstraint:
    """``column IN (...)`` over an enum of :mod:`lethe_audit.statements`, in member order (the
    text the migrations wrote: statuses, outcomes and phases have one definition)."""
    listed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


class ModelRow(Base):
    """A deployed model registered with Lethe (paths are relative to the project directory)."""

    __tablename__ = "wf_models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: ``lethe.models.ModelSpec`` as JSON: rebuilds the module tree.
    spec: Mapped[str] = mapped_column(Text, nullable=False)
    #: Class names as a JSON list (index = class id). Never copied into the log.
    class_names: Mapped[str] = mapped_column(Text, nullable=False)
    checkpoint_path: Mapped[str] = mapped_column(Text, nullable=False)
    base_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    eval_data_path: Mapped[str] = mapped_column(Text, nullable=False)
    eval_data_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    train_data_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    train_data_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bank_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    bank_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    base_onnx_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    base_onnx_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The apply whose artefacts are published now (None: the unfiltered model).
    current_apply_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    registered_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    #: The model this one is a newer version of (migration 0005): it inherits its deletions.
    supersedes: Mapped[str | None] = mapped_column(String(100), nullable=True)


class RequestRow(Base):
    """One deletion request. The data subject's identifier is never stored: only an HMAC
    commitment under a per-request key kept in :class:`SubjectKeyRow`."""

    __tablename__ = "wf_requests"
    __table_args__ = (_known("status", RequestStatus, "status_known"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(
        String(100), ForeignKey("wf_models.name"), nullable=False, index=True
    )
    subject_commitment: Mapped[str] = mapped_column(String(80), nullable=False)
    #: Sorted class ids as a JSON list.
    classes: Mapped[str] = mapped_column(Text, nullable=False)
    legal_basis: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    #: Same key -> same request (unique), never a duplicate, even across processes.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    received_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    due_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    applied_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)
    #: The latest apply attempt that covered this request (applied or failed).
    apply_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    shredded_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)
    #: Index of the request's ``request.received`` log entry.
    received_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: When the published model covering this request was *erased* (phase 2); None while it is
    #: only masked. A later phase-1 apply (a new request) clears it until its erase lands.
    erased_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)
    #: The authenticated principal (token name) that filed it, and its role; None when filed
    #: in-process (SDK / CLI on the project itself).
    filed_by: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    filed_by_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: Role of ``decided_by`` when the decision came through an authenticated token.
    decided_by_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    shredded_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    shredded_by_role: Mapped[str | None] = mapped_column(String(16), nullable=True)


class TokenRow(Base):
    """An API token of ``lethe serve``. Only the SHA-256 of the (32 random bytes) token is
    stored; a name is never reused, so a name in the log names one principal forever."""

    __tablename__ = "wf_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('app', 'dpo', 'operator', 'auditor')", name="role_known"),
    )

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)


class SubjectKeyRow(Base):
    """The per-request HMAC key of a subject commitment; deleting it is crypto-shredding."""

    __tablename__ = "wf_subject_keys"

    request_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("wf_requests.id"), primary_key=True
    )
    key: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)


class ApplyRow(Base):
    """One apply attempt: what it covered, what it measured, where it was logged."""

    __tablename__ = "wf_applies"
    __table_args__ = (
        _known("outcome", ApplyOutcome, "outcome_known"),
        _known("phase", Phase, "phase_known"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(
        String(100), ForeignKey("wf_models.name"), nullable=False, index=True
    )
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    finished_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    #: JSON lists: the union of forgotten class ids; the request ids covered.
    forgotten_classes: Mapped[str] = mapped_column(Text, nullable=False)
    request_ids: Mapped[str] = mapped_column(Text, nullable=False)
    folded_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    bank_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    onnx_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    onnx_content_hash: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: Relative paths of the published artefacts (None for a failed attempt).
    artifact_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[str] = mapped_column(Text, nullable=False)
    verdict: Mapped[str] = mapped_column(Text, nullable=False)
    log_index: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: ``mask`` (phase 1: filters folded into the registered model) or ``erase`` (phase 2).
    phase: Mapped[str] = mapped_column(
        String(8), nullable=False, default="mask", server_default="mask"
    )
    #: For an erase: the id of the phase-1 apply whose folded model it started from.
    starts_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The authenticated principal (token name, role) that ran it; None when run in-process.
    applied_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    applied_by_role: Mapped[str | None] = mapped_column(String(16), nullable=True)


class ReferenceRow(Base):
    """A depth reference: the model retrained from scratch without ``classes`` (one held-out
    class, once per model), with its relearn time and probe AUC on those classes. Erase
    attestations name it (``lethe_audit.metrics.ReferenceInfo``)."""

    __tablename__ = "wf_references"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(
        String(100), ForeignKey("wf_models.name"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    #: Held-out class ids as a JSON list; ``reason`` says why they were chosen.
    classes: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    checkpoint_path: Mapped[str] = mapped_column(Text, nullable=False)
    #: ``lethe.model_digest`` of the reference model (hex).
    model_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    #: Canonical JSON of the training recipe (``lethe.models.fit`` arguments).
    recipe: Mapped[str] = mapped_column(Text, nullable=False)
    seconds: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    #: Relearn steps per seed (JSON list), their median, the seeds, the probe AUC.
    relearn_runs: Mapped[str] = mapped_column(Text, nullable=False)
    relearn_steps: Mapped[float] = mapped_column(Float, nullable=False)
    seeds: Mapped[str] = mapped_column(Text, nullable=False)
    probe_auc: Mapped[float | None] = mapped_column(Float, nullable=True)
    log_index: Mapped[int] = mapped_column(BigInteger, nullable=False)
