"""Trust anchors and key validity windows, attacked: planted key files, retired keys re-used by a
hostile operator (a forged tail after the logged retirement, a fully rewritten history, forged
receipts). Every forgery is built and signed with the key the attack needs."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from lethe_audit import note, store
from lethe_audit.cli import main
from lethe_audit.errors import FormatError, SignatureError
from lethe_audit.keys import KeyRing, TrustedKey
from lethe_audit.log import AuditLog
from lethe_audit.verify import verify_bundle, verify_receipt
from tests.audit._audit_helpers import attestation, event

ORIGIN = "example.org/lethe-trust"


def cli(*args: str, code: int = 0) -> Any:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res


def _new_log(url: str, signers: list[note.Signer]) -> AuditLog:
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=signers)
    log.initialize()
    return log


# --- 1. a --key value is a vkey, never a path --------------------------------------------------


def _plant(cwd: Path, path_text: str, content: str) -> Path:
    planted = cwd / path_text
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(content + "\n")
    return planted


def test_planted_file_at_the_vkey_path_does_not_replace_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = note.Signer.generate(ORIGIN)
    attacker = note.Signer.generate(ORIGIN)  # same name, the attacker's own key
    forged_log = _new_log(f"sqlite:///{tmp_path / 'forged.db'}", [attacker])
    forged_log.append(attestation(1))
    receipt = tmp_path / "forged.tlog-proof"
    receipt.write_text(forged_log.receipt(0))
    bundle = forged_log.export_bundle(tmp_path / "forged-bundle")

    work = tmp_path / "audit-package"  # where the auditor unpacked what they were sent
    work.mkdir()
    planted = _plant(work, real.vkey, attacker.vkey)
    assert planted.is_file()
    monkeypatch.chdir(work)

    bad = cli("receipt", "verify", str(receipt), "--key", real.vkey, "--json", code=14)
    assert json.loads(bad.stdout)["error"]["type"] == "SignatureError"
    cli("verify", str(bundle), "--key", real.vkey, code=14)
    cli("receipt", "show", str(receipt), "--key", real.vkey, code=14)
    # Reading a file of keys takes the explicit option, and success names the key trusted.
    ok = cli("receipt", "verify", str(receipt), "--key-file", str(planted))
    # The keys trusted come first, the verdict last (nothing printed after it).
    assert ok.stdout.splitlines()[0] == f"trusted keys: {attacker.key_hint}"
    assert ok.stdout.splitlines()[-1].startswith("OK: entry 0")
    doc = json.loads(cli("verify", str(bundle), "--key", attacker.vkey, "--json").stdout)
    assert doc["trusted_keys"] == [
        {"name": ORIGIN, "key_id": f"{attacker.key_id:08x}", "vkey": attacker.vkey, "window": ".."}
    ]
    # A path given to --key is refused with a pointer to the right option.
    res = cli("verify", str(bundle), "--key", str(planted.parent), code=2)
    assert "--key-dir" in res.output and "never a path" in res.output
    res = cli("verify", str(bundle), code=2)
    assert "--key-file" in res.output


def test_key_file_must_be_a_small_text_file_of_vkeys(tmp_path: Path) -> None:
    s = note.Signer.generate(ORIGIN)
    log = _new_log(f"sqlite:///{tmp_path / 'l.db'}", [s])
    receipt = tmp_path / "r.tlog-proof"
    log.append(event(0))
    receipt.write_text(log.receipt(0))
    binary = tmp_path / "k.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    cli("receipt", "verify", str(receipt), "--key-file", str(binary), code=30)
    empty = tmp_path / "k.empty"
    empty.write_text("# nothing here\n\n")
    cli("receipt", "verify", str(receipt), "--key-file", str(empty), code=30)
    fifo = tmp_path / "k.fifo"
    os.mkfifo(fifo)  # would block a plain open() forever
    cli("receipt", "verify", str(receipt), "--key-file", str(fifo), code=30)
    notes = tmp_path / "k.txt"
    notes.write_text(f"# the log key\n{s.vkey}@..\n")
    cli("receipt", "verify", str(receipt), "--key-file", str(notes))


# --- 2. retired keys: windows from the log's events, the keyring and the auditor ---------------


class Rotated:
    """An honest log: OLD signs entries 0..2, NEW is added (both sign), OLD retired, NEW signs on.
    The hostile operator keeps OLD's private key and a copy of the database."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.url = f"sqlite:///{tmp_path / 'honest.db'}"
        ring = KeyRing.create(tmp_path / "keys", name=ORIGIN)
        store.upgrade(self.url)
        log = AuditLog.open(self.url, signers=ring.signers())
        log.initialize()
        self.old = ring.signers()[0]
        for i in range(3):
            log.append(event(i))
        ring = ring.add_key(register=log.add_key)  # entry 3
        self.new = next(s for s in ring.signers() if s.vkey != self.old.vkey)
        log.append(event(4))  # entry 4, signed by both
        ring = ring.retire(self.old.vkey, unregister=log.retire_key)  # entry 5
        self.retired_at = log.size()  # 6: OLD counts up to size 6
        log.append(attestation(6))  # entry 6, NEW only
        self.keydir = tmp_path / "keys"
        self.log = log
        self.bundle = log.export_bundle(tmp_path / "honest-bundle")


