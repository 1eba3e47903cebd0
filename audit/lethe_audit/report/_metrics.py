"""The logged metrics of one attestation as report tables, with the policy re-evaluated."""

from __future__ import annotations

import math
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
    "unevaluated_forget_classes": ("forgotten classes without evaluation samples", "≤"),
}


def _diff(after: float | None, before: float | None) -> float | None:
    if after is None or before is None:
        return None
    return after - before


def view(metrics: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """Rows (before / after / Δ), per-class accuracy, and the logged thresholds re-checked.

    Metrics in Lethe's own format (``lethe.metrics.v1``) get the full tables; anything else is
    listed as flat numeric values.
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
    rows: list[dict[str, Any]] = []

    def row(
        metric: str,
        label: str,
        before: float | None,
        after: float | None,
        *,
        unit: str,
        retrained: float | None = None,
    ) -> None:
        rows.append(
            {
                "metric": metric,
                "label": label,
                "unit": unit,
                "before": before,
                "after": after,
                "delta": _diff(after, before),
                "retrained": retrained,
            }
        )

    row(
        "forget_accuracy",
        "Forget accuracy",
        acc.base_forget_accuracy,
        acc.forget_accuracy,
        unit="share",
    )
    row(
        "retain_accuracy",
        "Retain accuracy",
        acc.base_retain_accuracy,
        acc.retain_accuracy,
        unit="share",
    )
    if result.zrf is not None:
        row("zrf", "ZRF (1 − mean JS to a random model)", None, result.zrf.zrf, unit="score")
    if result.mia is not None:
        row(
            "mia_efficacy",
            "MIA efficacy",
            result.mia.base_efficacy,
            result.mia.efficacy,
            unit="share",
        )
    if result.probe is not None:
        row(
            "probe_auc",
            "Feature probe AUC",
            result.probe.base_auc,
            result.probe.auc,
            unit="score",
            retrained=result.probe.retrained_auc,
        )
    if result.relearn is not None:
        rl = result.relearn
        row(
            "relearn_steps",
            f"Relearn steps to {rl.config.threshold:g} accuracy",
            None if rl.base is None else float(rl.base.steps),
            float(rl.model.steps),
            unit="steps",
            retrained=None if rl.retrained is None else float(rl.retrained.steps),
        )
    if result.parity is not None:
        row(
            "onnx_parity",
            "ONNX parity max |Δlogit|",
            None,
            result.parity.max_abs_logit_diff,
            unit="logit",
        )
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
    out: dict[str, Any] = {
        "format": result.format,
        "structured": True,
        "backend": result.backend,
        "num_classes": result.num_classes,
        "forget_classes": list(result.forget_classes),
        "samples": result.samples,
        "forget_samples": acc.forget_samples,
        "retain_samples": acc.retain_samples,
        "dataset_digest": result.dataset_digest,
        "rows": rows,
        "per_class": per_class,
        "skipped": dict(result.skipped),
        "warnings": list(result.warnings),
    }
    out["recheck"] = _recheck(result, policy)
    return out


def _recheck(result: Any, policy: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate the logged thresholds on the logged metrics (does the verdict follow?)."""
    from lethe_audit.metrics import Policy

    thresholds = dict(policy.get("thresholds", {}))
    off = Policy(max_forget_accuracy=None, max_retain_drop=None, max_parity=None)
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
    verdict = pol.evaluate(result)
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
                "reason": c.reason,
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
