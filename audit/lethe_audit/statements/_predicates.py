"""Lethe's predicate types, as typed dataclasses with strict validators: the unlearning
attestation (one per apply), the variant attestation (an int8 copy of an applied model, one per
export) and lifecycle events.

None carries personal data: requests appear only by random id and a keyed HMAC commitment
of the data subject's identifier; classes appear only as integer ids (class *names* may be
people's names).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

from lethe_audit.errors import StatementError
from lethe_audit.statements._canonical import canonical_json
from lethe_audit.statements._intoto import Statement, Subject
from lethe_audit.statements._vocab import ApplyOutcome, Phase

UNLEARNING_V1 = "urn:lethe:attestation:unlearning:v1"
EVENT_V1 = "urn:lethe:event:v1"
VARIANT_V1 = "urn:lethe:attestation:variant:v1"

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_COMMITMENT = re.compile(r"hmac-sha256:[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VARIANT = re.compile(r"[a-z][a-z0-9]{0,31}")
#: Where the images that calibrated a variant came from (``quantization.calibration_source``,
#: optional: variants logged before it was recorded lack it): the model's training data, or its
#: evaluation data (the images that then also scored the variant).
CALIBRATION_SOURCES = ("train", "eval")
_EVENT = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


# --- helpers --------------------------------------------------------------------------------


def rfc3339(when: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC (``...Z``), microseconds only when non-zero."""
    if when.tzinfo is None:
        raise ValueError("rfc3339 needs a timezone-aware datetime")
    when = when.astimezone(timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if when.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return when.strftime(fmt)


def parse_rfc3339(text: str) -> datetime:
    """Parse the RFC 3339 UTC form :func:`rfc3339` writes."""
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 UTC time like 2024-05-01T12:00:00Z")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)


def hmac_commitment(key: bytes, identifier: str) -> str:
    """``hmac-sha256:<hex>`` of a data subject's identifier under a secret key.

    Destroying the key ("crypto-shredding") leaves the commitment in the log meaningless.
    """
    if len(key) < 16:
        raise ValueError("the commitment key must be at least 16 random bytes")
    mac = hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{mac}"


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes (the digest form predicates use)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


#: Free-form JSON in a predicate (metrics, method config, event details) nests at most this deep.
MAX_JSON_DEPTH = 64


class _Check:
    """Validation helpers that name the field at fault."""

    @staticmethod
    def obj(value: Any, path: str, keys: set[str], optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        if not isinstance(value, Mapping):
            raise StatementError(f"{path} must be an object", field=path)
        missing = keys - set(value)
        extra = set(value) - keys - optional
        if missing:
            raise StatementError(f"{path} is missing {sorted(missing)}", field=path)
        if extra:
            raise StatementError(f"{path} has unknown fields {sorted(extra)}", field=path)

    @staticmethod
    def text(
        value: Any, path: str, *, max_len: int = 200, pattern: re.Pattern[str] | None = None
    ) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len or "\n" in value:
            raise StatementError(
                f"{path} must be a non-empty single-line string of at most {max_len} chars",
                field=path,
            )
        if pattern is not None and not pattern.fullmatch(value):
            raise StatementError(f"{path} {value!r} does not match {pattern.pattern}", field=path)
        return value

    @staticmethod
    def time(value: Any, path: str) -> datetime:
        try:
            return parse_rfc3339(value)
        except ValueError as e:
            raise StatementError(f"{path}: {e}", field=path) from None

    @staticmethod
    def classes(value: Any, path: str, *, allow_empty: bool = False) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or (not value and not allow_empty):
            raise StatementError(f"{path} must be a non-empty list of class ids", field=path)
        for c in value:
            if type(c) is not int or c < 0:
                raise StatementError(f"{path} holds {c!r}: class ids are ints >= 0", field=path)
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise StatementError(f"{path} must be sorted with no repeats", field=path)
        return tuple(value)

    @staticmethod
    def json_value(value: Any, path: str, depth: int = 0) -> None:
        if value is None or isinstance(value, (str, bool, int)):
            return
        if depth >= MAX_JSON_DEPTH:
            raise StatementError(
                f"{'.'.join(path.split('.')[:2])} is nested more than {MAX_JSON_DEPTH} levels deep",
                field=path[:200],
            )
        if isinstance(value, float):
            if not math.isfinite(value):
                raise StatementError(f"{path} must be finite", field=path)
            return
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                _Check.json_value(v, f"{path}[{i}]", depth + 1)
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise StatementError(f"{path} keys must be strings", field=path)
                _Check.json_value(v, f"{path}.{k}", depth + 1)
            return
        raise StatementError(f"{path} holds a {type(value).__name__}, not JSON", field=path)

    @staticmethod
    def number(value: Any, path: str) -> float | int:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise StatementError(f"{path} must be a finite number", field=path)
        return value  # type: ignore[no-any-return]


# --- unlearning attestation -----------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One deletion request as the log sees it: no personal data, only ids and times."""

    id: str
    subject_commitment: str
    classes: tuple[int, ...]
    legal_basis: str
    received_at: str
    due_at: str
    approved_at: str

    def __post_init__(self) -> None:
        _validate_request(self.to_dict(), "request")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject_commitment": self.subject_commitment,
            "classes": list(self.classes),
            "legal_basis": self.legal_basis,
            "received_at": self.received_at,
            "due_at": self.due_at,
            "approved_at": self.approved_at,
        }

    @classmethod
    def from_dict(cls, d: Any) -> RequestRecord:
        _validate_request(d, "request")
        return cls(
            id=d["id"],
            subject_commitment=d["subject_commitment"],
            classes=tuple(d["classes"]),
            legal_basis=d["legal_basis"],
            received_at=d["received_at"],
            due_at=d["due_at"],
            approved_at=d["approved_at"],
        )


def _validate_request(d: Any, path: str) -> None:
    keys = {"id", "subject_commitment", "classes", "legal_basis", "received_at", "due_at"}
    _Check.obj(d, path, keys | {"approved_at"})
    _Check.text(d["id"], f"{path}.id", max_len=128, pattern=_REQUEST_ID)
    _Check.text(d["subject_commitment"], f"{path}.subject_commitment", pattern=_COMMITMENT)
    _Check.classes(d["classes"], f"{path}.classes")
    _Check.text(d["legal_basis"], f"{path}.legal_basis")
    received = _Check.time(d["received_at"], f"{path}.received_at")
    due = _Check.time(d["due_at"], f"{path}.due_at")
    approved = _Check.time(d["approved_at"], f"{path}.approved_at")
    if due < received:
        raise StatementError(f"{path}.due_at is before received_at", field=f"{path}.due_at")
    if approved < received:
        raise StatementError(
            f"{path}.approved_at is before received_at", field=f"{path}.approved_at"
        )


@dataclass(frozen=True)
class ModelRef:
    """The model an apply changed: base digest and (when folding happened) folded digest."""

    name: str
    base_digest: str
    folded_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_digest": self.base_digest,
            "folded_digest": self.folded_digest,
        }


