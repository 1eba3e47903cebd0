"""The frozen, JSON-serialisable metrics result (format ``lethe.metrics.v1``)."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lethe_audit.errors import MetricsError, ResultFormatError
from lethe_audit.metrics._serial import from_jsonable, to_jsonable

__all__ = [
    "RESULT_FORMAT",
    "AccuracyMetric",
    "DepthMetric",
    "MetricsResult",
    "MiaMetric",
    "ParityMetric",
    "ProbeMetric",
    "ReferenceInfo",
    "RelearnConfig",
    "RelearnMetric",
    "RelearnRun",
    "ZrfMetric",
    "median_run",
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
    ``max_steps`` steps were taken. With ``seeds`` > 1 the measurement is repeated that many
    times, run ``i`` drawing its samples (and seeding torch) with ``seed + i``; the reported run
    is the median one (see :class:`RelearnMetric`).
    """

    per_class: int = 5
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    max_steps: int = 100
    threshold: float = 0.5
    seeds: int = 1

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
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise MetricsError(f"seeds must be an integer >= 1, got {self.seeds!r}")


@dataclass(frozen=True)
class RelearnRun:
    """One relearn run: ``accuracies[i]`` is the forget accuracy after ``i`` steps.

    ``steps`` is the first step count at which the accuracy reached the threshold, or
    ``max_steps`` with ``reached=False`` when it never did.
    """

    reached: bool
    steps: int
    accuracies: tuple[float, ...]


def median_run(runs: tuple[RelearnRun, ...]) -> RelearnRun:
    """The median of ``runs`` by steps (a run that never reached the threshold counts as more
    steps than one that reached it at the same count); the lower middle for an even count."""
    if not runs:
        raise MetricsError("the median of no relearn runs is undefined")
    ordered = sorted(runs, key=lambda r: (r.steps, not r.reached))
    return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class RelearnMetric:
    """Relearn time of the model, beside the base (unfiltered) and a retrained model.

    ``model``, ``base`` and ``retrained`` are the median runs over ``config.seeds`` repeats;
    ``model_runs`` holds every run of the model, in seed order (results written before seeds
    existed have none: :attr:`runs` then falls back to ``(model,)``). ``train_samples`` is the
    number of samples one run fine-tunes on; ``train_digest`` covers the samples of all runs.
    """

    model: RelearnRun
    base: RelearnRun | None
    retrained: RelearnRun | None
    config: RelearnConfig
    train_samples: int
    train_digest: str
    test_samples: int
    dataset_digest: str
    seed: int
    model_runs: tuple[RelearnRun, ...] = ()

    @property
    def runs(self) -> tuple[RelearnRun, ...]:
        """Every run of the model (``(model,)`` for results without ``model_runs``)."""
        return self.model_runs or (self.model,)

    @property
    def steps(self) -> float:
        """Median steps over :attr:`runs` (the mean of the two middle runs for an even count)."""
        return float(statistics.median(r.steps for r in self.runs))


_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def _unit_or_none(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
        raise MetricsError(f"{name} must lie in [0, 1], got {value!r}")


@dataclass(frozen=True)
class ReferenceInfo:
    """Where the depth reference comes from (DESIGN §4): recorded in every erase attestation.

    ``kind`` ``"retrain-holdout"``: a model retrained from scratch without ``classes`` (classes
    the production model still knows), trained once per model with ``recipe`` (canonical JSON)
    in ``seconds`` wall time. ``relearn_steps`` is its median relearn time on ``classes`` over
    ``seeds`` (steps per seed in ``relearn_runs``); ``probe_auc`` its feature-probe AUC on them.
    ``model_sha256`` is the hex SHA-256 of the reference's weights file.
    """

    kind: str
    classes: tuple[int, ...]
    model_sha256: str
    recipe: str
    seconds: float
    created_at: str
    relearn_steps: float
    relearn_runs: tuple[int, ...]
    probe_auc: float | None
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind or "\n" in self.kind:
            raise MetricsError(f"reference kind must be a one-line name, got {self.kind!r}")
        classes = tuple(self.classes)
        if not classes or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in classes
        ):
            raise MetricsError(f"reference classes must be class ids >= 0, got {self.classes!r}")
        if list(classes) != sorted(set(classes)):
            raise MetricsError(f"reference classes must be sorted, no repeats: {self.classes!r}")
        object.__setattr__(self, "classes", classes)
        if not isinstance(self.model_sha256, str) or not _HEX64.fullmatch(self.model_sha256):
            raise MetricsError(
                f"reference model_sha256 must be 64 lowercase hex digits, got {self.model_sha256!r}"
            )
        if not isinstance(self.recipe, str) or not self.recipe:
            raise MetricsError("reference recipe must be a non-empty string (canonical JSON)")
        if not isinstance(self.created_at, str) or not _TIME.fullmatch(self.created_at):
            raise MetricsError(
                f"reference created_at must be RFC 3339 UTC like 2026-01-31T12:00:00Z, "
                f"got {self.created_at!r}"
            )
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise MetricsError(f"reference seconds must be >= 0, got {self.seconds!r}")
        if not (math.isfinite(self.relearn_steps) and self.relearn_steps > 0):
            raise MetricsError(
                "the reference must need at least one relearn step (its relearn time is the "
                f"scale depth is measured in), got {self.relearn_steps!r}"
            )
        runs = tuple(self.relearn_runs)
        seeds = tuple(self.seeds)
        if not runs or len(runs) != len(seeds):
            raise MetricsError(
                f"reference needs one relearn run per seed, got {len(runs)} runs for "
                f"{len(seeds)} seeds"
            )
        object.__setattr__(self, "relearn_runs", runs)
        object.__setattr__(self, "seeds", seeds)
        _unit_or_none("reference probe_auc", self.probe_auc)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceInfo:
        """Inverse of :meth:`to_dict`; raises :class:`ResultFormatError` on any mismatch."""
        return from_jsonable(cls, data)


