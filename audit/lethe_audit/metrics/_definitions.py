"""What each metric means, in words for readers who are not ML specialists (DESIGN §4).

One table, used by the auditor report, the receipt page and docs/metrics.md (a test keeps the
docs in step with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRIC_DEFINITIONS", "POLICY_METRIC", "MetricDefinition", "metric_definition"]


@dataclass(frozen=True)
class MetricDefinition:
    """One metric: its report key, label, one-line meaning and which direction is good."""

    key: str
    label: str
    meaning: str
    good: Literal["low", "high"]

    @property
    def direction(self) -> str:
        """``"lower is better"`` or ``"higher is better"``."""
        return "lower is better" if self.good == "low" else "higher is better"


METRIC_DEFINITIONS: tuple[MetricDefinition, ...] = (
    MetricDefinition(
        "forget_accuracy",
        "Forget accuracy",
        "How often the model still recognises the deleted classes in test images it never "
        "trained on.",
        "low",
    ),
    MetricDefinition(
        "retain_accuracy",
        "Retain accuracy",
        "How often the model recognises all the other classes correctly: deleting must not "
        "harm them.",
        "high",
    ),
    MetricDefinition(
        "retain_drop",
        "Retain accuracy drop",
        "How much the retain accuracy fell compared with the model before the deletion.",
        "low",
    ),
    MetricDefinition(
        "zrf",
        "ZRF",
        "How much the model's answers on the deleted classes look like those of a model that "
        "learned nothing (1 = indistinguishable).",
        "high",
    ),
    MetricDefinition(
        "mia_efficacy",
        "MIA efficacy",
        "Share of the deleted classes' training images that a membership test can no longer "
        "tell apart from images the model never saw.",
        "high",
    ),
    MetricDefinition(
        "probe_auc",
        "Feature probe AUC",
        "How well a simple detector reading the model's internal features still picks out the "
        "deleted classes (0.5 = chance, 1 = perfectly).",
        "low",
    ),
    MetricDefinition(
        "relearn_steps",
        "Relearn steps",
        "How many small training steps on a handful of images bring the deleted classes back; "
        "few steps mean the knowledge is still inside.",
        "high",
    ),
    MetricDefinition(
        "relearn_ratio",
        "Relearn ratio to the reference",
        "Relearn steps divided by those of a model retrained without the class; 1 or more means "
        "as hard to bring back as if it had never been learned.",
        "high",
    ),
    MetricDefinition(
        "probe_auc_gap",
        "Probe AUC gap to the reference",
        "Feature probe AUC minus that of a model retrained without the class; 0 or less means "
        "the internal features hold no more than if it had never been learned.",
        "low",
    ),
    MetricDefinition(
        "onnx_parity",
        "ONNX parity max |Δlogit|",
        "Largest difference between the outputs of the published model file and of the model "
        "that was tested; tiny means the file is the tested model.",
        "low",
    ),
)

_BY_KEY = {d.key: d for d in METRIC_DEFINITIONS}

#: Policy threshold key -> the metric it bounds.
POLICY_METRIC = {
    "max_forget_accuracy": "forget_accuracy",
    "max_retain_drop": "retain_drop",
    "max_parity": "onnx_parity",
    "min_zrf": "zrf",
    "min_mia_efficacy": "mia_efficacy",
    "max_probe_auc": "probe_auc",
    "min_relearn_steps": "relearn_steps",
    "min_relearn_ratio": "relearn_ratio",
    "max_probe_auc_gap": "probe_auc_gap",
}


def metric_definition(key: str) -> MetricDefinition | None:
    """The definition of a report metric key (``None`` for keys without one)."""
    return _BY_KEY.get(key)