@dataclass(frozen=True)
class MethodRef:
    """The unlearning method: name, version and its (JSON) config."""

    name: str
    version: str
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": dict(self.config)}


@dataclass(frozen=True)
class PolicyVerdict:
    """The metric policy's verdict as a signed statement records it: thresholds used,
    pass/fail, and what failed.

    Not a second verdict type: it is the serialised form of
    :class:`lethe_audit.metrics.Verdict`, made by ``Verdict.to_policy_verdict()`` (its
    ``failures`` are the verdict's ``reasons``) and read back by :func:`parse_predicate`. This
    module stays free of the metrics package, so the shape is declared here."""

    thresholds: Mapping[str, float | int] = field(hash=False)
    passed: bool
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": dict(self.thresholds),
            "passed": self.passed,
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class OnnxRef:
    """The exported ONNX file: ``sha256`` of its bytes (hex) and its signed content hash."""

    sha256: str
    content_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "content_hash": self.content_hash}


@dataclass(frozen=True)
class UnlearningAttestation:
    """Predicate ``urn:lethe:attestation:unlearning:v1``: one per apply attempt.

    ``requests`` are the requests this apply covers; ``forgotten_classes`` is the union of
    classes the deployed model now forgets (all applied requests), so it contains every class
    of ``requests``. ``applied`` requires a passed policy.

    ``phase`` says which phase of the deletion this apply is: :attr:`Phase.MASK` (phase 1, the
    filter masks the classes; a predicate without ``phase`` reads as mask) or
    :attr:`Phase.ERASE` (phase 2). An erase attestation names the phase-1 apply it starts from
    (``starts_from``: ``{"apply_id", "model_sha256"}``, the hex SHA-256 of that apply's folded
    model) and what the erase did (``erase``: ``method``, ``config``, ``seconds``,
    ``retain_samples``, plus any method-specific JSON extras); its depth metrics and their
    reference's provenance are in ``metrics["depth"]``. Mask attestations carry neither.
    ``preprocessing`` (optional) records how the model is fed (input size, mean/std, ...).
    """

    outcome: ApplyOutcome | Literal["applied", "failed"]
    requests: tuple[RequestRecord, ...]
    forgotten_classes: tuple[int, ...]
    applied_at: str
    model: ModelRef
    filter_bank_digest: str
    method: MethodRef
    metrics: Mapping[str, Any] = field(hash=False)
    policy: PolicyVerdict
    onnx: OnnxRef | None = None
    phase: Phase = field(default=Phase.MASK, kw_only=True)
    erase: Mapping[str, Any] | None = field(default=None, kw_only=True, hash=False)
    starts_from: Mapping[str, str] | None = field(default=None, kw_only=True, hash=False)
    preprocessing: Mapping[str, Any] | None = field(default=None, kw_only=True, hash=False)

    PREDICATE_TYPE = UNLEARNING_V1

    def __post_init__(self) -> None:
        if isinstance(self.outcome, ApplyOutcome):  # the plain string goes into the log
            object.__setattr__(self, "outcome", self.outcome.value)
        try:
            object.__setattr__(self, "phase", Phase(self.phase))
        except ValueError:
            raise StatementError(
                f"phase must be 'mask' or 'erase', got {self.phase!r}", field="predicate.phase"
            ) from None
        validate_unlearning(self.to_predicate())

    def to_predicate(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"phase": self.phase.value}
        if self.erase is not None:
            extra["erase"] = dict(self.erase)
        if self.starts_from is not None:
            extra["starts_from"] = dict(self.starts_from)
        if self.preprocessing is not None:
            extra["preprocessing"] = dict(self.preprocessing)
        return {
            **extra,
            "outcome": self.outcome,
            "requests": [r.to_dict() for r in self.requests],
            "forgotten_classes": list(self.forgotten_classes),
            "applied_at": self.applied_at,
            "model": self.model.to_dict(),
            "filter_bank": {"digest": self.filter_bank_digest},
            "method": self.method.to_dict(),
            "metrics": dict(self.metrics),
            "policy": self.policy.to_dict(),
            "onnx": None if self.onnx is None else self.onnx.to_dict(),
        }

    def to_statement(self, *, onnx_name: str | None = None) -> Statement:
        """Subjects: the model (folded digest, or base digest when folding never happened) and
        the ONNX file when there is one (named ``onnx_name``, default ``<model>.onnx``)."""
        digest = self.model.folded_digest or self.model.base_digest
        subjects = [Subject(self.model.name, {"sha256": digest.removeprefix("sha256:")})]
        if self.onnx is not None:
            name = onnx_name or f"{self.model.name}.onnx"
            subjects.append(Subject(name, {"sha256": self.onnx.sha256}))
        return Statement(tuple(subjects), UNLEARNING_V1, self.to_predicate())

    @classmethod
    def from_predicate(cls, p: Mapping[str, Any]) -> UnlearningAttestation:
        validate_unlearning(p)
        onnx = p["onnx"]
        return cls(
            outcome=p["outcome"],
            requests=tuple(RequestRecord.from_dict(r) for r in p["requests"]),
            forgotten_classes=tuple(p["forgotten_classes"]),
            applied_at=p["applied_at"],
            model=ModelRef(**p["model"]),
            filter_bank_digest=p["filter_bank"]["digest"],
            method=MethodRef(**p["method"]),
            metrics=p["metrics"],
            policy=PolicyVerdict(
                thresholds=p["policy"]["thresholds"],
                passed=p["policy"]["passed"],
                failures=tuple(p["policy"]["failures"]),
            ),
            onnx=None if onnx is None else OnnxRef(**onnx),
            phase=Phase(p.get("phase", Phase.MASK.value)),
            erase=p.get("erase"),
            starts_from=p.get("starts_from"),
            preprocessing=p.get("preprocessing"),
        )


