"""Load on `lethe serve` over loopback: N concurrent app clients x M filings, each with an
idempotency key, then a retry of every key (issue 17). Checks: no duplicate request (every
retry returns the first id; the database holds exactly N x M new requests), the log grew by
exactly one entry per filing, is contiguous and verifies. Reports p50/p99 latency and req/s.

    PYTHONPATH=sdk:audit:. python benchmarks/bench_serve.py [--clients 8] [--filings 250] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench]

The server runs as its own process (`lethe serve`), as deployed; the clients are threads of
this one. Results: ``benchmarks/results/serve.json`` and the "Service" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"
SUBJECTS = "subject-{c}-{i}@example.com"


def _one_client(url: str, token: str, c: int, filings: int, out: dict[int, Any]) -> None:
    from lethe import Client

    lat: list[float] = []
    ids: dict[str, str] = {}
    with Client(url, token, retries=5) as cl:
        for i in range(filings):
            t0 = time.perf_counter()
            r = cl.file(
                subject=SUBJECTS.format(c=c, i=i),
                classes=[str(i % 9)],
                legal_basis="gdpr-17-1-b",
                idempotency_key=f"k-{c}-{i}",
            )
            lat.append(time.perf_counter() - t0)
            ids[f"k-{c}-{i}"] = r.id
        mismatched = 0
        for i in range(filings):  # the retries: same keys, same subjects -> same requests
            r = cl.file(
                subject=SUBJECTS.format(c=c, i=i),
                classes=[str(i % 9)],
                legal_basis="gdpr-17-1-b",
                idempotency_key=f"k-{c}-{i}",
            )
            mismatched += r.id != ids[f"k-{c}-{i}"]
    out[c] = {"latencies": lat, "ids": ids, "mismatched": mismatched}


def run_load(url: str, tokens: list[str], filings: int) -> dict[str, Any]:
    """``len(tokens)`` concurrent clients (one app token each) x ``filings``, then retries."""
    out: dict[int, Any] = {}
    threads = [
        threading.Thread(target=_one_client, args=(url, t, c, filings, out))
        for c, t in enumerate(tokens)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if len(out) != len(tokens):
        raise RuntimeError(f"{len(tokens) - len(out)} client(s) failed (see their traceback)")
    lat = sorted(x for o in out.values() for x in o["latencies"])
    ids = [i for o in out.values() for i in o["ids"].values()]
    return {
        "clients": len(tokens),
        "filings_per_client": filings,
        "filings": len(lat),
        "calls": 2 * len(lat),
        "distinct_ids": len(set(ids)),
        "retry_mismatches": sum(o["mismatched"] for o in out.values()),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "wall_s": round(wall, 2),
        "calls_per_s": round(2 * len(lat) / wall, 1),
    }


def make_project(pdir: Path, database_url: str | None) -> None:
    """A project with one registered (untrained, tiny) model: filing needs only its classes."""
    from lethe.data import load_digits, stratified_split
    from lethe.models import ModelSpec, create_model, save_checkpoint
    from lethe.workflow import Lethe

    spec = ModelSpec(arch="resnet18", num_classes=10, in_chans=1, input_size=(32, 32))
    _, test = stratified_split(load_digits(), test_fraction=0.25, seed=0)
    pdir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        create_model(spec, seed=0), spec, pdir / "model.safetensors", trained_by="lethe"
    )
    with Lethe.init(pdir / "p", database_url=database_url, origin="bench.example/serve") as lt:
        # An untrained model: the registration's accuracy preflight must be told (force).
        lt.register_model("digits", pdir / "model.safetensors", eval_data=test, force=True)


def _start_server(project: Path, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("lethe")
    cmd = [str(exe) if exe.exists() else "lethe", "--project", str(project), "serve"]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--max-in-flight", "64"])
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("lethe serve did not start")


def bench(clients: int, filings: int, database_url: str | None, port: int) -> dict[str, Any]:
    from lethe.serve import create_token
    from lethe.workflow import Lethe

    with tempfile.TemporaryDirectory() as tmp:
        make_project(Path(tmp), database_url)
        project = Path(tmp) / "p"
        with Lethe.open(project) as lt:
            tokens = [
                create_token(lt.engine, name=f"app-{c}", role="app")[0] for c in range(clients)
            ]
            size0 = lt.log.size()
        proc = _start_server(project, port)
        try:
            res = run_load(f"http://127.0.0.1:{port}", tokens, filings)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        with Lethe.open(project) as lt:
            res["requests_in_db"] = len(lt.list())
            res["log_entries_added"] = lt.log.size() - size0
            t0 = time.perf_counter()
            lt.verify_log()
            res["log_verified_s"] = round(time.perf_counter() - t0, 2)
    res["database"] = "postgresql" if database_url else "sqlite"
    return res


_IMPORTS = {
    "from lethe import Client": "from lethe import Client",
    "full SDK": "import lethe, lethe.filters, lethe.models; lethe.Lethe",
    "python -c pass": "pass",
}


def import_times(runs: int = 5) -> dict[str, float]:
    """Median wall-clock seconds of a fresh interpreter doing each import (``_IMPORTS``)."""
    out = {}
    for label, code in _IMPORTS.items():
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        out[label] = round(statistics.median(times), 3)
    return out


def _check(res: dict[str, Any]) -> None:
    n = res["filings"]
    bad = [
        k
        for k, ok in {
            "distinct_ids": res["distinct_ids"] == n,
            "retry_mismatches": res["retry_mismatches"] == 0,
            "requests_in_db": res["requests_in_db"] == n,
            "log_entries_added": res["log_entries_added"] == n,
        }.items()
        if not ok
    ]
    if bad:
        raise SystemExit(f"bench_serve: invariants broken: {bad}: {res}")


def _docs(res: dict[str, Any]) -> str:
    return (
        "## Service (`benchmarks/bench_serve.py`)\n\n"
        f"`lethe serve` (its own process, uvicorn, {res['database']}) on loopback; "
        f"{res['clients']} concurrent `lethe.Client`s (one `app` token each) x "
        f"{res['filings_per_client']} filings with idempotency keys, then a retry of every key "
        f"({res['calls']} calls), on {os.cpu_count()} CPU cores shared with the clients.\n\n"
        "| filings | p50 | p99 | calls/s | wall | duplicates | retry mismatches | log |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {res['filings']} | {res['p50_ms']} ms | {res['p99_ms']} ms | {res['calls_per_s']} | "
        f"{res['wall_s']} s | {res['filings'] - res['distinct_ids']} | "
        f"{res['retry_mismatches']} | +{res['log_entries_added']} entries, contiguous, "
        f"verified in {res['log_verified_s']} s |\n\n"
        "p50/p99: latency of the first filing of each key (the retries are idempotent reads "
        "of the same request and are counted only in calls/s).\n\n"
        "Import time of the client against the full SDK (fresh interpreter, median of 5, same "
        "machine): " + ", ".join(f"`{k}` {v} s" for k, v in res["import_s"].items()) + "."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--filings", type=int, default=250)
    ap.add_argument("--database-url", default=os.environ.get("LETHE_BENCH_DATABASE_URL"))
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args()
    res = bench(a.clients, a.filings, a.database_url, a.port)
    _check(res)
    res["import_s"] = import_times()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    if not a.no_docs:
        from benchmarks._common import DOCS, update_docs

        update_docs(DOCS, "serve", _docs(res))


if __name__ == "__main__":
    main()
