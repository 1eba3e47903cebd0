"""Load on `lethe serve` over loopback: N concurrent app clients x M filings, each with an
idempotency key and each raced by a second client filing the same keys at the same time (the
retries of an app whose first call is still in flight), then one more retry of every key
(issue 17). Bounded in count and time: past ``--deadline`` seconds it stops and fails.
Checks: no duplicate request (every racer and retry gets the first id; the database holds
exactly N x M new requests), the log grew by exactly one entry per filing, is contiguous and
verifies. Reports p50/p99 latency and calls/s.

    PYTHONPATH=sdk:audit:. python benchmarks/bench_serve.py [--clients 8] [--filings 250] \
        [--deadline 600] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench]

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


class LoadDeadlineError(RuntimeError):
    """The load did not finish within its deadline (the server hangs or is far too slow)."""


def _file(cl: Any, c: int, i: int) -> str:
    r = cl.file(
        subject=SUBJECTS.format(c=c, i=i),
        classes=[str(i % 9)],
        legal_basis="gdpr-17-1-b",
        idempotency_key=f"k-{c}-{i}",
    )
    return str(r.id)


def _one_client(
    url: str, token: str, c: int, filings: int, out: dict[Any, Any], stop: threading.Event
) -> None:
    """Client ``c`` files its ``filings`` keys in order; ``out[c] = {latencies, ids}``. Its
    racer (same token, same keys, its own ``out``) runs the same code at the same time, so
    retries of a key race with its first filing."""
    from lethe import Client

    lat: list[float] = []
    ids: dict[str, str] = {}
    with Client(url, token, retries=5) as cl:
        for i in range(filings):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            ids[f"k-{c}-{i}"] = _file(cl, c, i)
            lat.append(time.perf_counter() - t0)
    out[c] = {"latencies": lat, "ids": ids}


def _run_phase(threads: list[threading.Thread], deadline: float, stop: threading.Event) -> None:
    """Start ``threads`` and join them, all by the monotonic ``deadline``; past it, tell them
    to stop and raise :class:`LoadDeadlineError`."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    if alive:
        stop.set()
        raise LoadDeadlineError(
            f"the load ran past its deadline: {alive} of {len(threads)} client thread(s) still "
            "running (a hung or overloaded server); they were told to stop"
        )


def _threads(
    target: Any, url: str, tokens: list[str], filings: int, out: dict[Any, Any], stop: Any
) -> list[threading.Thread]:
    return [
        threading.Thread(target=target, args=(url, t, c, filings, out, stop), daemon=True)
        for c, t in enumerate(tokens)
    ]


def run_load(
    url: str, tokens: list[str], filings: int, *, deadline_s: float = 600.0
) -> dict[str, Any]:
    """``len(tokens)`` concurrent clients (one app token each) x ``filings``, each raced by a
    second client with the same token and keys (retries of a key while its first filing is in
    flight), then one more retry of every key. All of it within ``deadline_s`` (else
    :class:`LoadDeadlineError`)."""
    deadline = time.monotonic() + deadline_s
    stop = threading.Event()
    out: dict[int, Any] = {}
    raced: dict[int, Any] = {}
    again: dict[int, Any] = {}
    t0 = time.perf_counter()
    both = [*_threads(_one_client, url, tokens, filings, out, stop),
            *_threads(_one_client, url, tokens, filings, raced, stop)]  # fmt: skip
    _run_phase(both, deadline, stop)
    # once everything is filed: every key again (its latencies are not reported)
    _run_phase(_threads(_one_client, url, tokens, filings, again, stop), deadline, stop)
    wall = time.perf_counter() - t0
    if not len(out) == len(raced) == len(again) == len(tokens):
        raise RuntimeError("a client failed (see its traceback above)")
    return _summary(filings, out, raced, again, wall)


def _summary(
    filings: int, out: dict[int, Any], raced: dict[int, Any], again: dict[int, Any], wall: float
) -> dict[str, Any]:
    lat = sorted(x for o in out.values() for x in o["latencies"])
    ids = {k: i for o in out.values() for k, i in o["ids"].items()}
    rival = {k: i for o in raced.values() for k, i in o["ids"].items()}
    retried = {k: i for o in again.values() for k, i in o["ids"].items()}
    all_ids = [*ids.values(), *rival.values(), *retried.values()]
    return {
        "clients": len(out),
        "filings_per_client": filings,
        "filings": len(lat),
        "calls": 3 * len(lat),
        "distinct_ids": len(set(all_ids)),
        "race_mismatches": sum(rival[k] != i for k, i in ids.items()),
        "retry_mismatches": sum(retried[k] != i for k, i in ids.items()),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "wall_s": round(wall, 2),
        "calls_per_s": round(3 * len(lat) / wall, 1),
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


def bench(
    clients: int, filings: int, database_url: str | None, port: int, *, deadline_s: float = 600.0
) -> dict[str, Any]:
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
            res = run_load(f"http://127.0.0.1:{port}", tokens, filings, deadline_s=deadline_s)
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
    res["load_avg_1m"] = round(os.getloadavg()[0], 1)  # the machine may be shared
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
            "race_mismatches": res["race_mismatches"] == 0,
            "retry_mismatches": res["retry_mismatches"] == 0,
            "requests_in_db": res["requests_in_db"] == n,
            "log_entries_added": res["log_entries_added"] == n,
        }.items()
        if not ok
    ]
    if bad:
        raise SystemExit(f"bench_serve: invariants broken: {bad}: {res}")


def _import_cell(label: str, seconds: float) -> str:
    code = _IMPORTS.get(label, label)
    return f"`{code}` {seconds} s" if code == label else f"`{code}` ({label}) {seconds} s"


def _docs(res: dict[str, Any]) -> str:
    return (
        "## Service (`benchmarks/bench_serve.py`)\n\n"
        f"`lethe serve` (its own process, uvicorn, {res['database']}) on loopback; "
        f"{res['clients']} concurrent `lethe.Client`s (one `app` token each) x "
        f"{res['filings_per_client']} filings with idempotency keys, each client raced by a "
        "second one filing the same keys with the same token at the same time, then one more "
        f"retry of every key ({res['calls']} calls), on {os.cpu_count()} CPU cores shared with "
        f"the clients (1-minute load average {res.get('load_avg_1m', '?')} at the end of the "
        "run; uvicorn's access log on, one line per call).\n\n"
        "| filings | p50 | p99 | calls/s | wall | duplicates | race / retry mismatches | log |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {res['filings']} | {res['p50_ms']} ms | {res['p99_ms']} ms | {res['calls_per_s']} | "
        f"{res['wall_s']} s | {res['distinct_ids'] - res['filings']} | "
        f"{res['race_mismatches']} / {res['retry_mismatches']} | "
        f"+{res['log_entries_added']} entries, contiguous, verified in "
        f"{res['log_verified_s']} s |\n\n"
        "p50/p99: latency of the original client's filings (its racer's calls and the "
        "retries count only in calls/s).\n\n"
        "Import time of the client against the full SDK (fresh interpreter, median of 5, same "
        "machine): " + ", ".join(_import_cell(k, v) for k, v in res["import_s"].items()) + ". "
        "`from lethe import Client` imports neither torch nor SQLAlchemy nor cryptography "
        "(`tests/serve/test_serve_flow.py` checks it)."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--filings", type=int, default=250)
    ap.add_argument("--database-url", default=os.environ.get("LETHE_BENCH_DATABASE_URL"))
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds for all the calls")
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args()
    res = bench(a.clients, a.filings, a.database_url, a.port, deadline_s=a.deadline)
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
