"""Request and response bodies of the HTTP API (pydantic: they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lethe_audit.statements import ApplyOutcome, Phase

__all__ = [
    "ApplyBody",
    "ApplyOut",
    "CheckOut",
    "DecisionBody",
    "FileBody",
    "Health",
    "Problem",
    "RejectBody",
    "RequestList",
    "RequestOut",
    "VerdictOut",
]

_KEY = Field(default=None, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileBody(_Strict):
    """A deletion request. The subject identifier travels only here (never in a URL)."""

    subject: str = Field(min_length=1, max_length=1024)
    classes: list[int | str] = Field(min_length=1, max_length=1000)
    #: A short code (``gdpr-17-1-b``), never free text: it is written to the log.
    legal_basis: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9:._-]*$")
    model: str | None = Field(default=None, min_length=1, max_length=100)
    idempotency_key: str | None = _KEY


class DecisionBody(_Strict):
    reason: str | None = Field(default=None, max_length=4000)


class RejectBody(_Strict):
    reason: str = Field(min_length=1, max_length=4000)


class ApplyBody(_Strict):
    #: ``mask`` (phase 1, seconds) or ``both`` (phase 1 then the erase, minutes).
    phase: Literal["mask", "both"] = "mask"


class RequestOut(BaseModel):
    """A deletion request as the API shows it (``subject_key`` only to its filer, on filing)."""

    id: str
    model: str
    classes: list[int]
    class_names: list[str]
    legal_basis: str
    status: str
    overdue: bool
    subject_commitment: str
    received_at: str
    due_at: str
    idempotency_key: str | None = None
    decided_at: str | None = None
    decided_by: str | None = None
    decided_by_role: str | None = None
    decision_reason: str | None = None
    applied_at: str | None = None
    apply_id: str | None = None
    failure_reason: str | None = None
    shredded_at: str | None = None
    shredded_by: str | None = None
    shredded_by_role: str | None = None
    erased_at: str | None = None
    depth: str | None = None
    filed_by: str | None = None
    filed_by_role: str | None = None
    subject_key: str | None = None


class CheckOut(BaseModel):
    """One policy check of a verdict: its measured value against its threshold."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    reason: str | None = None


class VerdictOut(BaseModel):
    """The policy's verdict on an apply's metrics (``lethe_audit.metrics.Verdict``)."""

    passed: bool
    reasons: list[str]
    checks: list[CheckOut]
    thresholds: dict[str, float | int]


class ApplyOut(BaseModel):
    """What an apply or erase did (``ApplyResult.to_dict()`` less the server's file paths).
    ``erase``: the erase that followed in the same call (``phase: both``)."""

    id: str
    model: str
    phase: Phase
    outcome: ApplyOutcome
    passed: bool
    depth: Literal["erased", "masked, not yet erased"] | None = None
    starts_from: str | None = None
    erase: ApplyOut | None = None
    forgotten_classes: list[int]
    request_ids: list[str]
    new_request_ids: list[str]
    folded_digest: str
    #: ``lethe_audit.metrics.MetricsResult.to_dict()``: accuracy, leakage, depth, parity...
    metrics: dict[str, Any]
    verdict: VerdictOut
    log_index: int
    onnx_sha256: str | None = None
    onnx_content_hash: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    applied_by: str | None = None
    applied_by_role: str | None = None


class RequestList(BaseModel):
    requests: list[RequestOut]


class Health(BaseModel):
    """Liveness. ``log_size`` (how many entries the log holds, i.e. the filing volume) only
    for a caller with a valid token of any role."""

    status: Literal["ok"]
    version: str
    log_size: int | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