def validate_unlearning(p: Any) -> None:
    """Raise StatementError unless ``p`` is a well-formed unlearning predicate."""
    keys = {
        "outcome",
        "requests",
        "forgotten_classes",
        "applied_at",
        "model",
        "filter_bank",
        "method",
        "metrics",
        "policy",
        "onnx",
    }
    _Check.obj(p, "predicate", keys, {"phase", "erase", "starts_from", "preprocessing"})
    _validate_phase(p)
    if p["outcome"] not in ("applied", "failed"):
        raise StatementError(
            "predicate.outcome must be 'applied' or 'failed'", field="predicate.outcome"
        )
    applied = p["outcome"] == "applied"
    _validate_requests(p["requests"], p["forgotten_classes"], applied=applied)
    _Check.time(p["applied_at"], "predicate.applied_at")
    _validate_model(p["model"], applied=applied)
    _Check.obj(p["filter_bank"], "predicate.filter_bank", {"digest"})
    _Check.text(p["filter_bank"]["digest"], "predicate.filter_bank.digest", pattern=_DIGEST)
    _validate_method(p["method"])
    if not isinstance(p["metrics"], Mapping):
        raise StatementError("predicate.metrics must be an object", field="predicate.metrics")
    _Check.json_value(p["metrics"], "predicate.metrics")
    _validate_policy(p["policy"], applied=applied)
    if p["onnx"] is not None:
        _validate_onnx(p["onnx"])
    if "preprocessing" in p:
        if not isinstance(p["preprocessing"], Mapping):
            raise StatementError(
                "predicate.preprocessing must be an object", field="predicate.preprocessing"
            )
        _Check.json_value(p["preprocessing"], "predicate.preprocessing")


