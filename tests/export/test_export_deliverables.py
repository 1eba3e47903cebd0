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

    fp32 = Path(lt.export_onnx(MODEL, tmp_path / "m.onnx").path)
    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
    config.verify(fp32, fp32.with_name("m.onnx.sig"))  # the library's own verifier
    bad = tmp_path / "bad" / "m.onnx"
    bad.parent.mkdir()
    bad.write_bytes(_flip_weight_byte(fp32.read_bytes()))
    with pytest.raises(ValueError, match="Signature mismatch"):
        config.verify(bad, fp32.with_name("m.onnx.sig"))

    q = lt.export_onnx(MODEL, tmp_path / "m8.onnx", quantize="int8")
    int8 = Path(q.path)
    config.verify(int8, int8.with_name("m8.onnx.sig"))
    args = ["model", "verify", str(int8), "--key", vkey, "--receipt", str(receipt)]
    res = CliRunner().invoke(audit_main, [*args, "--openssf", "--openssf-key", str(pub)])
    assert res.exit_code == 0, res.output
    assert "OK: m8.onnx (int8)" in res.output and "OpenSSF signature m8.onnx.sig" in res.output

    sts = _statements(lt)
    keys = [s for s in sts if s.predicate.get("event") == "key.registered"]
    assert len(keys) == 1  # registered once, at the first export
    assert keys[0].predicate["details"]["public_key"] == pub.read_text()
    (variant,) = [s for s in sts if s.predicate_type == VARIANT_V1]
    p = variant.predicate
    assert p["onnx"]["sha256"] == q.sha256 and p["requests"] == [req.id]
    assert p["policy"]["passed"] and "accuracy" in p["metrics"]
    source = Statement.from_envelope(Envelope.from_json(lt.log.entry(p["source"]["index"])))
    assert source.predicate["onnx"]["sha256"] == p["source"]["onnx_sha256"]
    assert "variant.int8" in [e.kind for e in lt.log_entries(limit=100)]
    lt.verify_log()  # the bundle verifier accepts both new entries
