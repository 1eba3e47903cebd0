"""The Fides webhook on loopback (issue 17): N subjects mapped, N two-way webhooks (each files
one request and halts), the same N again (retries: nothing new filed), one apply of them all,
then one resume pass calling a loopback stand-in for Fides' resume endpoint; a second pass
calls nothing. Reports p50/p99 latencies and the pass's duration.

    PYTHONPATH=sdk:audit:. python benchmarks/bench_fides.py --project COPY_OF_A_PROJECT [--n 100]

``--project`` is changed (tokens, mappings, requests, an apply): pass a copy of a project with
a registered model (e.g. the test template under $LETHE_TEST_CACHE). The numbers are in
docs/service.md ("Fides").
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _fides() -> tuple[ThreadingHTTPServer, list[str]]:
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # Fides' POST /privacy-request/<id>/resume
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def _ms(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(
        1000 * (statistics.median(s) if q == 0.5 else s[min(len(s) - 1, int(q * len(s)))]), 1
    )


def run(project: Path, n: int) -> dict[str, Any]:
    import httpx

    from lethe import Client
    from lethe.serve import create_app, create_token, serve_in_thread
    from lethe.workflow import Lethe

    server, calls = _fides()
    fides_url = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    with Lethe.open(project) as lt:
        tok = {
            r: create_token(lt.engine, name=f"bench-{r}", role=r)[0] for r in ("app", "operator")
        }
        with serve_in_thread(create_app(lt, fides_url=fides_url)) as url:
            app = Client(url, tok["app"])
            mapped = []
            for i in range(n):
                t = time.perf_counter()
                app.map_subject(f"user{i}@example.com", classes=[1 + i % 3])
                mapped.append(time.perf_counter() - t)
            http = httpx.Client(base_url=url, timeout=120)
            http.headers["Authorization"] = f"Bearer {tok['app']}"

            def hook(i: int) -> float:
                prid = f"pri_bench_{i}"
                body = {"privacy_request_id": prid, "privacy_request_status": "in_processing",
                        "direction": "two_way", "callback_type": "pre", "policy_action": "erasure",
                        "identity": {"email": f"user{i}@example.com"}}  # fmt: skip
                headers = {
                    "reply-to": f"/privacy-request/{prid}/resume",
                    "reply-to-token": f"jwe.{i}",
                }
                t = time.perf_counter()
                r = http.post("/v1/fides/webhook", json=body, headers=headers)
                if r.status_code != 200 or r.json()["halt"] is not True:
                    raise SystemExit(f"webhook {i}: {r.status_code} {r.text[:200]}")
                return time.perf_counter() - t

            first = [hook(i) for i in range(n)]
            retry = [hook(i) for i in range(n)]
            filed = [r for r in lt.list() if r.filed_by == "bench-app"]
            for r in filed:
                lt.approve(r.id, actor="bench-dpo")
            t = time.perf_counter()
            lt.apply(None, phase="mask", progress=False)
            apply_s = time.perf_counter() - t
            op = Client(url, tok["operator"])
            t = time.perf_counter()
            report = op.resume_fides()
            resume_s = time.perf_counter() - t
            second = op.resume_fides()
    server.shutdown()
    return {
        "n": n,
        "map_subject_ms": {"p50": _ms(mapped, 0.5), "p99": _ms(mapped, 0.99)},
        "webhook_ms": {"p50": _ms(first, 0.5), "p99": _ms(first, 0.99)},
        "webhook_retry_ms": {"p50": _ms(retry, 0.5), "p99": _ms(retry, 0.99)},
        "requests_filed": len(filed),
        "apply_s": round(apply_s, 1),
        "resume_pass_s": round(resume_s, 2),
        "resumed": len(report["resumed"]),
        "fides_calls": len(calls),
        "second_pass_resumed": len(second["resumed"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    print(json.dumps(run(args.project, args.n), indent=1))


if __name__ == "__main__":
    main()
