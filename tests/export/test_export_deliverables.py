"""What `Lethe.export_onnx` ships: an OpenSSF Model Signing signature beside every file
(checked by the `model_signing` library's own verifier; one flipped weight byte fails it), the
P-256 key registered in the log once, and an int8 file bound to the request's receipt by its
own logged attestation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import model_signing
import pytest
from click.testing import CliRunner

from lethe_audit.cli import main as audit_main
from lethe_audit.keys import OPENSSF_PUBLIC_FILE
from lethe_audit.statements import VARIANT_V1, Envelope, Statement
from tests.audit.test_openssf import _flip_weight_byte
from tests.workflow.conftest import (  # noqa: F401  (fixtures)
    MODEL,
    lt,
    project_dir,
    project_template,
)

pytestmark = pytest.mark.slow


def _statements(lt: Any) -> list[Statement]:  # noqa: F811
    return [
        Statement.from_envelope(Envelope.from_json(raw)) for _, raw in lt.log.iter_entries(0, None)
    ]


def test_exports_carry_openssf_signatures_and_int8_is_bound_to_the_receipt(
    lt: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    req = lt.file(subject="alice@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    lt.approve(req.id, actor="dpo")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    receipt = tmp_path / "r.tlog-proof"
    receipt.write_text(lt.receipt(req.id))
    vkey = lt.verifiers()[0].vkey
    pub = lt.store.settings.keys / OPENSSF_PUBLIC_FILE

    fp = lt.export_onnx(MODEL, tmp_path / "m.onnx")
    fp32 = Path(fp.path)
    assert fp.openssf_signature == str(tmp_path / "m.onnx.sig")
    assert fp.to_dict()["openssf_signature"] == fp.openssf_signature
    assert fp.attestation_index is None  # fp32: the apply's attestation is its record
    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
    config.verify(fp32, fp32.with_name("m.onnx.sig"))  # the library's own verifier
    bad = tmp_path / "bad" / "m.onnx"
    bad.parent.mkdir()
    bad.write_bytes(_flip_weight_byte(fp32.read_bytes()))
    with pytest.raises(ValueError, match="Signature mismatch"):
        config.verify(bad, fp32.with_name("m.onnx.sig"))

    q = lt.export_onnx(MODEL, tmp_path / "m8.onnx", quantize="int8")
    int8 = Path(q.path)
    assert q.openssf_signature == str(int8.with_name("m8.onnx.sig"))
    config.verify(int8, Path(q.openssf_signature))
    args = ["model", "verify", str(int8), "--key", vkey, "--receipt", str(receipt)]
    res = CliRunner().invoke(audit_main, [*args, "--openssf", "--openssf-key", str(pub)])
    assert res.exit_code == 0, res.output
    assert "OK: m8.onnx (int8)" in res.output and "OpenSSF signature m8.onnx.sig" in res.output
    # The int8 file's own receipt (its variant attestation) binds it too, and only it.
    assert q.attestation_index is not None
    own = tmp_path / "m8.tlog-proof"
    own.write_text(lt.log.receipt(q.attestation_index))
    res = CliRunner().invoke(audit_main, ["model", "verify", str(int8), "--key", vkey,
                                          "--receipt", str(own)])  # fmt: skip
    assert res.exit_code == 0 and "OK: m8.onnx (int8)" in res.output, res.output
    res = CliRunner().invoke(audit_main, ["model", "verify", str(fp32), "--key", vkey,
                                          "--receipt", str(own)])  # fmt: skip
    assert res.exit_code == 50, res.output  # the variant's receipt names the int8 file only
    from lethe_audit.errors import ModelVerificationError
    from lethe_audit.model import load_verified

    session = load_verified(int8, vkey, receipt=own.read_bytes())  # the edge loader too
    assert session.get_inputs()[0].name
    with pytest.raises(ModelVerificationError, match="names another ONNX model"):
        load_verified(fp32, vkey, receipt=own.read_bytes())
    _check_variant_page(own, receipt, vkey, req.id, q.metrics or {})
    from lethe.cli import main as lethe_main

    out = tmp_path / "cli.onnx"
    cmd = ["--project", str(lt.settings.project_dir), "export", "onnx", MODEL, "-o", str(out)]
    res = CliRunner().invoke(lethe_main, cmd)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}.sig (OpenSSF Model Signing signature)" in res.output

    sts = _statements(lt)
    keys = [s for s in sts if s.predicate.get("event") == "key.registered"]
    assert len(keys) == 1  # registered once, at the first export
    assert keys[0].predicate["details"]["public_key"] == pub.read_text()
    (variant,) = [s for s in sts if s.predicate_type == VARIANT_V1]
    p = variant.predicate
    assert p["onnx"]["sha256"] == q.sha256 and p["requests"] == [req.id]
    assert q.calibration_source == "train" == p["quantization"]["calibration_source"]
    assert p["policy"]["passed"] and "accuracy" in p["metrics"]
    source = Statement.from_envelope(Envelope.from_json(lt.log.entry(p["source"]["index"])))
    assert source.predicate["onnx"]["sha256"] == p["source"]["onnx_sha256"]
    assert "variant.int8" in [e.kind for e in lt.log_entries(limit=100)]
    lt.verify_log()  # the bundle verifier accepts both new entries


def _check_variant_page(own: Path, source: Path, vkey: str, rid: str, metrics: dict) -> None:
    """The receipt page of a real int8 export: its numbers beside the fp32 model's."""
    from lethe_audit.report import build_receipt_page

    alone = build_receipt_page(own, [vkey]).data  # one request: the classes are its own
    assert alone["kind"] == "variant" and alone["request"]["id"] == rid
    assert [c["class"] for c in alone["metrics"]["classes"]] == [3]
    assert alone["metrics"]["retain_after"] == pytest.approx(metrics["retain_accuracy"])
    assert alone["metrics"]["forget_after"] == pytest.approx(metrics["forget_accuracy"])
    page = build_receipt_page(own, [vkey], source_receipt=source)
    d = page.data
    assert page.passed and d["metrics"]["fp32_shown"] and d["request"]["classes"] == [3]
    assert d["metrics"]["fp32_retain_after"] is not None
    assert d["metrics"]["classes"][0]["fp32_after"] is not None
    html = page.to_html()
    assert "the int8 model" in html and "fp32 model" in html
    res = CliRunner().invoke(
        audit_main, ["receipt", "show", str(own), "--key", vkey, "--source-receipt", str(source)]
    )
    assert res.exit_code == 0 and "The int8 version of the model" in res.output, res.output


