"""The CLI start-up benchmark at toy size: it measures both commands and records that neither
loaded a heavy module."""

from __future__ import annotations

from benchmarks.bench_cli import run


def test_bench_cli_measures_and_checks_imports() -> None:
    res = run(1)
    assert set(res["commands"]) == {"lethe --version", "lethe request list", "lethe request show"}
    for row in res["commands"].values():
        assert row["median_s"] > 0 and row["ratio_to_python"] > 0
        assert row["heavy_modules_imported"] == []
