"""Ed25519 key files and key directories."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lethe_audit import note
from lethe_audit.errors import KeyFileError
from lethe_audit.keys import KEYRING_FILE, KeyRing, generate_key_file, load_key_file


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    s = generate_key_file(p, name="example.org/log")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert p.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = load_key_file(p, name="example.org/log")
    assert again.vkey == s.vkey
    before = p.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key_file(p, name="example.org/log")
    assert p.read_bytes() == before


def test_passphrase_encrypted_keys(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    s = generate_key_file(p, name="example.org/log", passphrase="correct horse")
    assert b"ENCRYPTED" in p.read_bytes()
    assert load_key_file(p, name="example.org/log", passphrase=b"correct horse").vkey == s.vkey
    with pytest.raises(KeyFileError):
        load_key_file(p, name="example.org/log", passphrase="wrong")
    with pytest.raises(KeyFileError):
        load_key_file(p, name="example.org/log")
    with pytest.raises(KeyFileError):
        generate_key_file(tmp_path / "e.pem", name="example.org/log", passphrase="")


def test_load_rejects_other_keys_and_garbage(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    p = tmp_path / "ec.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    p.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        load_key_file(p, name="example.org/log")
    (tmp_path / "g.pem").write_text("hello")
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path / "g.pem", name="example.org/log")
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path / "missing.pem", name="example.org/log")


def test_keyring_rotation_lifecycle(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    ring = KeyRing.create(d, name="example.org/log", passphrase="pw")
    first = ring.entries[0]
    assert (d / first.file).is_file() and (
        d / f"log-{first.key_id}.vkey"
    ).read_text().strip() == first.vkey
    with pytest.raises(KeyFileError, match="already exists"):
        KeyRing.create(d, name="example.org/log")
    ring = ring.add_key(passphrase="pw")
    assert [e.status for e in ring.entries] == ["active", "active"]
    assert len(ring.signers(passphrase="pw")) == 2
    with pytest.raises(KeyFileError, match="only active key"):
        ring.retire(ring.entries[1].key_id).retire(ring.entries[0].key_id)
    ring = KeyRing.open(d)
    assert [e.status for e in ring.entries] == ["active", "retired"]
    # Retired without a log, so no retirement size is recorded: not trusted at all (fail closed).
    assert [v.vkey for v in ring.verifiers()] == [first.vkey]
    assert [s.vkey for s in ring.signers(passphrase="pw")] == [first.vkey]
    doc = json.loads((d / KEYRING_FILE).read_text())
    assert doc["format"] == "lethe-keyring/v1"
    assert ring.find(first.vkey) == ring.find(first.key_id) == first


def test_keyring_hooks_roll_back_on_failure(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    ring = KeyRing.create(d, name="example.org/log")
    files_before = sorted(p.name for p in d.iterdir())

    def refuse(_s: note.Signer) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        ring.add_key(register=refuse)
    assert sorted(p.name for p in d.iterdir()) == files_before
    assert len(KeyRing.open(d).entries) == 1
    ring = ring.add_key()

    def refuse_vkey(_v: str) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        ring.retire(ring.entries[0].key_id, unregister=refuse_vkey)
    assert [e.status for e in KeyRing.open(d).entries] == ["active", "active"]


def test_keyring_tampering_is_detected(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    ring = KeyRing.create(d, name="example.org/log")
    doc = json.loads((d / KEYRING_FILE).read_text())
    other = note.Signer.generate("example.org/log")
    doc["keys"][0]["vkey"] = other.vkey
    (d / KEYRING_FILE).write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not match"):
        KeyRing.open(d)
    doc["keys"][0]["key_id"] = f"{other.key_id:08x}"
    (d / KEYRING_FILE).write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not hold"):
        KeyRing.open(d).signers()
    assert ring.entries
    with pytest.raises(KeyFileError, match=r"no keyring\.json"):
        KeyRing.open(tmp_path / "nowhere")
