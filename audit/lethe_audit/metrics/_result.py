"""The frozen, JSON-serialisable metrics result (format ``lethe.metrics.v1``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lethe_audit.errors import MetricsError, ResultFormatError
from lethe_audit.metrics._serial import from_jsonable, to_jsonable

__all__ = [
    "RESULT_FORMAT",
    "AccuracyMetric",
    "MetricsResult",
    "MiaMetric",
    "ParityMetric",
    "ProbeMetric",
    "RelearnConfig",
    "RelearnMetric",
    "RelearnRun",
    "ZrfMetric",
]

RESULT_FORMAT = "lethe.metrics.v1"


@dataclass(frozen=True)
class AccuracyMetric:
    """Top-1 accuracies on the evaluation set, and their deltas against the base model.

    ``per_class`` entries are ``None`` for classes without evaluation samples. Deltas are
    ``model − base`` (a retain accuracy drop is ``−retain_delta``); all ``base_*`` and delta
    fields are ``None`` when no base model was given.
    """

    forget_accuracy: float
    retain_accuracy: float
    per_class: tuple[float | None, ...]
    class_counts: tuple[int, ...]
    forget_samples: int
    retain_samples: int
    unevaluated_forget_classes: tuple[int, ...]
    base_forget_accuracy: float | None
    base_retain_accuracy: float | None
    base_per_class: tuple[float | None, ...] | None
    forget_delta: float | None
    retain_delta: float | None
    per_class_delta: tuple[float | None, ...] | None
    dataset_digest: str

    @property
    def retain_drop(self) -> float | None:
        """``base retain accuracy − retain accuracy`` (positive = the model got worse)."""
        return None if self.retain_delta is None else -self.retain_delta


@dataclass(frozen=True)
class ZrfMetric:
    """ZRF = 1 − mean JS (nats) between the model and a random model on forget samples."""

    zrf: float
    mean_js_nats: float
    samples: int
    random_model: str
    dataset_digest: str
    seed: int


@dataclass(frozen=True)
class MiaMetric:
    """SalUn-style MIA efficacy on the forgotten classes' training samples."""

    efficacy: float
    base_efficacy: float | None
    members: int
    non_members: int
    targets: int
    attack: str
    train_digest: str
    dataset_digest: str
    seed: int


@dataclass(frozen=True)
class ProbeMetric:
    """Hold-out AUC of a linear probe for "forgotten class vs rest" on penultimate features."""

    auc: float
    base_auc: float | None
    retrained_auc: float | None
    train_samples: int
    test_samples: int
    test_positives: int
    feature_dim: int
    probe: str
    dataset_digest: str
    seed: int


@dataclass(frozen=True)
class RelearnConfig:
    """How relearn time is measured (torch backend): see docs/metrics.md.

    A copy of the model is fine-tuned (all parameters, BatchNorm and dropout in eval mode) on
    ``per_class`` training samples of each forgotten class, one full-batch optimizer step at a
    time, until the forgotten classes' evaluation accuracy reaches ``threshold`` or
    ``max_steps`` steps were taken.
    """

    per_class: int = 5
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    max_steps: int = 100
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.per_class, bool) or not isinstance(self.per_class, int):
            raise MetricsError(f"per_class must be an integer, got {self.per_class!r}")
        if self.per_class < 1:
            raise MetricsError(f"per_class must be >= 1, got {self.per_class}")
        if self.optimizer not in ("sgd", "adam"):
            raise MetricsError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MetricsError(f"lr must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise MetricsError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int):
            raise MetricsError(f"max_steps must be an integer, got {self.max_steps!r}")
        if self.max_steps < 1:
            raise MetricsError(f"max_steps must be >= 1, got {self.max_steps}")
        if not (0 < self.threshold <= 1):
            raise MetricsError(f"threshold must lie in (0, 1], got {self.threshold!r}")


@dataclass(frozen=True)
class RelearnRun:
    """One relearn run: ``accuracies[i]`` is the forget accuracy after ``i`` steps.

    ``steps`` is the first step count at which the accuracy reached the threshold, or
    ``max_steps`` with ``reached=False`` when it never did.
    """

    reached: bool
    steps: int
    accuracies: tuple[float, ...]


@dataclass(frozen=True)
class RelearnMetric:
    """Relearn time of the model, beside the base (unfiltered) and a retrained model."""

    model: RelearnRun
    base: RelearnRun | None
    retrained: RelearnRun | None
    config: RelearnConfig
    train_samples: int
    train_digest: str
    test_samples: int
    dataset_digest: str
    seed: int


@dataclass(frozen=True)
class ParityMetric:
    """max |Δlogit| between the model and a reference backend (e.g. torch vs ONNX)."""

    max_abs_logit_diff: float
    reference: str
    samples: int
    dataset_digest: str


@dataclass(frozen=True)
class MetricsResult:
    """Everything one :func:`evaluate` call measured, and on what.

    Metrics that could not be computed are ``None`` with the reason in ``skipped``;
    ``warnings`` lists conditions that weaken the evidence (e.g. an unevaluated class).
    Serialise with :meth:`to_dict` (plain JSON types, finite numbers only).
    """

    format: str
    backend: str
    num_classes: int
    forget_classes: tuple[int, ...]
    seed: int
    samples: int
    dataset_digest: str
    accuracy: AccuracyMetric
    zrf: ZrfMetric | None
    mia: MiaMetric | None
    probe: ProbeMetric | None
    relearn: RelearnMetric | None
    parity: ParityMetric | None
    skipped: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.format != RESULT_FORMAT:
            raise ResultFormatError(
                f"unknown metrics result format {self.format!r}; this version reads "
                f"{RESULT_FORMAT!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``skipped`` becomes an object keyed by metric name)."""
        out: dict[str, Any] = to_jsonable(self)
        out["skipped"] = dict(self.skipped)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsResult:
        """Inverse of :meth:`to_dict`; raises :class:`ResultFormatError` on any mismatch."""
        if not isinstance(data, Mapping):
            raise ResultFormatError(f"expected an object, got {type(data).__name__}")
        fixed = dict(data)
        skipped = fixed.get("skipped")
        if isinstance(skipped, Mapping):
            fixed["skipped"] = [[str(k), v] for k, v in sorted(skipped.items())]
        return from_jsonable(cls, fixed)
