"""The unlearning benchmark's code paths at toy size (a few batches), so they cannot rot.

The numbers mean nothing here (a base model trained one epoch on 120 images); only the shape of
the results, the documents and the cache are checked. Real numbers come from real runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_unlearning as bench
from lethe.data import default_data_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (default_data_dir() / "mnist").is_dir(),
        reason="needs ../shared/data/mnist (present in CI)",
    ),
]


def _run(tmp_path: Path, *extra: str) -> dict:
    return bench.main(
        [
            "--preset", "toy",
            "--out", str(tmp_path / "result.json"),
            "--docs", str(tmp_path / "benchmarks.md"),
            "--figures", str(tmp_path / "figures"),
            "--cache", str(tmp_path / "cache"),
            "--quiet",
            *extra,
        ]
    )  # fmt: skip


def test_toy_preset_runs_every_method_and_writes_json_docs_and_plots(tmp_path: Path) -> None:
    result = _run(tmp_path, "--only", "mnist_cnn")
    assert json.loads((tmp_path / "result.json").read_text()) == json.loads(
        json.dumps(result, sort_keys=True)
    )
    s = result["setups"]["mnist_cnn"]
    assert set(s["comparison"]) == set(bench.METHODS)
    # One single class and one set of each size, the same for every method.
    forget_sets = {m: [r["forget"] for r in rows] for m, rows in s["comparison"].items()}
    assert len({json.dumps(v) for v in forget_sets.values()}) == 1
    assert [len(f) for f in forget_sets["lethe"]] == [1, 2, 3, 5]
    row = s["comparison"]["lethe"][0]
    for key in ("forget_acc", "retain_acc", "mia", "probe_auc", "probe_auc_base", "zrf"):
        assert row[key] is not None and 0.0 <= row[key] <= 1.0, key
    assert row["relearn_steps"] is not None
    # Coverage: every class alone, then the seeded sets.
    assert [r["forget"] for r in s["lethe_coverage"][:10]] == [[c] for c in range(10)]
    assert s["gaps_to_retrain"]["retrain"]["retain_acc"] == 0.0
    cost = s["cost"]
    assert cost["any_class_seconds"]["lethe"] == cost["lethe_round_seconds"] > 0
    assert cost["any_class_seconds"]["retrain"] == pytest.approx(
        10 * cost["per_class_seconds"]["retrain"]
    )
    assert {"single_forget_worst", "epoch_ratio", "retrain_all_vs_round"} <= set(s["targets"])
    # Phase 2 beside the others, with its depth against retraining and its targets.
    erase_row = s["comparison"]["lethe_erase"][0]
    assert len(erase_row["relearn_runs"]) == bench.PRESETS["toy"].relearn_seeds
    depth = s["gaps_to_retrain"]["lethe_erase"]
    assert depth["seconds_vs_retrain"] > 0 and depth["relearn_ratio_min"] is not None
    assert depth["relearn_ratio_min"] <= depth["relearn_ratio_median"]
    assert {"erase_relearn_ratio_median", "erase_probe_gap_max", "erase_seconds_vs_retrain"} <= set(
        s["targets"]
    )
    md = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- BEGIN unlearning-toy -->" in md and "<!-- END unlearning-toy -->" in md
    assert "| NegGrad+ |" in md and "| SSD |" in md
    assert "| Lethe mask + erase (phase 2) |" in md and "relearn / retrain: median (worst)" in md
    assert "Erase phase against DESIGN §9" in md
    pngs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert pngs == ["bench-toy-cost-quality.png", "bench-toy-mnist_cnn-classes.png"]
    assert all((tmp_path / "figures" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert str(tmp_path) not in md


def test_base_model_and_bank_are_cached_by_digest(tmp_path: Path) -> None:
    first = _run(tmp_path, "--only", "mnist_vit", "--methods", "lethe")
    second = _run(tmp_path, "--only", "mnist_vit", "--methods", "lethe")
    a, b = first["setups"]["mnist_vit"], second["setups"]["mnist_vit"]
    assert not a["base"]["cached"] and b["base"]["cached"]
    assert not a["lethe_round"]["cached"] and b["lethe_round"]["cached"]
    assert a["base"]["digest"] == b["base"]["digest"]
    assert a["lethe_coverage"] == [
        {**r, "fold_seconds": a["lethe_coverage"][i]["fold_seconds"]}
        for i, r in enumerate(b["lethe_coverage"])
    ]
    assert set(a["comparison"]) == {"lethe"}
    assert "gaps_to_retrain" in a and a["gaps_to_retrain"] == {}  # no retrain, no gaps


def test_forget_sets_are_seeded_and_distinct() -> None:
    preset = bench.PRESETS["full"]
    a = bench.forget_sets(10, preset, 3, salt=3)
    assert a == bench.forget_sets(10, preset, 3, salt=3)
    assert a != bench.forget_sets(10, preset, 3, salt=4)
    assert [len(s) for s in a] == [2, 2, 2, 3, 3, 3, 5, 5, 5]
    assert len({tuple(s) for s in a}) == 9
    # Never asks for more distinct sets than exist.
    assert len(bench.forget_sets(3, preset, 10, salt=0)) == 3  # only the pairs of 3 classes


def test_unknown_preset_setup_or_method_is_refused() -> None:
    with pytest.raises(SystemExit):
        bench.run("nope")
    with pytest.raises(SystemExit, match="unknown setups/methods"):
        bench.run("toy", only=["mnist_nope"])
    with pytest.raises(SystemExit, match="unknown setups/methods"):
        bench.run("toy", methods=["magic"])


def test_single_classes_are_all_or_a_seeded_sample_per_dataset() -> None:
    full = bench.PRESETS["full"]
    assert bench.sampled_singles(10, full, "mnist") == list(range(10))
    cifar = bench.sampled_singles(10, full, "cifar10")
    assert len(cifar) == 5 and cifar == sorted(set(cifar))
    assert cifar == bench.sampled_singles(10, full, "cifar10")
    assert set(bench.PRESETS["full"].setups) >= {
        "mnist_cnn", "mnist_resnet18", "mnist_vit", "fashion_mnist_resnet18",
        "cifar10_resnet18", "cifar10_vit",
    }  # fmt: skip


def test_deadline_skips_work_and_lists_it(tmp_path: Path) -> None:
    result = _run(tmp_path, "--deadline", "0", "--no-docs")
    assert result["skipped_at_deadline"] == list(bench.PRESETS["toy"].setups)
    assert result["setups"] == {}
    assert result["settings"]["deadline_seconds"] == 0


class _PassesAfter(bench.Deadline):
    """A deadline that passes after ``n`` checks, so the test knows what must be skipped."""

    def __init__(self, n: int) -> None:
        super().__init__(None)
        self.left = n

    def passed(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_comparison_cut_by_deadline_keeps_whole_results_and_saves_each_step(
    tmp_path: Path,
) -> None:
    saved: list[dict] = []
    preset = bench.replace(bench.PRESETS["toy"], methods=("lethe", "retrain", "head_mask"))
    out = bench.run_setup(
        "mnist_cnn", preset, cache=tmp_path / "cache", progress=False, log=lambda _m: None,
        deadline=_PassesAfter(4), save=lambda o: saved.append(json.loads(json.dumps(o))),
    )  # fmt: skip
    # Sets outside, methods inside: the first set has all three methods, the second only Lethe.
    rows = out["comparison"]
    assert [len(r) for r in rows.values()] == [2, 1, 1]
    first = rows["lethe"][0]["forget"]
    assert rows["retrain"][0]["forget"] == rows["head_mask"][0]["forget"] == first
    assert len(out["skipped_at_deadline"]) == 4 * 3 - 4
    assert out["skipped_at_deadline"][0] == f"retrain {rows['lethe'][1]['forget']}"
    # The cost and gaps are computed from what finished.
    assert out["gaps_to_retrain"]["lethe"]["retain_acc"] is not None
    assert "retrain" in out["cost"]["per_class_seconds"]
    # One save after the coverage, then one per finished comparison run.
    assert len(saved) == 1 + 4
    assert "comparison" not in saved[0] and len(saved[-1]["comparison"]["lethe"]) == 2


def test_render_merges_runs_of_one_preset_into_json_docs_and_plots(tmp_path: Path) -> None:
    a = _run(tmp_path, "--only", "mnist_cnn", "--methods", "lethe", "head_mask", "--no-docs",
             "--out", str(tmp_path / "a.json"))  # fmt: skip
    _run(tmp_path, "--only", "mnist_vit", "--methods", "lethe", "--no-docs",
         "--out", str(tmp_path / "b.json"))  # fmt: skip
    merged = _run(
        tmp_path, "--render", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
        "--note", "Two calls, one process each.",
    )  # fmt: skip
    assert list(merged["setups"]) == ["mnist_cnn", "mnist_vit"]
    assert merged["setups"]["mnist_cnn"] == json.loads(json.dumps(a["setups"]["mnist_cnn"]))
    assert [p["setups"] for p in merged["parts"]] == [["mnist_cnn"], ["mnist_vit"]]
    assert json.loads((tmp_path / "result.json").read_text())["parts"] == merged["parts"]
    md = (tmp_path / "benchmarks.md").read_text()
    assert "### mnist_cnn" in md and "### mnist_vit" in md and "Merged from runs" in md
    assert "Two calls, one process each." in md and merged["note"] in md
    assert (tmp_path / "figures" / "bench-toy-mnist_vit-classes.png").exists()
    with pytest.raises(SystemExit, match="cannot merge"):
        bench.merge([a, {**a, "preset": "quick"}])


def test_shards_split_the_forget_sets_and_render_joins_them(tmp_path: Path) -> None:
    # Two shards of one setup share the cache (one base model, one bank) and compare
    # alternate forget sets; --render joins their rows and recomputes the gaps.
    opts = ("--only", "mnist_cnn", "--methods", "lethe", "retrain", "--no-docs")
    a = _run(tmp_path, *opts, "--shard", "0/2", "--out", str(tmp_path / "a.json"))
    b = _run(tmp_path, *opts, "--shard", "1/2", "--out", str(tmp_path / "b.json"))
    sa, sb = a["setups"]["mnist_cnn"], b["setups"]["mnist_cnn"]
    assert sa["base"]["digest"] == sb["base"]["digest"] and sa["shard"] == [0, 2]
    every = [[c] for c in sa["singles"]] + bench.forget_sets(
        10, bench.PRESETS["toy"], bench.PRESETS["toy"].sets_per_size, salt=3
    )
    assert [r["forget"] for r in sa["comparison"]["retrain"]] == every[0::2]
    assert [r["forget"] for r in sb["comparison"]["retrain"]] == every[1::2]
    merged = _run(tmp_path, "--render", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    joined = merged["setups"]["mnist_cnn"]
    assert sorted(r["forget"] for r in joined["comparison"]["lethe"]) == sorted(every)
    pairs = zip(joined["comparison"]["lethe"], joined["comparison"]["retrain"], strict=True)
    ratios = [x["relearn_steps"] / y["relearn_steps"] for x, y in pairs if y["relearn_steps"]]
    assert joined["gaps_to_retrain"]["lethe"]["relearn_ratio_min"] == min(ratios)
    other = json.loads(json.dumps(b))
    other["setups"]["mnist_cnn"]["base"]["digest"] = "0" * 64
    with pytest.raises(SystemExit, match="different base models"):
        bench.merge([a, other])
    with pytest.raises(SystemExit, match="0 <= K < N"):
        bench.run("toy", shard=(2, 2))


def test_merged_parallel_runs_report_their_span_too() -> None:
    from benchmarks._unlearning_report import _duration

    def parts(*starts: str) -> dict:
        runs = [{"date": f"2026-12-04T02:{m}:00Z", "wall_seconds": 300.0} for m in starts]
        return {"wall_seconds": 300.0 * len(runs), "parts": runs}

    assert _duration(parts("00", "05", "10")) == "15 min"  # one after the other
    assert _duration(parts("00", "01", "02")) == (
        "15 min of runs, 7 min from the first start to the last end,"
    )
    assert _duration({"wall_seconds": 90.0}) == "2 min"


def test_gpu_script_parts_run_and_stop_at_their_deadline(tmp_path: Path) -> None:
    # The script's plumbing at a budget too small for any work: every part writes its JSON
    # and lists what it skipped (the real runs are in benchmarks/results/gpu/).
    import os
    import subprocess
    import sys

    script = Path(bench.__file__).with_name("gpu.sh")
    env = {**os.environ, "PYTHON": sys.executable, "BUDGET": "0"}
    for part in ("mnist", "compare"):
        subprocess.run(["bash", str(script), part, str(tmp_path)], check=True, env=env)
    lethe_only = json.loads((tmp_path / "gpu-mnist-lethe.json").read_text())
    assert lethe_only["settings"]["methods"] == ["lethe"]
    assert set(lethe_only["skipped_at_deadline"]) == {
        "mnist_resnet18", "mnist_cnn", "fashion_mnist_resnet18", "mnist_vit",
    }  # fmt: skip
    for name in ("cifar10_resnet18", "mnist_resnet18", "mnist_cnn", "mnist_vit"):
        part = json.loads((tmp_path / f"gpu-compare-{name}.json").read_text())
        assert part["preset"] == "gpu" and part["skipped_at_deadline"] == [name]
    bad = subprocess.run(["bash", str(script), "nope", str(tmp_path)], env=env, check=False)
    assert bad.returncode == 2