def test_int8_calibrated_on_the_eval_set_says_so_and_records_it(
    lt: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A model with no training data: the int8 export still calibrates (on the evaluation
    images, which then score it) but never silently: the CLI prints a warning line, the result
    and the signed variant attestation record ``calibration_source: eval``, and its receipt
    page says so."""
    import json

    from lethe.cli import main as lethe_main
    from lethe_audit.report import build_receipt_page
    from lethe_audit.store import ModelRow

    req = lt.file(subject="bob@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    lt.approve(req.id, actor="dpo")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    with lt.store.write() as s:  # as if registered without --train-data
        s.query(ModelRow).filter_by(name=MODEL).update({"train_data_path": None})
    out = tmp_path / "e8.onnx"
    cmd = ["--project", str(lt.settings.project_dir), "export", "onnx", MODEL, "-o", str(out)]
    res = CliRunner().invoke(lethe_main, [*cmd, "--quantize", "int8", "--json"])
    assert res.exit_code == 0, res.output
    warning = [x for x in res.stderr.splitlines() if x.startswith("lethe: warning:")]
    assert len(warning) == 1 and "calibrated on the evaluation images" in warning[0], res.stderr
    steps = [x for x in res.stderr.splitlines() if x.startswith(f"int8 {MODEL}: ")]
    assert steps[0].startswith(f"int8 {MODEL}: calibrating on ") and "eval images" in steps[0]
    assert "passed the policy; signed and logged as entry" in steps[-1]  # no terminal: lines
    doc = json.loads(res.stdout)
    assert doc["calibration_source"] == "eval"
    (variant,) = [s for s in _statements(lt) if s.predicate_type == VARIANT_V1]
    assert variant.predicate["quantization"]["calibration_source"] == "eval"
    own = tmp_path / "e8.tlog-proof"
    own.write_text(lt.log.receipt(doc["attestation_index"]))
    page = build_receipt_page(own, [lt.verifiers()[0].vkey])
    assert page.data["variant"]["calibration"]["source"] == "eval"
    assert "same test images that then measured it" in page.to_text()


def test_an_encrypted_project_signs_with_its_passphrase(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """A project whose keys have a passphrase: an OpenSSF key made unencrypted by an older
    version keeps signing; a new one is encrypted with the passphrase and signs; the
    signatures verify under model_signing's own verifier; a wrong passphrase is one line."""
    from lethe.workflow import Lethe
    from lethe_audit.errors import KeyFileError
    from lethe_audit.keys import OPENSSF_KEY_FILE, KeyRing, load_key_file, write_private_key

    keys = project_dir / "keys"
    secret = "project passphrase"
    for e in KeyRing.open(keys).entries:  # encrypt the log keys, as `lethe init` with one does
        path = keys / e.file
        signer = load_key_file(path, name=e.name)
        path.unlink()
        write_private_key(path, signer, passphrase=secret)
    env = {"LETHE_KEY_PASSPHRASE": secret}
    pub = keys / OPENSSF_PUBLIC_FILE
    with Lethe.open(project_dir, env=env) as proj:
        req = proj.file(subject="bob@example.com", classes=[3], legal_basis="gdpr-17-1-b")
        proj.approve(req.id, actor="dpo")
        assert proj.apply(MODEL, phase="mask", relearn=False, progress=False).passed
        old = (keys / OPENSSF_KEY_FILE).read_bytes()
        assert b"ENCRYPTED" not in old  # the template project's key predates the passphrase
        a = proj.export_onnx(MODEL, tmp_path / "a.onnx")
        assert (keys / OPENSSF_KEY_FILE).read_bytes() == old
        verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
        verifier.verify(Path(a.path), Path(a.openssf_signature or ""))
        for f in (OPENSSF_KEY_FILE, OPENSSF_PUBLIC_FILE, OPENSSF_KEY_FILE + ".logged"):
            (keys / f).unlink()
        b = proj.export_onnx(MODEL, tmp_path / "b.onnx")  # a new key: encrypted
        new = (keys / OPENSSF_KEY_FILE).read_bytes()
        assert new.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
        verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
        verifier.verify(Path(b.path), Path(b.openssf_signature or ""))
    with pytest.raises(KeyFileError) as err:
        Lethe.open(project_dir, env={"LETHE_KEY_PASSPHRASE": "wrong"})
    assert "\n" not in str(err.value) and "passphrase" in str(err.value)


def test_init_with_a_passphrase_encrypts_the_openssf_key(tmp_path: Path) -> None:
    from lethe.workflow import Lethe
    from lethe_audit.keys import OPENSSF_KEY_FILE, ensure_openssf_key

    with Lethe.init(tmp_path / "p", origin="test.example/enc", key_passphrase="s3cret") as proj:
        keys = proj.store.settings.keys
    pem = (keys / OPENSSF_KEY_FILE).read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    key, created = ensure_openssf_key(keys, passphrase="s3cret")
    assert not created and key.encrypted
    with Lethe.init(tmp_path / "q", origin="test.example/plain") as proj:  # no passphrase
        assert b"ENCRYPTED" not in (proj.store.settings.keys / OPENSSF_KEY_FILE).read_bytes()
