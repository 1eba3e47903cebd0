"""The offline verifier: bundles, receipts, policies, and tampering with a stored log."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe_audit import note, tlog
from lethe_audit import statements as S
from lethe_audit.errors import (
    BundleError,
    CheckpointError,
    EntryError,
    ExportError,
    InclusionProofError,
    PolicyError,
    ReceiptError,
    SignatureError,
    StoreError,
    VerificationError,
)
from lethe_audit.log import AuditLog
from lethe_audit.verify import (
    AllOf,
    AnyOf,
    ConsistentWith,
    DeadlinesMet,
    MetricThreshold,
    parse_receipt,
    read_manifest,
    verify_bundle,
    verify_receipt,
)
from tests.audit._audit_helpers import attestation, event

N = 12


@pytest.fixture
def filled(sqlite_url: str, log_factory: Any) -> AuditLog:
    log: AuditLog = log_factory(sqlite_url)
    for i in range(N):  # one transaction (and checkpoint) per entry
        log.append(event(i))
    return log


def _drop_guards(engine: sa.Engine) -> None:
    """What an attacker with database admin rights does first."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for (name,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).fetchall():
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            for t in ("tlog_entries", "tlog_nodes", "tlog_checkpoints"):
                conn.exec_driver_sql(f"ALTER TABLE {t} DISABLE TRIGGER USER")


def _fail(
    log: AuditLog, tmp_path: Path, verifiers: list[note.Verifier], name: str = "b"
) -> VerificationError:
    bundle = log.export_bundle(tmp_path / name)
    with pytest.raises(VerificationError) as e:
        verify_bundle(bundle, verifiers)
    return e.value


# --- happy paths ----------------------------------------------------------------------------


def test_bundle_layout_and_verification(
    filled: AuditLog, signer: note.Signer, tmp_path: Path
) -> None:
    fig = tmp_path / "forget-heatmap.png"
    fig.write_bytes(b"\x89PNG fake figure bytes")
    bundle = filled.export_bundle(tmp_path / "bundle", attachments=[fig])
    assert sorted(p.name for p in bundle.iterdir()) == [
        "attachments", "checkpoints.jsonl", "entries.jsonl", "keys.json", "manifest.json",
    ]  # fmt: skip
    lines = (bundle / "entries.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == N + 1
    assert [tlog.leaf_hash(x) for x in lines[:-1]] == [
        tlog.leaf_hash(d) for _i, d in filled.iter_entries()
    ]
    m = read_manifest(bundle)
    assert (m.origin, m.size, m.root) == (signer.name, N, filled.head().root)
    assert m.attachments[0].path == "attachments/forget-heatmap.png"
    assert m.attachments[0].media_type == "image/png"
    verify_bundle(bundle, [signer.verifier()])
    verify_bundle(bundle, signer.verifier(), origin=signer.name)
    with pytest.raises(CheckpointError):
        verify_bundle(bundle, signer.verifier(), origin="example.org/other")
    with pytest.raises(ExportError, match="refusing to overwrite"):
        filled.export_bundle(bundle)
    z = filled.export_bundle(tmp_path / "bundle.zip", attachments=[fig])
    assert zipfile.is_zipfile(z)
    verify_bundle(z, [signer.verifier()])
    (bundle / "attachments" / "forget-heatmap.png").write_bytes(b"edited")
    with pytest.raises(BundleError, match=r"attachments/forget-heatmap\.png"):
        verify_bundle(bundle, [signer.verifier()])


def test_empty_log_bundle(
    sqlite_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path
) -> None:
    log: AuditLog = log_factory(sqlite_url)
    verify_bundle(log.export_bundle(tmp_path / "empty"), [signer.verifier()])


def test_parallel_verification_names_the_same_entry(
    sqlite_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path
) -> None:
    log: AuditLog = log_factory(sqlite_url)
    log.append_many([event(i) for i in range(300)])
    log.append_many([event(i) for i in range(300, 400)])
    bundle = log.export_bundle(tmp_path / "b")
    verify_bundle(bundle, [signer.verifier()], workers=2)
    _tamper_line(bundle, 357, lambda env: env.replace(b'"payload":"ey', b'"payload":"ex'))
    for workers in (1, 2):
        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, [signer.verifier()], workers=workers)
        assert e.value.index == 357


