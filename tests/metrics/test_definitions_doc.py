"""docs/metrics.md carries the same metric meanings as lethe_audit.metrics (one table)."""

from __future__ import annotations

from pathlib import Path

from lethe_audit.metrics import METRIC_DEFINITIONS, POLICY_METRIC, Policy, metric_definition

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_docs_table_matches_the_definitions() -> None:
    text = DOC.read_text(encoding="utf-8")
    for d in METRIC_DEFINITIONS:
        assert f"| {d.label} | {d.meaning} | {d.direction} |" in text, d.key


def test_every_policy_threshold_names_a_defined_metric() -> None:
    keys = Policy.keys()  # a classmethod listing the policy's keys, not a dict
    thresholds = {k for k in keys if k != "allow_unevaluated_classes"}
    assert set(POLICY_METRIC) == thresholds
    for key, metric in POLICY_METRIC.items():
        d = metric_definition(metric)
        assert d is not None, key
        # a lower bound guards a metric where high is good, an upper bound one where low is
        assert (d.good == "high") == key.startswith("min_"), key