@dataclass(frozen=True)
class DepthMetric:
    """How deep the forgetting goes, against the reference (see :func:`depth_metric`).

    ``relearn_steps`` is the measured model's median relearn time on its forgotten classes
    (steps per seed in ``relearn_runs``), ``relearn_ratio`` = relearn_steps /
    reference.relearn_steps (1.0 = as hard to relearn as a model that never saw the class;
    higher is better). ``probe_auc_gap`` = probe_auc − reference.probe_auc (lower is better;
    ``None`` when either probe was not measured).
    """

    reference: ReferenceInfo
    relearn_steps: float
    relearn_runs: tuple[int, ...]
    relearn_ratio: float
    probe_auc: float | None
    probe_auc_gap: float | None

    def __post_init__(self) -> None:
        for name in ("relearn_steps", "relearn_ratio"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise MetricsError(f"depth {name} must be a number >= 0, got {v!r}")
        _unit_or_none("depth probe_auc", self.probe_auc)
        gap = self.probe_auc_gap
        if gap is not None and not (math.isfinite(gap) and -1 <= gap <= 1):
            raise MetricsError(f"depth probe_auc_gap must lie in [-1, 1], got {gap!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DepthMetric:
        """Inverse of :meth:`to_dict`; raises :class:`ResultFormatError` on any mismatch."""
        return from_jsonable(cls, data)


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
    ``depth`` is attached after measuring, against a reference:
    ``dataclasses.replace(result, depth=depth_metric(result, reference))``; results written
    before depth existed parse with ``depth=None``.
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
    depth: DepthMetric | None = None

    def __post_init__(self) -> None:
        if self.format != RESULT_FORMAT:
            raise ResultFormatError(
                f"unknown metrics result format {str(self.format)[:80]!r}; this version reads "
                f"{RESULT_FORMAT!r}"
            )
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Per-class arrays hold one value per class (a signed result is still input)."""
        n, acc = self.num_classes, self.accuracy
        if type(n) is not int or not 0 < n <= 1 << 20:
            raise ResultFormatError(f"num_classes must be an integer in [1, 2**20], got {n!r}")
        arrays = {
            "accuracy.per_class": acc.per_class,
            "accuracy.class_counts": acc.class_counts,
            "accuracy.base_per_class": acc.base_per_class,
            "accuracy.per_class_delta": acc.per_class_delta,
        }
        for name, values in arrays.items():
            if values is not None and len(values) != n:
                raise ResultFormatError(
                    f"{name} has {len(values)} values for {n} classes: not a valid result"
                )
        if any(type(c) is not int or not 0 <= c < n for c in self.forget_classes):
            raise ResultFormatError(f"forget_classes must be class indices in [0, {n})")

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
        try:
            if isinstance(skipped, Mapping):
                fixed["skipped"] = [[str(k), v] for k, v in sorted(skipped.items())]
            return from_jsonable(cls, fixed)
        except ResultFormatError:
            raise
        except (
            ArithmeticError,
            LookupError,
            TypeError,
            ValueError,
            AttributeError,
            RecursionError,
        ) as e:
            raise ResultFormatError(f"malformed metrics result ({type(e).__name__})") from None
