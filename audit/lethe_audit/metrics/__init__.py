"""Verification metrics and the pass/fail policy, without torch (DESIGN §4).

The definitions live here once, on numpy arrays; backends only produce logits and features.
``lethe.metrics`` adds the torch backend (penultimate features, relearn time); this package has
the onnxruntime backend an auditor uses on the exported model. See docs/metrics.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lethe_audit.metrics._definitions import (
    METRIC_DEFINITIONS,
    POLICY_METRIC,
    MetricDefinition,
    metric_definition,
)
from lethe_audit.metrics._depth import depth_metric
from lethe_audit.metrics._policy import OFF, CheckOutcome, Policy, Verdict
from lethe_audit.metrics._result import (
    RESULT_FORMAT,
    AccuracyMetric,
    DepthMetric,
    MetricsResult,
    MiaMetric,
    ParityMetric,
    ProbeMetric,
    ReferenceInfo,
    RelearnConfig,
    RelearnMetric,
    RelearnRun,
    ZrfMetric,
    median_run,
)

if TYPE_CHECKING:
    from lethe_audit.metrics._backend import (
        FEATURES_OUTPUT,
        Backend,
        FeatureBackend,
        RandomInitBackend,
        RelearnBackend,
    )
    from lethe_audit.metrics._core import (
        ClassAccuracy,
        class_accuracy,
        js_divergence,
        max_abs_diff,
        mia_efficacy,
        probe_auc,
        softmax,
        true_label_confidence,
        zrf_score,
    )
    from lethe_audit.metrics._dataset import ImageSet, dataset_digest
    from lethe_audit.metrics._evaluate import MIA_MAX_PER_SIDE, evaluate
    from lethe_audit.metrics._onnx import (
        RANDOM_ONNX_SCHEME,
        OnnxBackend,
        find_head_input,
        random_onnx_model,
    )

# numpy, scikit-learn and onnx/onnxruntime take from a tenth of a second to a second to load;
# the names that need them are imported on first use, so that the `lethe` CLI's cheap commands
# (which only need the policy and its options) start fast (issue 19; tests/workflow/
# test_cli_startup.py).
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("FEATURES_OUTPUT", "Backend", "FeatureBackend", "RandomInitBackend", "RelearnBackend"),
        "_backend",
    ),
    **dict.fromkeys(
        (
            "ClassAccuracy",
            "class_accuracy",
            "js_divergence",
            "max_abs_diff",
            "mia_efficacy",
            "probe_auc",
            "softmax",
            "true_label_confidence",
            "zrf_score",
        ),
        "_core",
    ),
    **dict.fromkeys(("ImageSet", "dataset_digest"), "_dataset"),
    **dict.fromkeys(("MIA_MAX_PER_SIDE", "evaluate"), "_evaluate"),
    **dict.fromkeys(
        ("RANDOM_ONNX_SCHEME", "OnnxBackend", "find_head_input", "random_onnx_model"), "_onnx"
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lethe_audit.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lethe_audit.metrics.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "FEATURES_OUTPUT",
    "METRIC_DEFINITIONS",
    "MIA_MAX_PER_SIDE",
    "OFF",
    "POLICY_METRIC",
    "RANDOM_ONNX_SCHEME",
    "RESULT_FORMAT",
    "AccuracyMetric",
    "Backend",
    "CheckOutcome",
    "ClassAccuracy",
    "DepthMetric",
    "FeatureBackend",
    "ImageSet",
    "MetricDefinition",
    "MetricsResult",
    "MiaMetric",
    "OnnxBackend",
    "ParityMetric",
    "Policy",
    "ProbeMetric",
    "RandomInitBackend",
    "ReferenceInfo",
    "RelearnBackend",
    "RelearnConfig",
    "RelearnMetric",
    "RelearnRun",
    "Verdict",
    "ZrfMetric",
    "class_accuracy",
    "dataset_digest",
    "depth_metric",
    "evaluate",
    "find_head_input",
    "js_divergence",
    "max_abs_diff",
    "median_run",
    "metric_definition",
    "mia_efficacy",
    "probe_auc",
    "random_onnx_model",
    "softmax",
    "true_label_confidence",
    "zrf_score",
]
