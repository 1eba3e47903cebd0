"""What every benchmark shares: paths, the machine description and the docs-section writer."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["BENCH_DIR", "CACHE", "DOCS", "REPO_ROOT", "RESULTS_DIR", "machine", "update_docs"]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# Trained base models and filter banks, keyed by recipe digest; not committed (see .gitignore).
CACHE = RESULTS_DIR / "cache"
DOCS = REPO_ROOT / "docs" / "benchmarks.md"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(*modules: str) -> dict[str, Any]:
    """CPU/GPU, load and the versions of ``modules`` (plus Python), for a result file."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }
    for name in ("torch", *modules):
        mod = importlib.import_module(name)
        info[name] = getattr(mod, "__version__", "unknown")
    return info


def update_docs(path: Path, section: str, body: str) -> None:
    """Replace one benchmark's section (between its markers) in ``docs/benchmarks.md``.

    The file is rewritten through a temporary file and a rename, so an interrupted run never
    leaves half a document.
    """
    begin, end = f"<!-- BEGIN {section} -->", f"<!-- END {section} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
