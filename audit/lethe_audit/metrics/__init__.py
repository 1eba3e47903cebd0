"""Verification metrics and the pass/fail policy, without torch (DESIGN §4).

The definitions live here once, on numpy arrays; backends only produce logits and features.
``lethe.metrics`` adds the torch backend (penultimate features, relearn time); this package has
the onnxruntime backend an auditor uses on the exported model. See docs/metrics.md.
"""

from __future__ import annotations

from lethe_audit.metrics._backend import Backend, FeatureBackend, RandomInitBackend, RelearnBackend
from lethe_audit.metrics._cli import policy_from_options, policy_options
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
from lethe_audit.metrics._policy import OFF, CheckOutcome, Policy, Verdict
from lethe_audit.metrics._result import (
    RESULT_FORMAT,
    AccuracyMetric,
    MetricsResult,
    MiaMetric,
    ParityMetric,
    ProbeMetric,
    RelearnConfig,
    RelearnMetric,
    RelearnRun,
    ZrfMetric,
)

__all__ = [
    "MIA_MAX_PER_SIDE",
    "OFF",
    "RANDOM_ONNX_SCHEME",
    "RESULT_FORMAT",
    "AccuracyMetric",
    "Backend",
    "CheckOutcome",
    "ClassAccuracy",
    "FeatureBackend",
    "ImageSet",
    "MetricsResult",
    "MiaMetric",
    "OnnxBackend",
    "ParityMetric",
    "Policy",
    "ProbeMetric",
    "RandomInitBackend",
    "RelearnBackend",
    "RelearnConfig",
    "RelearnMetric",
    "RelearnRun",
    "Verdict",
    "ZrfMetric",
    "class_accuracy",
    "dataset_digest",
    "evaluate",
    "find_head_input",
    "js_divergence",
    "max_abs_diff",
    "mia_efficacy",
    "policy_from_options",
    "policy_options",
    "probe_auc",
    "random_onnx_model",
    "softmax",
    "true_label_confidence",
    "zrf_score",
]
