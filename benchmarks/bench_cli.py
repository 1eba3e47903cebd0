"""Start-up cost of the `lethe` CLI: `lethe --version`, `lethe request list` and `lethe request
show` (on a fresh SQLite project holding ``REQUESTS`` filed requests) as wall-clock seconds and
as a ratio to `python -c pass`, median of ``--runs`` runs each (issue 19: cheap commands must
not load PyTorch nor SQLAlchemy; target < 0.5 s on a warm machine).

    PYTHONPATH=sdk:audit python benchmarks/bench_cli.py [--runs 15]

Results go to ``benchmarks/results/cli.json``. Also records which heavy modules each command
imported (it must be none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "cli.json"
HEAVY = ("torch", "timm", "onnx", "onnxruntime", "sqlalchemy")
#: Requests filed into the benchmark's project (a model row stands in for a registered model:
#: registering a real one needs PyTorch, and only the requests' reading is measured).
REQUESTS = 20

_CHECK = (
    "import sys\nfrom lethe.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


def _lethe() -> str:
    exe = Path(sys.executable).with_name("lethe")
    return str(exe) if exe.exists() else "lethe"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(cmd: list[str], runs: int) -> dict[str, float]:
    """Wall clock and CPU time (user + system, which a loaded machine inflates far less)."""
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), _cpu()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
        cpu.append(_cpu() - c0)
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "cpu_median_s": round(statistics.median(cpu), 4),
    }


def _heavy(args: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _CHECK, *args], check=True, capture_output=True, text=True
    ).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def _seed(project: Path) -> str:
    """File ``REQUESTS`` requests against a stand-in model row; returns the last request id."""
    import sqlite3

    from lethe.workflow import Lethe

    with sqlite3.connect(project / "lethe.db") as conn:
        conn.execute(
            "INSERT INTO wf_models (name, spec, class_names, checkpoint_path, base_digest, "
            "eval_data_path, eval_data_digest, registered_at) VALUES ('digits', '{}', ?, 'x', "
            "?, 'x', ?, '2026-01-01 00:00:00.000000')",
            (json.dumps([str(i) for i in range(10)]), "0" * 64, "0" * 64),
        )
    with Lethe.open(project) as lt:
        ids = [
            lt.file(subject=f"s{i}@example.com", classes=[i % 10], legal_basis="gdpr-17-1-b").id
            for i in range(REQUESTS)
        ]
    return ids[-1]


def run(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        project = str(Path(tmp) / "project")
        subprocess.run([_lethe(), "--project", project, "init"], check=True, capture_output=True)
        last = _seed(Path(project))
        baseline = _time([sys.executable, "-c", "pass"], runs)
        commands = {
            "lethe --version": ["--version"],
            "lethe request list": ["--project", project, "request", "list"],
            "lethe request show": ["--project", project, "request", "show", last],
        }
        rows: dict[str, Any] = {}
        for label, args in commands.items():
            t = _time([_lethe(), *args], runs)
            rows[label] = {
                **t,
                "ratio_to_python": round(t["median_s"] / baseline["median_s"], 1),
                "cpu_ratio_to_python": round(t["cpu_median_s"] / baseline["cpu_median_s"], 1),
                "heavy_modules_imported": _heavy(args),
            }
    return {
        "benchmark": "cli-startup",
        "runs": runs,
        "requests_in_project": REQUESTS,
        "python_c_pass": baseline,
        "commands": rows,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    res = run(args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    for label, row in res["commands"].items():
        print(
            f"{label:22} median {row['median_s']:.3f} s wall ({row['ratio_to_python']}x python "
            f"-c pass), {row['cpu_median_s']:.3f} s CPU ({row['cpu_ratio_to_python']}x); heavy "
            f"modules: {row['heavy_modules_imported'] or 'none'}"
        )


if __name__ == "__main__":
    main()