@pytest.fixture
def rotated(tmp_path: Path) -> Rotated:
    return Rotated(tmp_path)


def test_keyring_records_the_window(rotated: Rotated) -> None:
    ring = KeyRing.open(rotated.keydir)
    old, new = ring.find(rotated.old.vkey), ring.find(rotated.new.vkey)
    assert (old.status, old.retired_at_size) == ("retired", rotated.retired_at)
    assert new.added_at_size == 4
    windows = {k.vkey: k.window for k in ring.trusted_keys()}
    assert windows == {rotated.old.vkey: "..6", rotated.new.vkey: "4.."}


def test_honest_rotated_log_verifies_every_way(rotated: Rotated) -> None:
    old, new = rotated.old.vkey, rotated.new.vkey
    for keys in (["--key-dir", str(rotated.keydir)], ["--key", old, "--key", new],
                 ["--key", f"{old}@..6", "--key", f"{new}@4.."]):  # fmt: skip
        out = cli("verify", str(rotated.bundle), *keys).stdout
        assert "OK: 7 entries" in out
    # A receipt from before the retirement, at a checkpoint OLD alone signed.
    early = rotated.dir / "early.tlog-proof"
    early.write_text(rotated.log.receipt(1, size=3))
    cli("receipt", "verify", str(early), "--key", f"{old}@..6")
    late = rotated.dir / "late.tlog-proof"
    late.write_text(rotated.log.receipt(6))
    cli("receipt", "verify", str(late), "--key-dir", str(rotated.keydir))


def _hostile_copy(rotated: Rotated) -> AuditLog:
    """The operator's copy of the database, re-armed to sign with the retired key alone."""
    url = f"sqlite:///{rotated.dir / 'hostile.db'}"
    with (
        sqlite3.connect(rotated.dir / "honest.db") as src,
        sqlite3.connect(rotated.dir / "hostile.db") as dst,
    ):
        src.backup(dst)  # WAL mode: copying the file alone would miss the newest pages
    engine = store.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tlog_keys SET status = 'active', retired_at_size = NULL"))
        conn.execute(sa.text("DELETE FROM tlog_keys WHERE vkey = :v"), {"v": rotated.new.vkey})
    return AuditLog(engine, signers=[rotated.old])