def _validate_requests(reqs: Any, forgotten_classes: Any, *, applied: bool) -> None:
    """The request records (non-empty, distinct ids) and the forgotten classes, which cover
    every class of an applied apply's requests."""
    if not isinstance(reqs, (list, tuple)) or not reqs:
        raise StatementError(
            "predicate.requests must be a non-empty list", field="predicate.requests"
        )
    covered: set[int] = set()
    ids = set()
    for i, r in enumerate(reqs):
        _validate_request(r, f"predicate.requests[{i}]")
        covered.update(r["classes"])
        ids.add(r["id"])
    if len(ids) != len(reqs):
        raise StatementError("predicate.requests lists a request twice", field="predicate.requests")
    forgotten = _Check.classes(
        forgotten_classes, "predicate.forgotten_classes", allow_empty=not applied
    )
    if applied and not covered <= set(forgotten):
        raise StatementError(
            f"predicate.forgotten_classes misses classes {sorted(covered - set(forgotten))} "
            "of the applied requests",
            field="predicate.forgotten_classes",
        )


def _validate_model(m: Any, *, applied: bool) -> None:
    _Check.obj(m, "predicate.model", {"name", "base_digest", "folded_digest"})
    _Check.text(m["name"], "predicate.model.name")
    _Check.text(m["base_digest"], "predicate.model.base_digest", pattern=_DIGEST)
    if m["folded_digest"] is None:
        if applied:
            raise StatementError(
                "an applied outcome needs predicate.model.folded_digest",
                field="predicate.model.folded_digest",
            )
    else:
        _Check.text(m["folded_digest"], "predicate.model.folded_digest", pattern=_DIGEST)


