"""The AuditLog service on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lethe_audit import note, store, tlog
from lethe_audit import statements as S
from lethe_audit.errors import LogStateError, SignatureError, StatementError
from lethe_audit.log import APPEND_STEPS, AuditLog
from lethe_audit.verify import verify_bundle, verify_receipt
from tests.audit._audit_helpers import attestation, event


def _leaves(log: AuditLog) -> list[bytes]:
    return [tlog.leaf_hash(data) for _i, data in log.iter_entries()]


def test_append_prove_and_receipts(db_url: str, log_factory: Any, signer: note.Signer) -> None:
    log: AuditLog = log_factory(db_url)
    assert log.size() == 0 and log.head().root == tlog.EMPTY_ROOT
    results = [log.append(event(i)) for i in range(5)]
    results += log.append_many([event(i) for i in range(5, 21)])
    results.append(log.append(attestation(1)))
    assert [r.index for r in results] == list(range(22))
    assert all(not r.duplicate for r in results)
    assert results[-1].size == 22 == log.size()
    leaves = _leaves(log)
    head = log.head()
    assert head.root == tlog.root(leaves) and head.origin == signer.name
    tlog.verify_checkpoint(log.checkpoint(), signer.verifier(), origin=signer.name)
    # One checkpoint per append transaction; append_many signs one at its end.
    assert log.checkpoint(5) and log.checkpoint(21)
    with pytest.raises(LogStateError):
        log.checkpoint(6)
    for index in (0, 5, 13, 21):
        assert log.inclusion_proof(index) == tlog.inclusion_proof(index, 22, leaves)
        assert log.inclusion_proof(index, 21 if index < 21 else 22) == tlog.inclusion_proof(
            index, 21 if index < 21 else 22, leaves
        )
    for size1 in (1, 5, 8, 21, 22):
        assert log.consistency_proof(size1) == tlog.consistency_proof(size1, 22, leaves)
    receipt = log.receipt(13)
    verify_receipt(receipt, [signer.verifier()])
    old = log.receipt(3, size=5)
    verify_receipt(old, [signer.verifier()])
    with pytest.raises(LogStateError):
        log.receipt(5, size=5)
    with pytest.raises(LogStateError):
        log.inclusion_proof(22)
    assert log.find(event(3)) == 3 and log.find(event(99)) is None
    assert log.entry(21) == S.sign_statement(attestation(1).to_statement(), signer).to_json()


def test_retried_append_is_not_duplicated(db_url: str, log_factory: Any) -> None:
    log: AuditLog = log_factory(db_url)
    first = log.append(event(1))
    log.append(event(2))
    again = log.append(event(1))  # e.g. the first commit's outcome was unknown
    assert again.duplicate and again.index == first.index == 0
    assert log.size() == 2
    batch = log.append_many([event(2), event(3), event(3)])
    assert [(r.index, r.duplicate) for r in batch] == [(1, True), (2, False), (2, True)]
    assert log.size() == 3


def test_append_joins_the_callers_transaction(db_url: str, log_factory: Any) -> None:
    log: AuditLog = log_factory(db_url)
    marker = sa.Table("caller_rows", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    with log.engine.begin() as conn:
        marker.create(conn)
    # Rolled back together: neither the caller's row nor the entry survive.
    with Session(log.engine) as session:
        session.execute(marker.insert().values(id=1))
        r = log.append(event(1), session=session)
        assert r.index == 0
        session.rollback()
    assert log.size() == 0
    with log.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(marker)).scalar() == 0
    # Committed together.
    with Session(log.engine) as session, session.begin():
        session.execute(marker.insert().values(id=2))
        log.append(event(1), session=session)
    assert log.size() == 1
    with log.engine.begin() as conn:
        log.append(event(2), session=conn)
    assert log.size() == 2
    verify_receipt(log.receipt(1), log.verifiers())


def test_bad_input_changes_nothing(sqlite_url: str, log_factory: Any, signer: note.Signer) -> None:
    log: AuditLog = log_factory(sqlite_url)
    log.append(event(1))
    bad = S.Statement(event(2).to_statement().subject, "urn:lethe:event:v1", {"event": "x"})
    with pytest.raises(StatementError):
        log.append(bad)
    stranger = note.Signer.generate("example.org/lethe-test")
    foreign = S.sign_statement(event(3).to_statement(), stranger)
    with pytest.raises(SignatureError):
        log.append(foreign)
    own = S.sign_statement(event(3).to_statement(), signer)
    assert log.append(own).index == 1
    with pytest.raises(LogStateError, match="not active keys"):
        AuditLog(log.engine, signers=[stranger]).append(event(4))
    with pytest.raises(LogStateError, match="already initialised"):
        log.initialize()
    assert log.size() == 2
    verify_bundle(
        log.export_bundle(sqlite_url.removeprefix("sqlite:///") + ".bundle"), [signer.verifier()]
    )


def test_key_rotation_is_logged_and_both_keys_sign(
    db_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path
) -> None:
    log: AuditLog = log_factory(db_url)
    log.append(event(1))
    new = note.Signer.generate(signer.name)
    added = log.add_key(new)
    st_ = S.Statement.from_envelope(S.Envelope.from_json(log.entry(added.index)))
    assert st_.predicate["event"] == "key.rotated"
    assert st_.predicate["details"]["action"] == "added"
    assert st_.predicate["details"]["key"] == new.vkey
    # During the overlap, checkpoints carry both signatures; either key verifies alone.
    during = log.append(event(2))
    assert {s.name for s in note.parse(during.checkpoint).signatures} == {signer.name}
    assert len(note.parse(during.checkpoint).signatures) == 2
    for key in (signer, new):
        tlog.verify_checkpoint(during.checkpoint, key.verifier())
    with pytest.raises(LogStateError, match="not loaded"):
        AuditLog(log.engine, signers=[signer]).append(event(3))
    retired = log.retire_key(signer.vkey)
    assert len(note.parse(retired.checkpoint).signatures) == 2  # the retiring key signs its exit
    after = log.append(event(3))
    assert len(note.parse(after.checkpoint).signatures) == 1
    with pytest.raises(SignatureError):
        tlog.verify_checkpoint(after.checkpoint, signer.verifier())
    keys = log.signing_keys()
    assert [(k.status, k.retired_at_size) for k in keys] == [
        ("retired", retired.size),
        ("active", None),
    ]
    bundle = log.export_bundle(tmp_path / "b")
    verify_bundle(bundle, [signer.verifier(), new.verifier()])
    with pytest.raises(SignatureError) as e:
        verify_bundle(bundle, [signer.verifier()])
    assert e.value.size == after.size or e.value.index == after.index
    with pytest.raises(SignatureError):
        verify_bundle(bundle, [new.verifier()])  # the early entries are signed by the old key only


@pytest.mark.parametrize("step", APPEND_STEPS)
def test_an_exception_at_any_step_leaves_the_log_intact(
    step: str, db_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path
) -> None:
    log: AuditLog = log_factory(db_url)
    log.append_many([event(i) for i in range(6)])

    class Injected(RuntimeError):
        pass

    def fault(at: str) -> None:
        if at == step:
            raise Injected(at)

    broken = AuditLog(log.engine, signers=[signer], _fault=fault)
    with pytest.raises(Injected):
        broken.append(event(6))
    assert log.size() == 6
    assert log.find(event(6)) is None
    verify_bundle(log.export_bundle(tmp_path / "after-fault"), [signer.verifier()])
    # And the log carries on from exactly where it was.
    assert log.append(event(6)).index == 6
    verify_bundle(log.export_bundle(tmp_path / "after-retry"), [signer.verifier()])


CRASHER = textwrap.dedent(
    """
    import os, sys
    from lethe_audit import note, store, statements as S
    from lethe_audit.log import AuditLog
    url, seed, step = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
    signer = note.Signer.from_seed("example.org/lethe-test", seed)
    def fault(at):
        if at == step:
            os._exit(17)  # the process dies mid-transaction: no rollback, no cleanup
    log = AuditLog(store.create_engine(url), signers=[signer], _fault=fault)
    log.append(S.LifecycleEvent("log.note", "2024-05-01T00:00:00Z", details={"n": 99}))
    """
)


@pytest.mark.parametrize("step", ["entries", "checkpoint", "head", "commit"])
def test_a_killed_process_leaves_the_log_intact(step: str, db_url: str, tmp_path: Path) -> None:
    seed = bytes(range(32))
    signer = note.Signer.from_seed("example.org/lethe-test", seed)
    store.upgrade(db_url)
    log = AuditLog(store.create_engine(db_url), signers=[signer])
    log.initialize()
    log.append_many([event(i) for i in range(5)])
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, db_url, seed.hex(), step],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    assert log.size() == 5
    verify_bundle(log.export_bundle(tmp_path / "b"), [signer.verifier()])
    assert log.append(event(5)).index == 5
    log.engine.dispose()
