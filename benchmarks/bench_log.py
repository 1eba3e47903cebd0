"""Benchmark of the signed audit log (DESIGN §9): appends, proofs at 10^6 entries, and full
offline verification of 10^6 entries.

    PYTHONPATH=sdk:audit python benchmarks/bench_log.py                 # everything
    PYTHONPATH=sdk:audit python benchmarks/bench_log.py --entries 100000 --appends 300

PostgreSQL appends run when ``--pg-url`` or ``LETHE_TEST_DATABASE_URL`` names a server (a
throw-away database is created and dropped). Results go to ``benchmarks/results/log.json``.

The 10^6-entry log is built by a *bulk path* (entries signed in parallel processes, rows
written with executemany, one checkpoint every ``--checkpoint-every`` entries) because a
million single-append transactions would take hours of fsyncs; it is then read, proven and
verified only through the real API (``AuditLog``, ``export_bundle``, ``verify_bundle``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lethe_audit import note, store, tlog
from lethe_audit import statements as S
from lethe_audit.log import AuditLog
from lethe_audit.verify import verify_bundle, verify_receipt

ORIGIN = "bench.lethe.example/log"
SEED = bytes(range(100, 132))


def statement_for(i: int) -> S.Statement:
    """A realistic mix: lifecycle events, and an unlearning attestation every 50th entry."""
    at = f"2024-{1 + (i // 2_500_000) % 12:02d}-{1 + (i // 86400) % 28:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"  # noqa: E501
    if i % 50 == 49:
        req = S.RequestRecord(
            id=f"req-{i:08d}",
            subject_commitment=S.hmac_commitment(b"bench-commitment-key", f"subject-{i}"),
            classes=(i % 10,),
            legal_basis="GDPR Art. 17(1)(a)",
            received_at="2024-01-01T00:00:00Z",
            due_at="2024-02-01T00:00:00Z",
            approved_at="2024-01-02T00:00:00Z",
        )
        return S.UnlearningAttestation(
            outcome="applied",
            requests=(req,),
            forgotten_classes=(i % 10,),
            applied_at="2024-01-03T00:00:00Z",
            model=S.ModelRef("resnet18-digits", "sha256:" + "a" * 64, "sha256:" + f"{i:064x}"),
            filter_bank_digest="sha256:" + "b" * 64,
            method=S.MethodRef("weight-filtering", "0.1.0", {"lr": 0.3, "epochs": 8}),
            metrics={"forget_accuracy": 0.001, "retain_accuracy": 0.985, "zrf": 0.912},
            policy=S.PolicyVerdict({"forget_accuracy_max": 0.01}, True, ()),
            onnx=S.OnnxRef(f"{i:064x}", "sha256:" + "c" * 64),
        ).to_statement()
    name = ("request.received", "request.approved")[i % 2]
    return S.LifecycleEvent(
        name, at, request_id=f"req-{i:08d}", details={"classes": [i % 10]}
    ).to_statement()


def _sign_range(start: int, stop: int) -> list[bytes]:
    signer = note.Signer.from_seed(ORIGIN, SEED)
    return [S.sign_statement(statement_for(i), signer).to_json() for i in range(start, stop)]


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- appends ----------------------------------------------------------------------------------


def bench_appends(url: str, n: int, progress: bool) -> dict[str, Any]:
    store.upgrade(url)
    signer = note.Signer.from_seed(ORIGIN, SEED)
    log = AuditLog(store.create_engine(url), signers=[signer])
    log.initialize()
    items = [statement_for(i) for i in range(n)]
    lat = []
    t0 = time.perf_counter()
    for st in tqdm(items, disable=not progress, desc="appends", unit="entry"):
        t = time.perf_counter()
        log.append(st)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    batch = [statement_for(i) for i in range(n, 2 * n)]
    t0 = time.perf_counter()
    for k in range(0, n, 100):
        log.append_many(batch[k : k + 100])
    batched = time.perf_counter() - t0
    assert log.size() == 2 * n
    lat.sort()
    log.engine.dispose()
    return {
        "appends": n,
        "seconds": round(total, 3),
        "appends_per_second": round(n / total, 1),
        "latency_ms_p50": round(1000 * lat[len(lat) // 2], 3),
        "latency_ms_p95": round(1000 * lat[int(len(lat) * 0.95)], 3),
        "batched_100_seconds": round(batched, 3),
        "batched_100_appends_per_second": round(n / batched, 1),
    }


def _pg_database(admin_url: str) -> tuple[str, Any]:
    import sqlalchemy as sa

    name = f"lethe_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()

    return url, drop


# --- the 10^6-entry log -------------------------------------------------------------------------


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(a + size, n)


def bulk_build(
    url: str, n: int, checkpoint_every: int, workers: int, progress: bool
) -> dict[str, Any]:
    """Write a log of ``n`` real signed entries straight into the tables (see module doc)."""
    import sqlalchemy as sa

    from lethe_audit.store import TlogCheckpoint, TlogEntry, TlogHead, TlogKey, TlogNode

    store.upgrade(url)
    signer = note.Signer.from_seed(ORIGIN, SEED)
    log = AuditLog(store.create_engine(url), signers=[signer])
    log.initialize()
    engine = log.engine
    compact = tlog.CompactRange()
    t_sign = t_db = 0.0
    t0 = time.perf_counter()
    chunk = 10_000
    with (
        ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool,
        tqdm(total=n, disable=not progress, desc="bulk build", unit="entry") as bar,
    ):
        ranges = list(_chunks(n, chunk))
        futures = [pool.submit(_sign_range, a, b) for a, b in ranges]
        for (a, _b), fut in zip(ranges, futures, strict=True):
            ts = time.perf_counter()
            envelopes = fut.result()
            t_sign += time.perf_counter() - ts
            td = time.perf_counter()
            now = _now()
            entries: list[dict[str, Any]] = []
            nodes: list[dict[str, Any]] = []

            def keep(lvl: int, idx: int, h: bytes, out: list[dict[str, Any]] = nodes) -> None:
                out.append({"level": lvl, "idx": idx, "hash": h})

            for k, env in enumerate(envelopes):
                leaf = tlog.leaf_hash(env)
                compact.append(leaf, on_node=keep)
                ptype = S.UNLEARNING_V1 if (a + k) % 50 == 49 else S.EVENT_V1
                entries.append(
                    {
                        "idx": a + k,
                        "leaf_hash": leaf,
                        "envelope": env,
                        "predicate_type": ptype,
                        "appended_at": now,
                    }
                )
            with engine.begin() as conn:
                # Bulk path only: a bigger page cache for the random-order unique index.
                conn.exec_driver_sql("PRAGMA cache_size=-262144")
                conn.execute(sa.insert(TlogEntry), entries)
                conn.execute(sa.insert(TlogNode), nodes)
                if compact.size % checkpoint_every == 0 or compact.size == n:
                    cp = tlog.Checkpoint(ORIGIN, compact.size, compact.root())
                    note_text = tlog.sign_checkpoint(cp, signer)
                    conn.execute(
                        sa.insert(TlogCheckpoint).values(
                            size=cp.size, root=cp.root, note=note_text, created_at=now
                        )
                    )
                    conn.execute(
                        sa.update(TlogHead)
                        .where(TlogHead.id == 1)
                        .values(
                            size=cp.size,
                            root=cp.root,
                            compact=compact.to_bytes(),
                            checkpoint=note_text,
                            updated_at=now,
                        )
                    )
            t_db += time.perf_counter() - td
            bar.update(len(envelopes))
    total = time.perf_counter() - t0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(TlogEntry)).scalar() == n
        assert conn.execute(sa.select(TlogKey.vkey)).scalar() == signer.vkey
    engine.dispose()
    return {
        "entries": n,
        "checkpoint_every": checkpoint_every,
        "seconds": round(total, 1),
        "waiting_for_signers_seconds": round(t_sign, 1),
        "database_seconds": round(t_db, 1),
    }


def bench_proofs(url: str, n: int, samples: int) -> dict[str, Any]:
    signer = note.Signer.from_seed(ORIGIN, SEED)
    log = AuditLog.open(url)
    head = log.head()
    assert head.size == n
    rng = random.Random(7)
    inc, inc_verify, cons, cons_verify, rec, rec_verify = [], [], [], [], [], []
    for _ in range(samples):
        index = rng.randrange(n)
        t = time.perf_counter()
        proof = log.inclusion_proof(index)
        inc.append(time.perf_counter() - t)
        leaf = tlog.leaf_hash(log.entry(index))
        t = time.perf_counter()
        tlog.verify_inclusion(leaf, index, n, proof, head.root)
        inc_verify.append(time.perf_counter() - t)
    import sqlalchemy as sa

    from lethe_audit.store import TlogCheckpoint

    with log.engine.connect() as conn:
        sizes = [
            s
            for (s,) in conn.execute(sa.select(TlogCheckpoint.size).where(TlogCheckpoint.size > 0))
        ]
    for _ in range(samples):
        size1 = rng.randrange(1, n)
        t = time.perf_counter()
        proof = log.consistency_proof(size1)
        cons.append(time.perf_counter() - t)
    # Verifying needs the old root: take it from the signed checkpoints the log stored.
    for size1 in rng.sample(sizes, min(samples, len(sizes))):
        proof = log.consistency_proof(size1)
        cp_root = tlog.Checkpoint.parse(note.parse(log.checkpoint(size1)).text).root
        t = time.perf_counter()
        tlog.verify_consistency(size1, n, proof, cp_root, head.root)
        cons_verify.append(time.perf_counter() - t)
    for _ in range(max(10, samples // 10)):
        index = rng.randrange(n)
        t = time.perf_counter()
        r = log.receipt(index)
        rec.append(time.perf_counter() - t)
        t = time.perf_counter()
        verify_receipt(r, [signer.verifier()])
        rec_verify.append(time.perf_counter() - t)
    log.engine.dispose()

    def ms(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {
            "median_ms": round(1000 * statistics.median(xs), 3),
            "p95_ms": round(1000 * xs[int(len(xs) * 0.95)], 3),
            "max_ms": round(1000 * xs[-1], 3),
        }

    return {
        "tree_size": n,
        "samples": samples,
        "inclusion_proof_from_db": ms(inc),
        "inclusion_proof_verify": ms(inc_verify),
        "consistency_proof_from_db": ms(cons),
        "consistency_proof_verify": ms(cons_verify),
        "receipt_export": ms(rec),
        "receipt_verify": ms(rec_verify),
    }


def verify_breakdown(bundle: Path, sample: int) -> dict[str, Any]:
    """Per-entry cost of each verification step, measured in-process on a sample."""
    from lethe_audit.verify._entry import check_envelope_signatures

    signer = note.Signer.from_seed(ORIGIN, SEED)
    known = {signer.key_hint: signer.verifier()}
    lines = []
    with (bundle / "entries.jsonl").open("rb") as f:
        for _ in range(sample):
            lines.append(f.readline().rstrip(b"\n"))
    t = time.perf_counter()
    envs = [S.Envelope.from_json(x) for x in lines]
    t_env = time.perf_counter() - t
    t = time.perf_counter()
    for e in envs:
        check_envelope_signatures(e, known)
    t_sig = time.perf_counter() - t
    t = time.perf_counter()
    sts = [S.Statement.from_envelope(e) for e in envs]
    t_parse = time.perf_counter() - t
    t = time.perf_counter()
    for s in sts:
        S.validate_statement(s)
    t_val = time.perf_counter() - t
    t = time.perf_counter()
    leaves = [tlog.leaf_hash(x) for x in lines]
    t_leaf = time.perf_counter() - t
    t = time.perf_counter()
    cr = tlog.CompactRange()
    for h in leaves:
        cr.append(h)
    t_tree = time.perf_counter() - t
    us = 1e6 / sample
    return {
        "sample_entries": sample,
        "per_entry_us": {
            "envelope_parse_and_canonical_check": round(t_env * us, 1),
            "ed25519_signature_check": round(t_sig * us, 1),
            "statement_parse_and_canonical_check": round(t_parse * us, 1),
            "statement_validation": round(t_val * us, 1),
            "leaf_hash": round(t_leaf * us, 2),
            "tree_append": round(t_tree * us, 2),
        },
        "per_checkpoint_signature_check_us": round(_checkpoint_cost(signer) * 1e6, 1),
    }


def bench_verify(bundle: Path, n: int, workers: int, progress: bool) -> dict[str, Any]:
    import resource

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    signer = note.Signer.from_seed(ORIGIN, SEED)
    c0 = cpu()
    t = time.perf_counter()
    verify_bundle(bundle, [signer.verifier()], workers=workers, progress=progress)
    seconds = time.perf_counter() - t
    cpu_seconds = cpu() - c0  # worker processes have exited, so their time is counted
    checkpoints = sum(1 for _ in (bundle / "checkpoints.jsonl").open("rb"))
    return {
        "entries": n,
        "checkpoints": checkpoints,
        "workers": workers,
        "seconds": round(seconds, 1),
        "entries_per_second": round(n / seconds),
        # What the run cost in CPU: on an otherwise idle machine with `workers` cores the
        # wall-clock time would be about cpu_seconds / workers.
        "cpu_seconds": round(cpu_seconds, 1),
        "idle_machine_estimate_seconds": round(cpu_seconds / workers, 1),
        "load_average_1min_after": round(os.getloadavg()[0], 1),
        "breakdown": verify_breakdown(bundle, min(20_000, n)),
    }


def remeasure(args: argparse.Namespace) -> None:
    work: Path = args.reuse
    big = f"sqlite:///{work / 'big.db'}"
    n = AuditLog.open(big).size()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    print("proofs ...", file=sys.stderr)
    results["proofs"] = bench_proofs(big, n, args.proof_samples)
    print("verify ...", file=sys.stderr)
    results["verify"] = bench_verify(work / "bundle", n, args.workers, not args.no_progress)
    results["remeasured"] = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _checkpoint_cost(signer: note.Signer) -> float:
    cp = tlog.sign_checkpoint(tlog.Checkpoint(ORIGIN, 5, bytes(32)), signer)
    v = [signer.verifier()]
    t = time.perf_counter()
    for _ in range(2000):
        tlog.verify_checkpoint(cp, v, origin=ORIGIN)
    return (time.perf_counter() - t) / 2000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=1000)
    ap.add_argument("--checkpoint-every", type=int, default=10_000)
    ap.add_argument("--proof-samples", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pg-url", default=os.environ.get("LETHE_TEST_DATABASE_URL"))
    ap.add_argument(
        "--workdir", type=Path, default=None, help="Scratch directory (default: a temp dir)."
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "log.json")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--keep", action="store_true", help="Keep the scratch directory.")
    ap.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="A kept scratch directory: skip appends and the bulk build, re-measure proofs and "
        "verification, and update those sections of --out.",
    )
    args = ap.parse_args()
    progress = not args.no_progress
    if args.reuse is not None:
        remeasure(args)
        return
    work = Path(tempfile.mkdtemp(prefix="lethe-bench-", dir=args.workdir))
    results: dict[str, Any] = {
        "benchmark": "lethe_audit log",
        "date": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
        },
        "workers": args.workers,
    }
    try:
        print("appends on SQLite ...", file=sys.stderr)
        results["append_sqlite"] = bench_appends(
            f"sqlite:///{work / 'appends.db'}", args.appends, progress
        )
        if args.pg_url:
            print("appends on PostgreSQL ...", file=sys.stderr)
            url, drop = _pg_database(args.pg_url)
            try:
                results["append_postgresql"] = bench_appends(url, args.appends, progress)
                import sqlalchemy as sa

                e = sa.create_engine(url)
                with e.connect() as conn:
                    results["machine"]["postgresql"] = conn.exec_driver_sql(
                        "SHOW server_version"
                    ).scalar()
                e.dispose()
            finally:
                drop()
        else:
            results["append_postgresql"] = "skipped: no --pg-url / LETHE_TEST_DATABASE_URL"

        big = f"sqlite:///{work / 'big.db'}"
        print(f"bulk-building {args.entries} entries ...", file=sys.stderr)
        results["bulk_build"] = bulk_build(
            big, args.entries, args.checkpoint_every, args.workers, progress
        )
        print("proofs ...", file=sys.stderr)
        results["proofs"] = bench_proofs(big, args.entries, args.proof_samples)
        print("export ...", file=sys.stderr)
        log = AuditLog.open(big)
        t = time.perf_counter()
        bundle = log.export_bundle(work / "bundle", progress=progress)
        export_s = time.perf_counter() - t
        log.engine.dispose()
        size_mb = sum(p.stat().st_size for p in bundle.iterdir() if p.is_file()) / 2**20
        results["export"] = {"seconds": round(export_s, 1), "bundle_mb": round(size_mb, 1)}
        print("verify ...", file=sys.stderr)
        results["verify"] = bench_verify(bundle, args.entries, args.workers, progress)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