def _validate_method(meth: Any) -> None:
    _Check.obj(meth, "predicate.method", {"name", "version", "config"})
    _Check.text(meth["name"], "predicate.method.name")
    _Check.text(meth["version"], "predicate.method.version")
    if not isinstance(meth["config"], Mapping):
        raise StatementError(
            "predicate.method.config must be an object", field="predicate.method.config"
        )
    _Check.json_value(meth["config"], "predicate.method.config")


def _validate_policy(pol: Any, *, applied: bool) -> None:
    """Thresholds, verdict and failures agree; an applied (published) result passed."""
    _Check.obj(pol, "predicate.policy", {"thresholds", "passed", "failures"})
    if not isinstance(pol["thresholds"], Mapping):
        raise StatementError(
            "predicate.policy.thresholds must be an object", field="predicate.policy.thresholds"
        )
    for k, v in pol["thresholds"].items():
        _Check.number(v, f"predicate.policy.thresholds.{k}")
    if type(pol["passed"]) is not bool:
        raise StatementError(
            "predicate.policy.passed must be a boolean", field="predicate.policy.passed"
        )
    fails = pol["failures"]
    if not isinstance(fails, (list, tuple)) or not all(isinstance(f, str) and f for f in fails):
        raise StatementError(
            "predicate.policy.failures must be a list of strings", field="predicate.policy.failures"
        )
    if pol["passed"] == bool(fails):
        raise StatementError(
            "predicate.policy.passed must be true exactly when there are no failures",
            field="predicate.policy.passed",
        )
    if applied and not pol["passed"]:
        raise StatementError(
            "an applied outcome needs a passed policy (a failing apply publishes nothing)",
            field="predicate.policy.passed",
        )


def _validate_onnx(onnx: Any) -> None:
    _Check.obj(onnx, "predicate.onnx", {"sha256", "content_hash"})
    _Check.text(onnx["sha256"], "predicate.onnx.sha256", pattern=_HEX64)
    _Check.text(onnx["content_hash"], "predicate.onnx.content_hash", pattern=_DIGEST)


def _validate_phase(p: Mapping[str, Any]) -> None:
    """``phase`` (absent = mask); erase needs ``erase`` and ``starts_from``, mask has neither."""
    phase = p.get("phase", Phase.MASK.value)
    if phase not in (Phase.MASK.value, Phase.ERASE.value):
        raise StatementError(
            f"predicate.phase must be 'mask' or 'erase', got {phase!r}", field="predicate.phase"
        )
    if phase == Phase.MASK.value:
        for key in ("erase", "starts_from"):
            if key in p:
                raise StatementError(
                    f"predicate.{key} belongs to the erase phase only", field=f"predicate.{key}"
                )
        return
    for key in ("erase", "starts_from"):
        if key not in p:
            raise StatementError(
                f"an erase-phase predicate needs predicate.{key}", field=f"predicate.{key}"
            )
    er = p["erase"]
    if not isinstance(er, Mapping):
        raise StatementError("predicate.erase must be an object", field="predicate.erase")
    missing = {"method", "config", "seconds", "retain_samples"} - set(er)
    if missing:
        raise StatementError(
            f"predicate.erase is missing {sorted(missing)}", field="predicate.erase"
        )
    _Check.json_value(er, "predicate.erase")
    _Check.text(er["method"], "predicate.erase.method")
    if not isinstance(er["config"], Mapping):
        raise StatementError(
            "predicate.erase.config must be an object", field="predicate.erase.config"
        )
    if _Check.number(er["seconds"], "predicate.erase.seconds") < 0:
        raise StatementError(
            "predicate.erase.seconds must be >= 0", field="predicate.erase.seconds"
        )
    n = er["retain_samples"]
    if type(n) is not int or n < 0:
        raise StatementError(
            "predicate.erase.retain_samples must be an integer >= 0",
            field="predicate.erase.retain_samples",
        )
    sf = p["starts_from"]
    _Check.obj(sf, "predicate.starts_from", {"apply_id", "model_sha256"})
    _Check.text(sf["apply_id"], "predicate.starts_from.apply_id", max_len=128, pattern=_REQUEST_ID)
    _Check.text(sf["model_sha256"], "predicate.starts_from.model_sha256", pattern=_HEX64)


