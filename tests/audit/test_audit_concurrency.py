"""Concurrent writers in several processes produce contiguous indices and a correct root."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from lethe_audit import note, statements, store, tlog
from lethe_audit.log import AuditLog
from lethe_audit.verify import verify_bundle

WRITER = textwrap.dedent(
    """
    import sys
    from lethe_audit import note, store, statements as S
    from lethe_audit.log import AuditLog
    url, seed = sys.argv[1], bytes.fromhex(sys.argv[2])
    worker, count = int(sys.argv[3]), int(sys.argv[4])
    signer = note.Signer.from_seed("example.org/lethe-test", seed)
    log = AuditLog(store.create_engine(url), signers=[signer])
    sys.stdin.readline()  # start together
    for i in range(count):
        rid = f"w{worker}-{i:04d}"
        ev = S.LifecycleEvent("request.received", "2024-05-01T00:00:00Z", request_id=rid)
        r = log.append(ev)
        assert not r.duplicate
        print(r.index, flush=True)
    """
)

PROCESSES, APPENDS = 4, 200


def test_four_processes_append_200_each(db_url: str, tmp_path: Path) -> None:
    seed = bytes(range(32, 64))
    signer = note.Signer.from_seed("example.org/lethe-test", seed)
    store.upgrade(db_url)
    log = AuditLog(store.create_engine(db_url), signers=[signer])
    log.initialize()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, seed.hex(), str(w), str(APPENDS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    reported = sorted(int(x) for out, _ in outputs for x in out.split())
    total = PROCESSES * APPENDS
    assert reported == list(range(total))  # contiguous, no index handed out twice
    assert log.size() == total
    rows = list(log.iter_entries())
    assert [i for i, _ in rows] == list(range(total))
    ids = sorted(
        statements.Statement.from_envelope(statements.Envelope.from_json(data)).predicate[
            "request_id"
        ]
        for _i, data in rows
    )
    assert ids == sorted(f"w{w}-{i:04d}" for w in range(PROCESSES) for i in range(APPENDS))
    assert log.head().root == tlog.root([tlog.leaf_hash(d) for _i, d in rows])
    verify_bundle(log.export_bundle(tmp_path / "bundle"), [signer.verifier()])
    log.engine.dispose()
