"""The erase lab's code path at toy size (MNIST CNN, a few batches): rows and depth columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_erase
from lethe.data import default_data_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (default_data_dir() / "mnist").is_dir(),
        reason="needs ../shared/data/mnist (present in CI)",
    ),
]


def test_lab_measures_retrain_mask_and_variants_with_depth_columns(tmp_path: Path) -> None:
    out = tmp_path / "lab.json"
    result = bench_erase.main(
        [
            "--setup", "mnist_cnn", "--preset", "toy", "--classes", "1",
            "--variants", "top1-e5", "top1+ft1", "px-look-e3",
            "--relearn-seeds", "2", "--relearn-max-steps", "2",
            "--out", str(out), "--cache", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"retrain", "mask", "top1-e5", "top1+ft1", "px-look-e3"}
    assert rows["retrain"]["cpu_seconds"] > 0 and rows["retrain"]["timing_cached"] is False
    for name in ("top1-e5", "top1+ft1", "px-look-e3"):
        assert rows[name]["cpu_cost_ratio"] > 0
    assert rows["px-look-e3"]["config"]["adversary_data"] == "lookalike"
    for name in ("mask", "top1-e5", "top1+ft1", "px-look-e3"):
        row = rows[name]
        assert len(row["relearn_runs"]) == 2
        assert row["relearn_ratio"] == row["relearn_steps"] / max(
            rows["retrain"]["relearn_steps"], 1
        )
        assert row["cost_ratio"] > 0 and 0.0 <= row["forget_acc"] <= 1.0
    assert rows["top1-e5"]["config"]["epochs"] == 5
    summary = result["summary"]["top1-e5"]
    assert summary["relearn_ratio_min"] <= summary["relearn_ratio_median"]
    # A rerun of one variant replaces its rows and keeps the others.
    again = bench_erase.main(
        [
            "--setup", "mnist_cnn", "--preset", "toy", "--classes", "1", "--variants", "top1-e5",
            "--relearn-seeds", "1", "--relearn-max-steps", "2",
            "--out", str(out), "--cache", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    models = [r["model"] for r in again["rows"]]
    assert sorted(models) == ["mask", "px-look-e3", "retrain", "top1+ft1", "top1-e5"]
    assert len(next(r for r in again["rows"] if r["model"] == "top1-e5")["relearn_runs"]) == 1


def test_variant_names_keep_their_recipe_and_default_is_erase_config() -> None:
    """The lab's names were measured under the old EraseConfig defaults (pinned in
    bench_erase); "default" is what EraseConfig() runs now, so its rows are the product's."""
    import dataclasses

    from lethe.filters import EraseConfig

    merged = {**bench_erase._ROUND_DEFAULTS, **bench_erase.VARIANTS["default"]}
    assert EraseConfig(**merged) == EraseConfig()
    top1 = EraseConfig(**{**bench_erase._ROUND_DEFAULTS, **bench_erase.VARIANTS["top1"]})
    assert (top1.method, top1.epochs, top1.batch_size) == ("retrain-top", 15, 128)
    fields = {f.name for f in dataclasses.fields(EraseConfig)}
    assert set(bench_erase._ROUND_DEFAULTS) <= fields


def test_pooled_references_keep_each_retrain_and_gaps_read_against_their_mean(
    tmp_path: Path,
) -> None:
    result = bench_erase.main(
        [
            "--setup", "mnist_cnn", "--preset", "toy", "--classes", "1", "--variants", "top1-e5",
            "--relearn-seeds", "1", "--relearn-max-steps", "2", "--ref-seeds", "2",
            "--out", str(tmp_path / "lab.json"), "--cache", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    rows = {r["model"]: r for r in result["rows"]}
    ref = rows["retrain"]
    assert len(ref["refs"]) == 2
    assert ref["relearn_runs"] == [x for r in ref["refs"] for x in r["relearn_runs"]]
    assert ref["probe_auc"] == pytest.approx(sum(r["probe_auc"] for r in ref["refs"]) / 2)
    # Two seeds, two retrains: different weights, so not one cached model read twice.
    cached = sorted(p.name for p in (tmp_path / "cache").glob("erase-lab-retrain-*.safetensors"))
    assert len(cached) == 2
    row = rows["top1-e5"]
    assert row["probe_gap"] == pytest.approx(row["probe_auc"] - ref["probe_auc"])
    assert row["cpu_cost_ratio"] == pytest.approx(row["cpu_seconds"] / ref["cpu_seconds"])
