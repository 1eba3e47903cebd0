"""Depth of forgetting against a reference model retrained without a class (DESIGN §4)."""

from __future__ import annotations

from lethe_audit.errors import MetricsError
from lethe_audit.metrics._result import DepthMetric, MetricsResult, ReferenceInfo

__all__ = ["depth_metric"]


def depth_metric(result: MetricsResult, reference: ReferenceInfo) -> DepthMetric:
    """Relearn time as a ratio to ``reference`` and the probe AUC gap to it.

    ``result`` must carry relearn time (evaluate with ``relearn=RelearnConfig(seeds=...)``);
    the probe gap is ``None`` when ``result`` or the reference has no probe AUC. Attach the
    outcome with ``dataclasses.replace(result, depth=...)``.
    """
    if not isinstance(reference, ReferenceInfo):
        raise MetricsError(f"reference must be a ReferenceInfo, got {type(reference).__name__}")
    if result.relearn is None:
        why = dict(result.skipped).get("relearn", "")
        raise MetricsError(
            "depth needs the relearn time of the measured model; it was not measured"
            + (f" ({why})" if why else "")
        )
    runs = result.relearn.runs
    steps = result.relearn.steps
    auc = None if result.probe is None else result.probe.auc
    gap = None if auc is None or reference.probe_auc is None else auc - reference.probe_auc
    return DepthMetric(
        reference=reference,
        relearn_steps=steps,
        relearn_runs=tuple(r.steps for r in runs),
        relearn_ratio=steps / reference.relearn_steps,
        probe_auc=auc,
        probe_auc_gap=gap,
    )