# --- tampering with the stored log -----------------------------------------------------------


def test_edited_entry_row_is_named(
    db_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path
) -> None:
    log: AuditLog = log_factory(db_url)
    for i in range(N):
        log.append(event(i))
    _drop_guards(log.engine)
    original = log.entry(4)
    env = json.loads(original)
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["predicate"]["request_id"] = "req-999999"
    env["payload"] = base64.b64encode(S.canonical_json(payload)).decode()
    edited = S.canonical_json(env)
    with log.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tlog_entries SET envelope = :e, leaf_hash = :h WHERE idx = 4"),
            {"e": edited, "h": tlog.leaf_hash(edited)},
        )
    err = _fail(log, tmp_path, [signer.verifier()])
    assert isinstance(err, SignatureError) and err.index == 4
    # Re-signed by a key the auditor does not trust: still entry 4.
    attacker = note.Signer.generate(signer.name)
    resigned = S.sign_envelope(S.canonical_json(payload), attacker).to_json()
    with log.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tlog_entries SET envelope = :e, leaf_hash = :h WHERE idx = 4"),
            {"e": resigned, "h": tlog.leaf_hash(resigned)},
        )
    err = _fail(log, tmp_path, [signer.verifier()], "b2")
    assert isinstance(err, SignatureError) and err.index == 4
    assert "no signature by a trusted key" in str(err)


def test_deleted_entry_is_named(filled: AuditLog, signer: note.Signer, tmp_path: Path) -> None:
    _drop_guards(filled.engine)
    with filled.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM tlog_entries WHERE idx = 5")
    with pytest.raises(StoreError, match="entry 5 is missing"):
        filled.export_bundle(tmp_path / "gap")
    # A careful attacker closes the gap and moves the head back.
    with filled.engine.begin() as conn:
        for i in range(6, N):
            conn.exec_driver_sql(f"UPDATE tlog_entries SET idx = {i - 1} WHERE idx = {i}")
        conn.exec_driver_sql(f"UPDATE tlog_head SET size = {N - 1}")
    err = _fail(filled, tmp_path, [signer.verifier()])
    assert isinstance(err, CheckpointError)
    assert (err.index, err.size) == (5, 6)


def test_reordered_entries_are_named(filled: AuditLog, signer: note.Signer, tmp_path: Path) -> None:
    _drop_guards(filled.engine)
    a, b = filled.entry(3), filled.entry(8)
    with filled.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE tlog_entries SET idx = 1000000 WHERE idx = 3")
        conn.exec_driver_sql("UPDATE tlog_entries SET idx = 3 WHERE idx = 8")
        conn.exec_driver_sql("UPDATE tlog_entries SET idx = 8 WHERE idx = 1000000")
    assert filled.entry(3) == b and filled.entry(8) == a
    err = _fail(filled, tmp_path, [signer.verifier()])
    assert isinstance(err, CheckpointError) and (err.index, err.size) == (3, 4)


def test_replaced_checkpoint_is_named(
    filled: AuditLog, signer: note.Signer, tmp_path: Path
) -> None:
    _drop_guards(filled.engine)
    good = filled.checkpoint(7)
    cp = tlog.Checkpoint.parse(note.parse(good).text)
    forged_body = tlog.Checkpoint(cp.origin, cp.size, hashlib.sha256(b"fork").digest()).body()
    unsigned = forged_body + good[len(cp.body()) :]  # old signature line on a new body
    with filled.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tlog_checkpoints SET note = :n WHERE size = 7"), {"n": unsigned}
        )
    err = _fail(filled, tmp_path, [signer.verifier()])
    assert isinstance(err, SignatureError) and err.size == 7
    # The log's own key signing a forked tree: the signature is fine, the root is not.
    forked = tlog.sign_checkpoint(
        tlog.Checkpoint(cp.origin, 7, hashlib.sha256(b"fork").digest()), signer
    )
    with filled.engine.begin() as conn:
        conn.execute(sa.text("UPDATE tlog_checkpoints SET note = :n WHERE size = 7"), {"n": forked})
    err = _fail(filled, tmp_path, [signer.verifier()], "b2")
    assert isinstance(err, CheckpointError) and (err.size, err.index) == (7, 6)


