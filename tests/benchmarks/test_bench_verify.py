"""The model-verification benchmark at toy size: every verifier runs and is timed, and the
v2 signature it measures is the one sign_model writes."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_verify import _section, run

from tests.audit.test_model_verify import tiny_model


def test_bench_verify_times_every_verifier(tmp_path: Path) -> None:
    res = run(1, tmp_path, model_bytes=tiny_model().SerializeToString())
    med = res["median_s"]
    assert {"baseline", "lethe_v2", "lethe_v1", "load_verified", "ort_session", "lethe_cli"} <= set(
        med
    )
    assert "lethe_cli_process" in med and "model_signing_process" in med
    assert all(v > 0 for v in med.values())
    assert all(r > 0 for r in res["ratios"].values())
    text = _section(
        {"verify": res, "settings": {"repeats": 1}, "machine": {"cpu": "x", "cpu_count": 1}}
    )
    assert "lethe.onnx/v2" in text and "× hashing baseline" in text
    # The target, as it states it: against model_signing's verifier, headlined first.
    assert res["target_vs_model_signing"] == 1.5
    paired = res["paired_ratios"]["lethe_v2_vs_model_signing"]
    assert paired["min"] <= paired["median"] <= paired["max"]
    assert res["ratios"]["lethe_v2_vs_model_signing"] == paired["median"]
    headline = text.split("\n\n")[2]
    assert headline.startswith("Target (issue 18): Lethe's verification within 1.5x of OpenSSF")
    assert f"`verify_model` **{paired['median']:.2f}x**" in headline
    assert "| what | median s | × `model_signing` | × hashing baseline |" in text