def test_tail_signed_by_the_retired_key_after_its_logged_retirement(rotated: Rotated) -> None:
    hostile = _hostile_copy(rotated)
    forged = hostile.append(attestation(7, forget=0.0))  # entry 7, checkpoint 8: OLD only
    assert forged.index == 7
    bundle = hostile.export_bundle(rotated.dir / "hostile-bundle")
    both = [rotated.old.verifier(), rotated.new.verifier()]
    with pytest.raises(SignatureError) as e:
        verify_bundle(bundle, both)  # the log's own key.rotated event at entry 5 bounds OLD
    assert e.value.index == 7 and "retired at size 6" in str(e.value)
    res = cli("verify", str(bundle), "--key", rotated.old.vkey, "--key", rotated.new.vkey,
              "--json", code=14)  # fmt: skip
    assert json.loads(res.stdout)["error"]["index"] == 7
    # Its receipt carries no log context: the auditor's window (or the key directory) rejects it.
    receipt = hostile.receipt(7)
    with pytest.raises(SignatureError, match="not valid at log size 8"):
        verify_receipt(receipt, [TrustedKey.parse(f"{rotated.old.vkey}@..6")])
    path = rotated.dir / "forged.tlog-proof"
    path.write_text(receipt)
    cli("receipt", "verify", str(path), "--key-dir", str(rotated.keydir), code=14)


def test_history_rewritten_and_signed_by_the_retired_key(rotated: Rotated) -> None:
    """No key.rotated events at all: only what the auditor states about OLD can reject it."""
    forged = _new_log(f"sqlite:///{rotated.dir / 'rewritten.db'}", [rotated.old])
    for i in range(9):
        forged.append(event(100 + i))
    bundle = forged.export_bundle(rotated.dir / "rewritten-bundle")
    with pytest.raises(SignatureError) as e:
        verify_bundle(bundle, KeyRing.open(rotated.keydir).verifiers())
    assert e.value.index == 6  # entry 6 is judged at size 7 > 6
    cli("verify", str(bundle), "--key-dir", str(rotated.keydir), code=14)
    cli("verify", str(bundle), "--key", f"{rotated.old.vkey}@..6", "--key", rotated.new.vkey,
        code=14)  # fmt: skip
    receipt = rotated.dir / "rewritten.tlog-proof"
    receipt.write_text(forged.receipt(2))  # entry 2 at the checkpoint of size 9
    res = cli("receipt", "verify", str(receipt), "--key-dir", str(rotated.keydir), code=14)
    assert "checkpoint at size 9" in res.output


def test_key_added_later_cannot_vouch_for_earlier_history(rotated: Rotated) -> None:
    """A stolen NEW key re-signing a history from before its addition (at size 4) proves
    nothing: the forged log of size 3 is signed by NEW alone."""
    forged = _new_log(f"sqlite:///{rotated.dir / 'backdated.db'}", [rotated.new])
    for i in range(3):
        forged.append(event(200 + i))
    receipt = forged.receipt(1)
    with pytest.raises(SignatureError, match="not valid at log size 3"):
        verify_receipt(receipt, KeyRing.open(rotated.keydir).verifiers())
    # The honest receipt of that entry (signed by OLD, inside its window) verifies.
    verify_receipt(rotated.log.receipt(1, size=3), KeyRing.open(rotated.keydir).verifiers())


@pytest.mark.parametrize("suffix", ["@7..3", "@..x", "@-1..", "@" + "9" * 30 + ".."])
def test_bad_windows_are_refused(suffix: str) -> None:
    s = note.Signer.generate(ORIGIN)
    with pytest.raises(FormatError):
        TrustedKey.parse(s.vkey + suffix)
    res = CliRunner().invoke(main, ["verify", ".", "--key", s.vkey + suffix])
    assert res.exit_code == 2


# --- 13. weak keys, repeated signatures, metric names --------------------------------------------

#: The 8 small-order points of edwards25519 (orders 1, 2, 4, 4, 8, 8, 8, 8), canonical encodings.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]


def _vkey(name: str, public: bytes) -> str:
    blob = base64.b64encode(bytes([note.ALG_ED25519]) + public).decode("ascii")
    return f"{name}+{note.key_id(name, public):08x}+{blob}"


