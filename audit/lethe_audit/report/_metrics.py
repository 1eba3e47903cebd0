"""The logged metrics of one attestation as report tables, with the policy re-evaluated."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from lethe_audit.errors import MetricsError

#: Threshold keys of :class:`lethe_audit.metrics.Policy` and how they read.
CHECK_LABELS = {
    "max_forget_accuracy": ("forget accuracy", "≤"),
    "max_retain_drop": ("retain accuracy drop", "≤"),
    "max_parity": ("ONNX parity max |Δlogit|", "≤"),
    "min_zrf": ("ZRF", "≥"),
    "min_mia_efficacy": ("MIA efficacy", "≥"),
    "max_probe_auc": ("feature probe AUC", "≤"),
    "min_relearn_steps": ("relearn steps", "≥"),
    "min_relearn_ratio": ("relearn ratio to the reference", "≥"),
    "max_probe_auc_gap": ("probe AUC gap to the reference", "≤"),
    "unevaluated_forget_classes": ("forgotten classes without evaluation samples", "≤"),
}

#: Older lethe versions logged reasons with Python hints; a report shows them in words.
_PY_HINTS = (
    (re.compile(r"\s*\(pass relearn=RelearnConfig\(\)\)"), " for this measurement"),
    (re.compile(r"evaluate with base= \(the unfiltered model\)"), "the unfiltered model was not "
     "measured beside it"),
    (
        re.compile(r"evaluate with parity_reference= \(the exported model\), or turn the check "
                   r"off \(max_parity = \"off\"\)"),
        "no exported ONNX model was compared with it",
    ),
    (re.compile(r"no parity_reference given"), "no second copy of the model (such as the exported "
     "ONNX file) was compared"),
    (re.compile(r";\s*pass random_model="), " (the reference ZRF compares with)"),
    (re.compile(r"\bno train_set given\b"), "no training data given"),
    (re.compile(r"\btrain_set\b"), "the training data"),
    (re.compile(r"\s*\(use the torch one\)"), " (relearn time needs the trainable PyTorch model)"),
    (re.compile(r";\s*name the value with OnnxBackend\(\.\.\., features=NAME\)"), ""),
)  # fmt: skip


def in_words(reason: str) -> str:
    """A logged reason with the Python hints of older versions replaced by words."""
    for pattern, words in _PY_HINTS:
        reason = pattern.sub(words, reason)
    return reason


def _described(metric: str) -> dict[str, Any]:
    from lethe_audit.metrics import metric_definition

    d = metric_definition(metric)
    if d is None:
        return {"meaning": None, "good": None, "direction": None}
    return {"meaning": d.meaning, "good": d.good, "direction": d.direction}


def _diff(after: float | None, before: float | None) -> float | None:
    if after is None or before is None:
        return None
    return after - before


def view(
    metrics: Mapping[str, Any], policy: Mapping[str, Any], *, phase: str = "mask"
) -> dict[str, Any]:
    """Rows (before / after / Δ), per-class accuracy, and the logged thresholds re-checked.

    Metrics in Lethe's own format (``lethe.metrics.v1``) get the full tables; anything else is
    listed as flat numeric values. Every row carries its one-line ``meaning`` and which
    direction is ``good`` (:data:`lethe_audit.metrics.METRIC_DEFINITIONS`); depth rows (relearn
    ratio, probe AUC gap) and the reference's provenance appear when the result has depth.
    """
    from lethe_audit.metrics import MetricsResult

    try:
        result = MetricsResult.from_dict(metrics)
    except (MetricsError, TypeError, ValueError) as e:
        return {
            "format": str(metrics.get("format", "unknown")),
            "structured": False,
            "note": f"not a lethe.metrics.v1 result ({e}); listed as logged",
            "values": _flat(metrics),
        }
    acc = result.accuracy
    forget = set(result.forget_classes)
    per_class = []
    for c in range(result.num_classes):
        before = None if acc.base_per_class is None else acc.base_per_class[c]
        after = acc.per_class[c]
        per_class.append(
            {
                "class": c,
                "samples": acc.class_counts[c],
                "before": before,
                "after": after,
                "delta": _diff(after, before),
                "forgotten": c in forget,
            }
        )
    return {
        "format": result.format,
        "structured": True,
        "backend": result.backend,
        "num_classes": result.num_classes,
        "forget_classes": list(result.forget_classes),
        "samples": result.samples,
        "seed": result.seed,
        "forget_samples": acc.forget_samples,
        "retain_samples": acc.retain_samples,
        "dataset_digest": result.dataset_digest,
        "rows": _rows(result),
        "per_class": per_class,
        "depth": _depth(result),
        "skipped": [
            {"metric": k, "label": _skipped_label(k), "reason": in_words(v)}
            for k, v in sorted(result.skipped)
        ],
        "warnings": list(result.warnings),
        "recheck": _recheck(result, policy, phase),
    }


_SKIPPED_LABELS = {
    "zrf": "ZRF",
    "mia": "MIA efficacy",
    "probe": "Feature probe AUC",
    "relearn": "Relearn steps",
    "parity": "ONNX parity",
}


def _skipped_label(key: str) -> str:
    return _SKIPPED_LABELS.get(key, key)


def _row(
    metric: str,
    label: str,
    before: float | None,
    after: float | None,
    *,
    unit: str,
    retrained: float | None = None,
    reference: float | None = None,
) -> dict[str, Any]:
    return {
        "metric": metric,
        "label": label,
        "unit": unit,
        "before": before,
        "after": after,
        "delta": _diff(after, before),
        "retrained": retrained,
        "reference": reference,
        **_described(metric),
    }


def _rows(result: Any) -> list[dict[str, Any]]:
    acc = result.accuracy
    rows = [
        _row("forget_accuracy", "Forget accuracy", acc.base_forget_accuracy,
             acc.forget_accuracy, unit="share"),
        _row("retain_accuracy", "Retain accuracy", acc.base_retain_accuracy,
             acc.retain_accuracy, unit="share"),
    ]  # fmt: skip
    if result.zrf is not None:
        rows.append(
            _row("zrf", "ZRF (1 − mean JS to a random model)", None, result.zrf.zrf, unit="score")
        )
    if result.mia is not None:
        mia = result.mia
        rows.append(
            _row("mia_efficacy", "MIA efficacy", mia.base_efficacy, mia.efficacy, unit="share")
        )
    rows += _depth_rows(result)
    if result.parity is not None:
        diff = result.parity.max_abs_logit_diff
        rows.append(_row("onnx_parity", "ONNX parity max |Δlogit|", None, diff, unit="logit"))
    return rows


def _depth_rows(result: Any) -> list[dict[str, Any]]:
    """Probe, relearn time and (with a reference) relearn ratio and probe AUC gap."""
    depth = result.depth
    rows = []
    if result.probe is not None:
        rows.append(
            _row(
                "probe_auc",
                "Feature probe AUC",
                result.probe.base_auc,
                result.probe.auc,
                unit="score",
                retrained=result.probe.retrained_auc,
                reference=None if depth is None else depth.reference.probe_auc,
            )
        )
    if result.relearn is not None:
        rl = result.relearn
        runs = len(rl.runs)
        rows.append(
            _row(
                "relearn_steps",
                f"Relearn steps to {rl.config.threshold:g} accuracy"
                + (f" (median of {runs} runs)" if runs > 1 else ""),
                None if rl.base is None else float(rl.base.steps),
                rl.steps,
                unit="steps",
                retrained=None if rl.retrained is None else float(rl.retrained.steps),
                reference=None if depth is None else depth.reference.relearn_steps,
            )
        )
    if depth is not None:
        rows.append(
            _row("relearn_ratio", "Relearn ratio to the reference", None, depth.relearn_ratio,
                 unit="ratio", reference=1.0)
        )  # fmt: skip
        rows.append(
            _row("probe_auc_gap", "Probe AUC gap to the reference", None, depth.probe_auc_gap,
                 unit="score", reference=0.0)
        )  # fmt: skip
    return rows


def _depth(result: Any) -> dict[str, Any] | None:
    """The depth reference's provenance and the depth numbers, or None without depth."""
    depth = result.depth
    if depth is None:
        return None
    ref = depth.reference
    return {
        "relearn_steps": depth.relearn_steps,
        "relearn_runs": list(depth.relearn_runs),
        "relearn_ratio": depth.relearn_ratio,
        "probe_auc": depth.probe_auc,
        "probe_auc_gap": depth.probe_auc_gap,
        "reference": {
            "kind": ref.kind,
            "description": (
                "a model retrained from scratch without class"
                + ("es " if len(ref.classes) > 1 else " ")
                + ", ".join(map(str, ref.classes))
                if ref.kind == "retrain-holdout"
                else ref.kind
            ),
            "classes": list(ref.classes),
            "model_sha256": ref.model_sha256,
            "recipe": ref.recipe,
            "seconds": ref.seconds,
            "created_at": ref.created_at,
            "relearn_steps": ref.relearn_steps,
            "relearn_runs": list(ref.relearn_runs),
            "probe_auc": ref.probe_auc,
            "seeds": list(ref.seeds),
        },
    }