def _check_unlearning_statement(st: Statement) -> None:
    p = st.predicate
    validate_unlearning(p)
    digest = (p["model"]["folded_digest"] or p["model"]["base_digest"]).removeprefix("sha256:")
    first = st.subject[0]
    if first.name != p["model"]["name"] or first.sha256 != digest:
        raise StatementError(
            "subject[0] must be the model (name and folded digest of predicate.model)",
            field="subject[0]",
        )
    if p["onnx"] is not None and not any(s.sha256 == p["onnx"]["sha256"] for s in st.subject):
        raise StatementError("no subject carries the ONNX file's sha256", field="subject")


# --- variant attestation (int8) -------------------------------------------------------------


@dataclass(frozen=True)
class VariantAttestation:
    """Predicate ``urn:lethe:attestation:variant:v1``: a derived model (``variant`` ``int8``:
    the static QDQ quantization) of an applied unlearning attestation, measured and checked
    by the policy like the fp32 model, logged when it is exported.

    ``source`` names the apply it derives from: ``index`` (the log index of its unlearning
    attestation) and ``onnx_sha256`` (hex SHA-256 of the fp32 file quantized, which that
    attestation names). ``requests`` are the request ids that apply covers, ``forgotten_classes``
    the classes the model forgets (as in the source), ``onnx`` the variant file, ``quantization``
    how it was made (JSON; its optional ``calibration_source``, one of
    :data:`CALIBRATION_SOURCES`, says which data calibrated it), ``metrics`` the metric
    results (same shape as an unlearning attestation's ``metrics``), ``policy`` the verdict
    (must pass: a failing variant is not exported). Subjects: the variant file, then the fp32
    source file.
    """

    variant: str
    exported_at: str
    model: ModelRef
    source: Mapping[str, Any] = field(hash=False)
    requests: tuple[str, ...]
    forgotten_classes: tuple[int, ...]
    onnx: OnnxRef
    quantization: Mapping[str, Any] = field(hash=False)
    metrics: Mapping[str, Any] = field(hash=False)
    policy: PolicyVerdict

    PREDICATE_TYPE = VARIANT_V1

    def __post_init__(self) -> None:
        object.__setattr__(self, "requests", tuple(sorted(self.requests)))
        validate_variant(self.to_predicate())

    def to_predicate(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "exported_at": self.exported_at,
            "model": self.model.to_dict(),
            "source": dict(self.source),
            "requests": list(self.requests),
            "forgotten_classes": list(self.forgotten_classes),
            "onnx": self.onnx.to_dict(),
            "quantization": dict(self.quantization),
            "metrics": dict(self.metrics),
            "policy": self.policy.to_dict(),
        }

    def to_statement(self, *, onnx_name: str | None = None) -> Statement:
        """Subjects: the variant file (``onnx_name``, default ``<model>.<variant>.onnx``) and
        the fp32 file it was made from (``<model>.onnx``)."""
        name = onnx_name or f"{self.model.name}.{self.variant}.onnx"
        subjects = (
            Subject(name, {"sha256": self.onnx.sha256}),
            Subject(f"{self.model.name}.onnx", {"sha256": self.source["onnx_sha256"]}),
        )
        return Statement(subjects, VARIANT_V1, self.to_predicate())

    @classmethod
    def from_predicate(cls, p: Mapping[str, Any]) -> VariantAttestation:
        validate_variant(p)
        return cls(
            variant=p["variant"],
            exported_at=p["exported_at"],
            model=ModelRef(**p["model"]),
            source=p["source"],
            requests=tuple(p["requests"]),
            forgotten_classes=tuple(p["forgotten_classes"]),
            onnx=OnnxRef(**p["onnx"]),
            quantization=p["quantization"],
            metrics=p["metrics"],
            policy=PolicyVerdict(
                thresholds=p["policy"]["thresholds"],
                passed=p["policy"]["passed"],
                failures=tuple(p["policy"]["failures"]),
            ),
        )