def test_checkpoint_signed_by_unknown_key_is_named(
    filled: AuditLog, signer: note.Signer, tmp_path: Path
) -> None:
    _drop_guards(filled.engine)
    attacker = note.Signer.generate(signer.name)
    cp = tlog.Checkpoint.parse(note.parse(filled.checkpoint(9)).text)
    with filled.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tlog_checkpoints SET note = :n WHERE size = 9"),
            {"n": tlog.sign_checkpoint(cp, attacker)},
        )
    err = _fail(filled, tmp_path, [signer.verifier()])
    assert isinstance(err, SignatureError) and err.size == 9
    assert "no signature by a trusted key" in str(err)


# --- tampering with a bundle ------------------------------------------------------------------


def _reseal(bundle: Path) -> None:
    """Recompute the manifest's file digests, as an attacker would (the manifest is unsigned)."""
    doc = json.loads((bundle / "manifest.json").read_text())
    for name in doc["files"]:
        data = (bundle / name).read_bytes()
        doc["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _tamper_line(bundle: Path, index: int, change: Any) -> None:
    path = bundle / "entries.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[index] = change(lines[index])
    path.write_bytes(b"\n".join(lines))
    _reseal(bundle)


def test_bundle_file_tampering(filled: AuditLog, signer: note.Signer, tmp_path: Path) -> None:
    bundle = filled.export_bundle(tmp_path / "b")
    (bundle / "entries.jsonl").write_bytes((bundle / "entries.jsonl").read_bytes() + b"x\n")
    with pytest.raises(BundleError, match="manifest's digest"):
        verify_bundle(bundle, [signer.verifier()])
    _reseal(bundle)
    with pytest.raises(EntryError) as e:
        verify_bundle(bundle, [signer.verifier()])
    assert e.value.index == N

    bundle = filled.export_bundle(tmp_path / "c")
    lines = (bundle / "entries.jsonl").read_bytes().split(b"\n")
    (bundle / "entries.jsonl").write_bytes(b"\n".join([*lines[:-2], b""]))  # drop the last entry
    _reseal(bundle)
    with pytest.raises(CheckpointError) as c:
        verify_bundle(bundle, [signer.verifier()])
    assert (c.value.index, c.value.size) == (N - 1, N)

    bundle = filled.export_bundle(tmp_path / "d")
    _tamper_line(
        bundle, 2, lambda env: json.dumps(json.loads(env), indent=1).replace("\n", "").encode()
    )
    with pytest.raises(EntryError, match="canonical") as ee:
        verify_bundle(bundle, [signer.verifier()])
    assert ee.value.index == 2

    bundle = filled.export_bundle(tmp_path / "e")
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError):
        verify_bundle(bundle, [signer.verifier()])
    with pytest.raises(BundleError):
        verify_bundle(tmp_path / "nothing-here", [signer.verifier()])


def test_entries_need_well_formed_statements(
    sqlite_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path
) -> None:
    log: AuditLog = log_factory(sqlite_url)
    log.append(event(0))
    _drop_guards(log.engine)
    # A validly signed envelope whose statement is not a Lethe statement.
    junk = S.sign_envelope(b'{"_type":"https://in-toto.io/Statement/v1"}', signer).to_json()
    with log.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tlog_entries SET envelope = :e, leaf_hash = :h WHERE idx = 0"),
            {"e": junk, "h": tlog.leaf_hash(junk)},
        )
    err = _fail(log, tmp_path, [signer.verifier()])
    assert isinstance(err, EntryError) and err.index == 0 and "well-formed" in str(err)


# --- policies ---------------------------------------------------------------------------------


