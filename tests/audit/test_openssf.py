"""OpenSSF Model Signing signatures beside Lethe's: the project's P-256 key, `model.onnx.sig`
verified by the `model_signing` library's own verifier, and `lethe-audit model verify
--openssf`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import model_signing
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from lethe_audit import note
from lethe_audit.cli import main
from lethe_audit.errors import KeyFileError, ModelVerificationError
from lethe_audit.keys import ensure_openssf_key, openssf_key_event, openssf_key_id
from lethe_audit.model import openssf_signature_path, sign_model, sign_openssf, verify_openssf
from lethe_audit.statements import LifecycleEvent
from tests.audit.test_model_verify import metadata, tiny_model


def _flip_weight_byte(data: bytes) -> bytes:
    """The same file with one byte of one weight's raw data flipped (same length)."""
    model = onnx.load_model_from_string(data)
    raw = numpy_helper.to_array(model.graph.initializer[0]).tobytes()
    at = data.index(raw) + 5
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, Any]:
    """A Lethe-signed model file with its OpenSSF signature beside it."""
    key, created = ensure_openssf_key(tmp_path / "keys")
    signer = note.Signer.generate("example.org/lethe-test")
    path = tmp_path / "model.onnx"
    path.write_bytes(sign_model(tiny_model(), metadata(), signer).SerializeToString())
    sig = sign_openssf(path, key.private_path)
    return {"path": path, "sig": sig, "key": key, "created": created, "vkey": signer.vkey}


def test_the_key_is_made_once_and_its_id_is_model_signings_hint(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    key = exported["key"]
    assert exported["created"] and (key.private_path.stat().st_mode & 0o777) == 0o600
    again, created = ensure_openssf_key(tmp_path / "keys")
    assert not created and again == key
    bundle = json.loads(exported["sig"].read_text())
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == key.key_id
    assert key.key_id == openssf_key_id(key.public_path.read_bytes())
    event = openssf_key_event(key)
    assert isinstance(event, LifecycleEvent) and event.event == "key.registered"
    assert event.details is not None and event.details["public_key"] == key.public_pem
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "openssf-p256.pem").write_text("not a key")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        ensure_openssf_key(tmp_path / "bad")
    assert not key.encrypted and b"ENCRYPTED" not in key.private_path.read_bytes()


def test_model_signings_own_verifier_accepts_it_and_refuses_one_flipped_byte(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    path, sig, key = exported["path"], exported["sig"], exported["key"]
    assert sig == openssf_signature_path(path) == path.with_name("model.onnx.sig")
    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key.public_path)
    config.verify(path, sig)  # the library's own check, no Lethe code involved
    bad = tmp_path / "tampered" / "model.onnx"
    bad.parent.mkdir()
    bad.write_bytes(_flip_weight_byte(path.read_bytes()))
    with pytest.raises(ValueError, match="Signature mismatch"):
        config.verify(bad, sig)
    with pytest.raises(ModelVerificationError, match="does not verify") as err:
        verify_openssf(bad, key.public_path, signature_path=sig)
    assert err.value.what == "openssf"
    verify_openssf(path, key.public_path)


def test_cli_model_verify_openssf(exported: dict[str, Any], tmp_path: Path) -> None:
    path, key = exported["path"], exported["key"]
    base = ["model", "verify", str(path), "--key", exported["vkey"], "--openssf"]
    res = CliRunner().invoke(main, [*base, "--openssf-key", str(key.public_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["openssf"] == {"signature": str(exported["sig"]), "key_id": key.key_id}
    res = CliRunner().invoke(main, base)
    assert res.exit_code == 2 and "--openssf-key" in res.output
    other, _ = ensure_openssf_key(tmp_path / "other-keys")
    res = CliRunner().invoke(main, [*base, "--openssf-key", str(other.public_path), "--json"])
    assert res.exit_code == 50
    assert json.loads(res.stdout)["error"]["what"] == "openssf"


def test_without_the_openssf_extra_the_error_names_it(exported: dict[str, Any]) -> None:
    script = (
        "import sys\n"
        "sys.modules['model_signing'] = None  # as if lethe-audit[openssf] were not installed\n"
        "from lethe_audit.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    args = ["model", "verify", str(exported["path"]), "--key", exported["vkey"], "--openssf"]
    args += ["--openssf-key", str(exported["key"].public_path)]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 70, proc.stderr
    assert "pip install 'lethe-audit[openssf]'" in proc.stderr


def test_flipped_byte_helper_changes_a_weight(exported: dict[str, Any]) -> None:
    data = exported["path"].read_bytes()
    bad = onnx.load_model_from_string(_flip_weight_byte(data))
    good = onnx.load_model_from_string(data)
    a, b = (numpy_helper.to_array(m.graph.initializer[0]) for m in (good, bad))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_with_a_passphrase_the_key_is_encrypted_and_signs(tmp_path: Path) -> None:
    """A project with a key passphrase gets an encrypted OpenSSF key (PKCS#8, best available
    encryption); signing decrypts it with the passphrase and model_signing's own verifier
    accepts the signature; a missing or wrong passphrase is one typed line."""
    key, created = ensure_openssf_key(tmp_path / "keys", passphrase="correct horse")
    pem = key.private_path.read_bytes()
    assert created and key.encrypted and pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    assert (key.private_path.stat().st_mode & 0o777) == 0o600
    again, created = ensure_openssf_key(tmp_path / "keys", passphrase=b"correct horse")
    assert not created and again == key
    signer = note.Signer.generate("example.org/lethe-test")
    path = tmp_path / "model.onnx"
    path.write_bytes(sign_model(tiny_model(), metadata(), signer).SerializeToString())
    sig = sign_openssf(path, key.private_path, passphrase="correct horse")
    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key.public_path)
    config.verify(path, sig)
    verify_openssf(path, key.public_path)
    for bad in (None, "wrong horse"):
        for call in (
            lambda bad=bad: ensure_openssf_key(tmp_path / "keys", passphrase=bad),
            lambda bad=bad: sign_openssf(path, key.private_path, passphrase=bad),
        ):
            with pytest.raises(KeyFileError) as err:
                call()
            msg = str(err.value)
            assert "\n" not in msg and "passphrase" in msg and str(key.private_path) in msg
            assert ("wrong passphrase" in msg) == (bad is not None)
    with pytest.raises(KeyFileError, match="empty passphrase"):
        ensure_openssf_key(tmp_path / "keys", passphrase="")


def test_an_existing_unencrypted_key_keeps_working_with_a_passphrase(tmp_path: Path) -> None:
    """Projects made before the passphrase applied to the OpenSSF key: their unencrypted key
    is neither rewritten nor refused when the project's passphrase is given."""
    old, _ = ensure_openssf_key(tmp_path / "keys")
    before = old.private_path.read_bytes()
    key, created = ensure_openssf_key(tmp_path / "keys", passphrase="now set")
    assert not created and key == old and not key.encrypted
    assert key.private_path.read_bytes() == before
    signer = note.Signer.generate("example.org/lethe-test")
    path = tmp_path / "model.onnx"
    path.write_bytes(sign_model(tiny_model(), metadata(), signer).SerializeToString())
    sig = sign_openssf(path, key.private_path, passphrase="now set")
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key.public_path).verify(
        path, sig
    )
