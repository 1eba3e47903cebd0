"""Issue 16's benchmark at toy size (preset ``tiny``: 6 train / 3 test PNGs a class, 16x16, one
epoch): every step runs through the real ``lethe`` command line and the bookkeeping holds. The
model is near chance here, so only the refusal for missing preprocessing is a fixed outcome;
the served ONNX must still score exactly what Lethe measured (one image is 0.07 here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_byo
from lethe.data import default_data_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (default_data_dir() / "fashion-mnist").is_dir(),
        reason="needs ../shared/data/fashion-mnist",
    ),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tiny_preset_runs_the_scenario_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "byo.json"
    res = bench_byo.main(["--preset", "tiny", "--out", str(out), "--keep", str(tmp_path / "w")])
    assert json.loads(out.read_text())["preset"] == "tiny"
    assert res["outside"]["classes"] == sorted(bench_byo.CLASSES.values())  # no dot-folder
    assert (tmp_path / "w" / "data" / "test" / ".ipynb_checkpoints").is_dir()
    reg = res["register"]
    assert reg["no_preprocessing"]["exit_code"] == 171
    assert "--mean R,G,B" in reg["no_preprocessing"]["message"]
    assert reg["mean_std_0.5"]["exit_code"] in (0, 172)
    assert reg["imagenet_pt"]["base_accuracy"] == pytest.approx(res["outside"]["real_accuracy"])
    assert reg["imagenet_safetensors"]["base_accuracy"] == reg["imagenet_pt"]["base_accuracy"]
    assert reg["preprocessing"]["mean"] == pytest.approx(list(bench_byo.IMAGENET_MEAN))
    assert res["forget"]["apply"]["exit_code"] == 0 and res["forget"]["apply"]["passed"]
    served = res["served"]["apply"]
    assert served["exit_code"] == 0 and served["n_forget"] == 3 and served["n_retain"] == 15
    diff = res["differences"]
    assert diff["apply_served_minus_measured_retain"] == 0.0
    assert diff["apply_served_minus_measured_forget"] == 0.0