@pytest.mark.parametrize("hexkey", SMALL_ORDER)
def test_small_order_vkeys_are_refused(hexkey: str, tmp_path: Path) -> None:
    public = bytes.fromhex(hexkey)
    vkey = _vkey(ORIGIN, public)
    with pytest.raises(FormatError, match="small-order"):
        note.Verifier.from_vkey(vkey)
    # Why it matters: OpenSSL takes the identity point as a key, and (identity, s = 0) is then a
    # valid signature of *every* message, so a forged checkpoint would verify.
    if hexkey == SMALL_ORDER[0]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        Ed25519PublicKey.from_public_bytes(public).verify(public + bytes(32), b"any forgery")
    receipt = tmp_path / "r.tlog-proof"
    receipt.write_text("c2sp.org/tlog-proof@v1\n")
    res = CliRunner().invoke(main, ["receipt", "verify", str(receipt), "--key", vkey])
    assert res.exit_code == 2 and "small-order" in res.output


def test_mixed_order_and_non_canonical_keys_are_refused() -> None:
    from lethe_audit.note._ed25519 import add_points

    honest = note.Signer.generate(ORIGIN).public_key
    mixed = add_points(honest, bytes.fromhex(SMALL_ORDER[4]))  # honest key + an order-8 point
    with pytest.raises(FormatError, match="prime-order subgroup"):
        note.Verifier.from_vkey(_vkey(ORIGIN, mixed))
    y_is_p_plus_1 = bytes.fromhex("ee" + "ff" * 30 + "7f")  # the identity, not canonically
    with pytest.raises(FormatError, match="canonical"):
        note.Verifier(ORIGIN, y_is_p_plus_1)
    note.Verifier.from_vkey(_vkey(ORIGIN, honest))  # an honest key passes


def test_repeated_signatures_by_one_key_follow_go() -> None:
    """Only the first line of a trusted key is checked; later ones are skipped unchecked."""
    s = note.Signer.generate(ORIGIN)
    signed = note.sign("hello\n", s)
    good_line = signed.split("\n\n", 1)[1]
    bad = note.NoteSignature(s.name, s.key_id, bytes(64)).line()
    note.verify(signed + bad, [s.verifier()])  # good first, bad second: skipped, accepted
    with pytest.raises(SignatureError):
        note.verify("hello\n\n" + bad + good_line, [s.verifier()])  # bad first: rejected
    assert note.signed_by(signed + good_line, [s.verifier()]) == (s.verifier(),)


def test_metric_names_are_dotted_paths_and_unknown_ones_list_the_valid(tmp_path: Path) -> None:
    from tests.report._bundles import metrics

    s = note.Signer.generate(ORIGIN)
    log = _new_log(f"sqlite:///{tmp_path / 'm.db'}", [s])
    real = attestation(1)
    log.append(dataclasses.replace(real, metrics=metrics((3,))))  # a real lethe.metrics.v1
    bundle = log.export_bundle(tmp_path / "b")
    res = cli("verify", str(bundle), "--key", s.vkey, "--metric", "forget_accuracy<=0.01",
              "--json", code=19)  # fmt: skip
    message = json.loads(res.stdout)["error"]["message"]
    assert "accuracy.forget_accuracy" in message and "zrf." in message
    cli("verify", str(bundle), "--key", s.vkey, "--metric", "accuracy.forget_accuracy<=0.01")


def test_model_signed_by_a_retired_key_after_its_retirement(tmp_path: Path) -> None:
    """The retired key's holder signs a model that claims a log size past the retirement."""
    from lethe_audit.errors import ModelVerificationError
    from lethe_audit.model import sign_model, verify_model
    from lethe_audit.tlog import Checkpoint
    from tests.audit.test_model_verify import metadata, tiny_model

    old = note.Signer.generate(ORIGIN)
    late = sign_model(tiny_model(), metadata(Checkpoint(ORIGIN, 9, b"\x02" * 32)), old)
    with pytest.raises(ModelVerificationError, match="not valid at log size 9") as e:
        verify_model(late, [TrustedKey.parse(f"{old.vkey}@..6")])
    assert e.value.what == "signature"
    path = tmp_path / "late.onnx"
    path.write_bytes(late.SerializeToString())
    cli("model", "verify", str(path), "--key", f"{old.vkey}@..6", code=50)
    early = sign_model(tiny_model(), metadata(Checkpoint(ORIGIN, 5, b"\x02" * 32)), old)
    verify_model(early, [TrustedKey.parse(f"{old.vkey}@..6")])  # signed while it was valid