def validate_variant(p: Any) -> None:
    """Raise StatementError unless ``p`` is a well-formed variant predicate."""
    keys = {"variant", "exported_at", "model", "source", "requests", "forgotten_classes"}
    _Check.obj(p, "predicate", keys | {"onnx", "quantization", "metrics", "policy"})
    _Check.text(p["variant"], "predicate.variant", max_len=32, pattern=_VARIANT)
    _Check.time(p["exported_at"], "predicate.exported_at")
    _validate_model(p["model"], applied=True)
    src = p["source"]
    _Check.obj(src, "predicate.source", {"index", "onnx_sha256"})
    if type(src["index"]) is not int or src["index"] < 0:
        raise StatementError(
            "predicate.source.index must be a log index (integer >= 0)",
            field="predicate.source.index",
        )
    _Check.text(src["onnx_sha256"], "predicate.source.onnx_sha256", pattern=_HEX64)
    reqs = p["requests"]
    if not isinstance(reqs, (list, tuple)) or not reqs:
        raise StatementError(
            "predicate.requests must be a non-empty list of request ids", field="predicate.requests"
        )
    for i, r in enumerate(reqs):
        _Check.text(r, f"predicate.requests[{i}]", max_len=128, pattern=_REQUEST_ID)
    if list(reqs) != sorted(set(reqs)):
        raise StatementError(
            "predicate.requests must be sorted with no repeats", field="predicate.requests"
        )
    _Check.classes(p["forgotten_classes"], "predicate.forgotten_classes")
    _validate_onnx(p["onnx"])
    for key in ("quantization", "metrics"):
        if not isinstance(p[key], Mapping):
            raise StatementError(f"predicate.{key} must be an object", field=f"predicate.{key}")
        _Check.json_value(p[key], f"predicate.{key}")
    source = p["quantization"].get("calibration_source")
    if source is not None and source not in CALIBRATION_SOURCES:
        raise StatementError(
            "predicate.quantization.calibration_source must be one of "
            f"{', '.join(CALIBRATION_SOURCES)}",
            field="predicate.quantization.calibration_source",
        )
    _validate_policy(p["policy"], applied=True)


def _check_variant_statement(st: Statement) -> None:
    p = st.predicate
    validate_variant(p)
    if st.subject[0].sha256 != p["onnx"]["sha256"]:
        raise StatementError(
            "subject[0] must be the variant file (predicate.onnx.sha256)", field="subject[0]"
        )
    if not any(s.sha256 == p["source"]["onnx_sha256"] for s in st.subject[1:]):
        raise StatementError("no subject carries the source fp32 file's sha256", field="subject")


# --- lifecycle events -----------------------------------------------------------------------