def test_policies(sqlite_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path) -> None:
    log: AuditLog = log_factory(sqlite_url)
    log.append(event(0))
    log.append(attestation(1, forget=0.0))
    early = log.checkpoint()
    log.append(attestation(2, forget=0.02, applied_at="2024-07-01T00:00:00Z"))
    bundle = log.export_bundle(tmp_path / "b")
    v = [signer.verifier()]
    verify_bundle(bundle, v, policies=[MetricThreshold("retain_accuracy", min=0.98)])
    with pytest.raises(PolicyError) as e:
        verify_bundle(bundle, v, policies=[MetricThreshold("forget_accuracy", max=0.01)])
    assert e.value.index == 2 and e.value.policy == "MetricThreshold(forget_accuracy)"
    with pytest.raises(PolicyError, match="does not report"):
        verify_bundle(bundle, v, policies=[MetricThreshold("mia_efficacy", max=1)])
    with pytest.raises(PolicyError, match="after its due date") as d:
        verify_bundle(bundle, v, policies=[DeadlinesMet()])
    assert d.value.index == 2
    verify_bundle(bundle, v, policies=[AnyOf(DeadlinesMet(), MetricThreshold("zrf", min=0.5))])
    with pytest.raises(PolicyError):
        verify_bundle(bundle, v, policies=[AllOf(MetricThreshold("zrf", min=0.5), DeadlinesMet())])
    verify_bundle(bundle, v, policies=[ConsistentWith(early)])
    # A different history under the same origin and key does not extend what we saw.
    other: AuditLog = log_factory(sqlite_url.replace("log.db", "other.db"))
    other.append(event(5))
    other.append(event(6))
    with pytest.raises(PolicyError, match="rewritten"):
        verify_bundle(other.export_bundle(tmp_path / "o"), v, policies=[ConsistentWith(early)])
    with pytest.raises(PolicyError, match="truncated"):
        verify_bundle(
            bundle,
            v,
            policies=[ConsistentWith(other.append(event(7)).checkpoint.replace("\n3\n", "\n9\n"))],
        )
    # Receipts carry one entry: entry policies apply, history policies cannot.
    verify_receipt(log.receipt(1), v, policies=[MetricThreshold("forget_accuracy", max=0.01)])
    with pytest.raises(PolicyError):
        verify_receipt(log.receipt(2), v, policies=[MetricThreshold("forget_accuracy", max=0.01)])
    with pytest.raises(PolicyError):
        verify_receipt(log.receipt(2), v, policies=[ConsistentWith(early)])


# --- receipts ---------------------------------------------------------------------------------


def test_receipt_tampering(filled: AuditLog, signer: note.Signer) -> None:
    v = [signer.verifier()]
    text = filled.receipt(6)
    verify_receipt(text, v)
    verify_receipt(text.encode(), v, origin=signer.name)
    r = parse_receipt(text)
    assert (r.index, r.checkpoint.size) == (6, N)
    assert r.statement.predicate["request_id"] == "req-000006"
    lines = text.split("\n")

    def edited(i: int, new: str) -> str:
        return "\n".join([*lines[:i], new, *lines[i + 1 :]])

    with pytest.raises(InclusionProofError) as e:
        verify_receipt(edited(2, "index 7"), v)
    assert (e.value.index, e.value.size) == (7, N)
    h = bytearray(base64.b64decode(lines[3]))
    h[0] ^= 1
    with pytest.raises(InclusionProofError):
        verify_receipt(edited(3, base64.b64encode(bytes(h)).decode()), v)
    other_entry = base64.b64encode(filled.entry(7)).decode()
    with pytest.raises(InclusionProofError):
        verify_receipt(edited(1, "extra " + other_entry), v)
    size_line = lines.index(str(N))
    with pytest.raises(SignatureError) as s:
        verify_receipt(edited(size_line, str(N + 1)), v)
    assert s.value.size == N + 1
    with pytest.raises(SignatureError):
        verify_receipt(text, [note.Signer.generate(signer.name).verifier()])
    with pytest.raises(CheckpointError):
        verify_receipt(text, v, origin="example.org/elsewhere")
    with pytest.raises(ReceiptError):
        verify_receipt("\n".join([lines[0], *lines[2:]]), v)
    with pytest.raises(VerificationError, match="no trusted keys"):
        verify_receipt(text, [])
