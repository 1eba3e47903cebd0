"""End to end: export the filtered digits model, sign it with the log key, log its attestation,
and verify file + receipt the way an edge device does (torch blocked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lethe
from lethe import model_digest
from lethe.export import (
    content_hash,
    export_filtered,
    model_metadata,
    quantize_int8,
    save_model,
    sign_model,
    verify_model,
)
from lethe_audit import note, store
from lethe_audit import statements as S
from lethe_audit.errors import ModelVerificationError
from lethe_audit.log import AuditLog

from ._helpers import find_local_paths

FORGET = [3]


@pytest.fixture(scope="module")
def shipped(
    digits_export: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    d = digits_export
    root = tmp_path_factory.mktemp("signed")
    signer = note.Signer.generate("example.org/lethe-log")
    url = f"sqlite:///{root / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[signer])
    log.initialize()
    log.append(S.LifecycleEvent("request.received", "2024-05-01T12:00:00Z", request_id="req-1"))

    res = export_filtered(d.model, d.bank, FORGET, parity_inputs=d.x_test[:64], base=d.base)
    checkpoint = log.checkpoint()  # the log state the apply starts from (signed note text)
    meta = model_metadata(
        res, model_name="digits-resnet18", checkpoint=checkpoint, requests=["req-1"]
    )
    path, sha = save_model(sign_model(res.model, meta, signer), root / "digits.onnx")

    retain = d.x_train[d.train.y != FORGET[0]][:128]
    int8 = quantize_int8(res.model, retain, progress=False)
    meta8 = model_metadata(
        res, model_name="digits-resnet18", checkpoint=checkpoint, requests=["req-1"], variant="int8"
    )
    path8, sha8 = save_model(sign_model(int8, meta8, signer), root / "digits-int8.onnx")

    signed = onnx.load_model_from_string(path.read_bytes())
    att = S.UnlearningAttestation(
        outcome="applied",
        requests=(
            S.RequestRecord(
                id="req-1",
                subject_commitment=S.hmac_commitment(b"k" * 32, "subject"),
                classes=tuple(FORGET),
                legal_basis="GDPR Art. 17(1)(a)",
                received_at="2024-05-01T12:00:00Z",
                due_at="2024-06-01T12:00:00Z",
                approved_at="2024-05-02T12:00:00Z",
            ),
        ),
        forgotten_classes=tuple(FORGET),
        applied_at="2024-05-03T00:00:00Z",
        model=S.ModelRef("digits-resnet18", res.base_digest, res.folded_digest),
        filter_bank_digest="sha256:" + d.bank.digest.removeprefix("sha256:"),
        method=S.MethodRef("weight-filtering", lethe.__version__, {}),
        metrics={"forget_accuracy": 0.0},
        policy=S.PolicyVerdict({"max_parity": 1e-4}, True, ()),
        onnx=S.OnnxRef(sha, content_hash(signed)),
    )
    index = log.append(att).index
    receipt = root / "receipt.tlog-proof"
    receipt.write_text(log.receipt(index))
    yield {
        "res": res,
        "path": path,
        "sha256": sha,
        "path8": path8,
        "sha8": sha8,
        "receipt": receipt,
        "vkey": signer.vkey,
        "meta": meta,
        "root": root,
    }
    log.engine.dispose()


def test_signed_export_verifies_with_its_receipt(shipped: dict[str, Any]) -> None:
    keys = [note.Verifier.from_vkey(shipped["vkey"])]
    verify_model(shipped["path"], keys, receipt=shipped["receipt"].read_bytes())
    verify_model(shipped["path8"], keys)
    res, meta = shipped["res"], shipped["meta"]
    assert meta.folded_digest == "sha256:" + model_digest(res.folded)
    assert meta.base_digest == res.base_digest and meta.forgotten_classes == (3,)
    assert meta.log_size == 1 and meta.requests == ("req-1",)
    for p in (shipped["path"], shipped["path8"]):
        assert find_local_paths(p.read_bytes()) == []


def test_signing_leaves_the_graph_alone(shipped: dict[str, Any]) -> None:
    signed = onnx.load_model_from_string(shipped["path"].read_bytes())
    assert content_hash(signed) == content_hash(shipped["res"].model)


def _run_edge(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``lethe-audit`` in a fresh interpreter with torch, timm and lethe blocked."""
    script = textwrap.dedent(
        f"""
        import sys
        for blocked in ("torch", "torchvision", "timm", "lethe"):
            sys.modules[blocked] = None
        from lethe_audit.cli import main
        try:
            main({args!r}, prog_name="lethe-audit")
        finally:
            leaked = [m for m in ("torch", "timm", "lethe") if sys.modules.get(m) is not None]
            assert not leaked, leaked
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=300,
    )


def test_edge_device_verifies_without_torch(shipped: dict[str, Any], tmp_path: Path) -> None:
    args = ["model", "verify", str(shipped["path"]), "--key", shipped["vkey"]]
    proc = _run_edge([*args, "--receipt", str(shipped["receipt"]), "--json"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["sha256"] == shipped["sha256"] and doc["receipt"]["index"] == 1

    # One weight of one conv layer, nudged by one ulp: the device must refuse the file.
    model = onnx.load_model_from_string(shipped["path"].read_bytes())
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[7] = np.nextafter(arr.flat[7], np.float32(np.inf))
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "tampered.onnx"
    bad.write_bytes(model.SerializeToString())
    proc = _run_edge(["model", "verify", str(bad), "--key", shipped["vkey"], "--json"])
    assert proc.returncode == 50
    assert json.loads(proc.stdout)["error"]["what"] == "content"


def test_int8_file_is_not_the_attested_fp32_file(shipped: dict[str, Any]) -> None:
    """The attestation names the fp32 file; the int8 file is signed but not attested by it."""
    with pytest.raises(ModelVerificationError, match="names another ONNX model") as err:
        verify_model(
            shipped["path8"],
            [note.Verifier.from_vkey(shipped["vkey"])],
            receipt=shipped["receipt"].read_bytes(),
        )
    assert err.value.what == "receipt"