def _recheck(result: Any, policy: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """Evaluate the logged thresholds on the logged metrics (does the verdict follow?)."""
    from lethe_audit.metrics import Policy

    thresholds = dict(policy.get("thresholds", {}))
    off = Policy(
        max_forget_accuracy=None,
        max_retain_drop=None,
        max_parity=None,
        min_relearn_ratio=None,
        max_probe_auc_gap=None,
    )
    try:
        pol = Policy.from_mapping(thresholds, base=off)
    except MetricsError as e:
        return {
            "available": False,
            "note": f"the logged thresholds are not lethe.metrics policy keys ({e})",
            "checks": [],
            "passed": None,
            "agrees_with_log": None,
        }
    verdict = pol.evaluate(result, phase=phase)
    checks = []
    for c in verdict.checks:
        label, op = CHECK_LABELS.get(c.name, (c.name, ""))
        checks.append(
            {
                "name": c.name,
                "label": label,
                "op": op,
                "value": c.value,
                "threshold": c.threshold,
                "passed": c.passed,
                "reason": None if c.reason is None else in_words(c.reason),
            }
        )
    return {
        "available": True,
        "note": None,
        "checks": checks,
        "passed": verdict.passed,
        "agrees_with_log": verdict.passed == bool(policy.get("passed")),
    }


def _flat(d: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k in sorted(d):
        v = d[k]
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(_flat(v, name + "."))
        elif isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        elif isinstance(v, int | float) and math.isfinite(v):
            out.append({"metric": name, "value": v})
    return out