@dataclass(frozen=True)
class LifecycleEvent:
    """Predicate ``urn:lethe:event:v1``: a request or log lifecycle event.

    ``request.*`` events need ``request_id``. ``details`` is a small JSON object; keep personal
    data out of it (ids and commitments only).
    """

    event: str
    at: str
    request_id: str | None = None
    details: Mapping[str, Any] | None = field(default=None, hash=False)

    PREDICATE_TYPE = EVENT_V1

    def __post_init__(self) -> None:
        if isinstance(self.event, Enum):  # an EventType: the plain string goes into the log
            object.__setattr__(self, "event", str(self.event.value))
        validate_event(self.to_predicate())

    def to_predicate(self) -> dict[str, Any]:
        p: dict[str, Any] = {"event": self.event, "at": self.at}
        if self.request_id is not None:
            p["request_id"] = self.request_id
        if self.details is not None:
            p["details"] = dict(self.details)
        return p

    def to_statement(self) -> Statement:
        """Subject ``request:<id>`` (or ``log:<event>``) with the sha256 of the canonical
        predicate: non-personal, and binds the subject to the event."""
        p = self.to_predicate()
        name = f"request:{self.request_id}" if self.request_id else f"log:{self.event}"
        digest = hashlib.sha256(canonical_json(p)).hexdigest()
        return Statement((Subject(name, {"sha256": digest}),), EVENT_V1, p)

    @classmethod
    def from_predicate(cls, p: Mapping[str, Any]) -> LifecycleEvent:
        validate_event(p)
        return cls(p["event"], p["at"], p.get("request_id"), p.get("details"))


def validate_event(p: Any) -> None:
    """Raise StatementError unless ``p`` is a well-formed lifecycle event predicate."""
    _Check.obj(p, "predicate", {"event", "at"}, {"request_id", "details"})
    event = _Check.text(p["event"], "predicate.event", max_len=64, pattern=_EVENT)
    _Check.time(p["at"], "predicate.at")
    if "request_id" in p:
        _Check.text(p["request_id"], "predicate.request_id", max_len=128, pattern=_REQUEST_ID)
    elif event.startswith("request."):
        raise StatementError(
            f"event {event} needs predicate.request_id", field="predicate.request_id"
        )
    if "details" in p:
        if not isinstance(p["details"], Mapping):
            raise StatementError("predicate.details must be an object", field="predicate.details")
        _Check.json_value(p["details"], "predicate.details")


def _check_event_statement(st: Statement) -> None:
    p = st.predicate
    validate_event(p)
    name = f"request:{p['request_id']}" if "request_id" in p else f"log:{p['event']}"
    digest = hashlib.sha256(canonical_json(dict(p))).hexdigest()
    if len(st.subject) != 1 or st.subject[0].name != name or st.subject[0].sha256 != digest:
        raise StatementError(
            f"an event statement has one subject {name!r} with the sha256 of its predicate",
            field="subject",
        )


#: predicateType -> statement validator.
STATEMENT_VALIDATORS: Mapping[str, Callable[[Statement], None]] = MappingProxyType(
    {
        UNLEARNING_V1: _check_unlearning_statement,
        EVENT_V1: _check_event_statement,
        VARIANT_V1: _check_variant_statement,
    }
)


def validate_statement(statement: Statement) -> None:
    """Raise StatementError unless the statement is a well-formed Lethe statement."""
    check = STATEMENT_VALIDATORS.get(statement.predicate_type)
    if check is None:
        known = ", ".join(sorted(STATEMENT_VALIDATORS))
        raise StatementError(
            f"unknown predicateType {statement.predicate_type!r} (known: {known})",
            field="predicateType",
        )
    check(statement)


def parse_predicate(
    statement: Statement,
) -> UnlearningAttestation | LifecycleEvent | VariantAttestation:
    """The typed predicate of a Lethe statement (validated)."""
    validate_statement(statement)
    if statement.predicate_type == UNLEARNING_V1:
        return UnlearningAttestation.from_predicate(statement.predicate)
    if statement.predicate_type == VARIANT_V1:
        return VariantAttestation.from_predicate(statement.predicate)
    return LifecycleEvent.from_predicate(statement.predicate)
