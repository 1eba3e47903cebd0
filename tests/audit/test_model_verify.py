"""Signed ONNX models, torch-free: content hash, signature, tampering, receipts, CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from lethe_audit import note
from lethe_audit import statements as S
from lethe_audit.cli import main
from lethe_audit.errors import FormatError, InclusionProofError, ModelVerificationError
from lethe_audit.model import (
    SIGNATURE_KEY,
    ModelMetadata,
    content_hash,
    read_model,
    sign_model,
    signing_text,
    signing_text_v2,
    stripped_hash,
    verify_model,
)
from lethe_audit.tlog import Checkpoint

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """A real (if small) classifier graph: Gemm + Relu + Gemm, dynamic batch."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "fc1.weight")
    b1 = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "fc1.bias")
    w2 = numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "fc.weight")
    b2 = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "fc.bias")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "fc.weight", "fc.bias"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model, full_check=True)
    return model


def metadata(checkpoint: Checkpoint | None = None, **overrides: Any) -> ModelMetadata:
    cp = checkpoint or Checkpoint("example.org/lethe-test", 1, b"\x01" * 32)
    fields: dict[str, Any] = {
        "model_name": "digits-cnn",
        "base_digest": DIGEST_A,
        "folded_digest": DIGEST_B,
        "log_origin": cp.origin,
        "log_size": cp.size,
        "log_root": base64.b64encode(cp.root).decode(),
        "requests": ("req-000001",),
        "forgotten_classes": (1, 3),
        "lethe_version": "0.1.0",
    }
    fields.update(overrides)
    return ModelMetadata(**fields)


@pytest.fixture
def signer() -> note.Signer:
    return note.Signer.generate("example.org/lethe-test")


@pytest.fixture
def signed(signer: note.Signer) -> onnx.ModelProto:
    return sign_model(tiny_model(), metadata(), signer)


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {e.key: e.value for e in model.metadata_props}


def _set_prop(model: onnx.ModelProto, key: str, value: str | None) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    props = _props(out)
    if value is None:
        props.pop(key)
    else:
        props[key] = value
    del out.metadata_props[:]
    for k in sorted(props):
        out.metadata_props.add(key=k, value=props[k])
    return out


# --- content hash ----------------------------------------------------------------------------


def test_content_hash_ignores_metadata_and_covers_weights(signed: onnx.ModelProto) -> None:
    plain = tiny_model()
    assert content_hash(plain) == content_hash(signed)
    roundtrip = onnx.load_model_from_string(signed.SerializeToString())
    assert content_hash(roundtrip) == content_hash(plain)
    assert content_hash(tiny_model(seed=1)) != content_hash(plain)
    bumped = onnx.ModelProto()
    bumped.CopyFrom(plain)
    bumped.producer_version = "something else"
    assert content_hash(bumped) != content_hash(plain)
    assert content_hash(plain).startswith("sha256:") and len(content_hash(plain)) == 71


def test_content_hash_refuses_external_data() -> None:
    model = tiny_model()
    t = model.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="weights.bin")
    with pytest.raises(FormatError, match="external file"):
        content_hash(model)


# --- signing and verifying -------------------------------------------------------------------


def test_signed_model_verifies_and_signs_a_note(signer: note.Signer) -> None:
    model = tiny_model()
    meta = metadata()
    signed = sign_model(model, meta, signer)
    assert not model.metadata_props  # the input is not modified
    props = _props(signed)
    assert list(props) == sorted(props)
    sig = props[SIGNATURE_KEY]
    parsed = note.parse(sig)
    data = signed.SerializeToString()
    assert parsed.text == signing_text_v2(stripped_hash(data), meta.to_props())
    # v2 signs the exact bytes with the metadata records cut out: the model without metadata.
    assert stripped_hash(data) == "sha256:" + hashlib.sha256(model.SerializeToString()).hexdigest()
    assert parsed.text.splitlines()[:2] == ["lethe.onnx/v2", f"bytes {stripped_hash(data)}"]
    note.verify(sig, [note.Verifier.from_vkey(signer.vkey)])  # a plain C2SP signed note
    verify_model(signed.SerializeToString(), [note.Verifier.from_vkey(signer.vkey)])
    got = read_model(signed.SerializeToString())
    assert got.metadata() == meta
    assert got.sha256 == hashlib.sha256(signed.SerializeToString()).hexdigest()


def _sign_v1(model: onnx.ModelProto, meta: ModelMetadata, signer: note.Signer) -> onnx.ModelProto:
    """What sign_model wrote before lethe.onnx/v2: a signature over the canonical content hash."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    props = meta.to_props()
    props[SIGNATURE_KEY] = note.sign(signing_text(content_hash(out), props), signer)
    for key in sorted(props):
        out.metadata_props.add(key=key, value=props[key])
    return out


def test_models_signed_in_the_v1_format_still_verify(signer: note.Signer) -> None:
    old = _sign_v1(tiny_model(), metadata(), signer)
    keys = [note.Verifier.from_vkey(signer.vkey)]
    assert note.parse(_props(old)[SIGNATURE_KEY]).text.startswith("lethe.onnx/v1\ncontent ")
    verify_model(old.SerializeToString(), keys)
    verify_model(read_model(old.SerializeToString()), keys)
    with pytest.raises(ModelVerificationError, match="graph or weights changed") as err:
        verify_model(_tamper_weight(old).SerializeToString(), keys)
    assert err.value.what == "content"
    with pytest.raises(ModelVerificationError, match=r"lethe\.log\.size") as err:
        verify_model(_set_prop(old, "lethe.log.size", "2").SerializeToString(), keys)
    assert err.value.what == "metadata:lethe.log.size"


def test_a_note_in_an_unknown_format_is_named(signer: note.Signer) -> None:
    model = tiny_model()
    model.metadata_props.add(key=SIGNATURE_KEY, value=note.sign("lethe.onnx/v9\nx\n", signer))
    with pytest.raises(ModelVerificationError, match="not a model signature") as err:
        verify_model(model.SerializeToString(), [note.Verifier.from_vkey(signer.vkey)])
    assert err.value.what == "signature"


def test_stripped_hash_cuts_metadata_anywhere_in_the_file(signed: onnx.ModelProto) -> None:
    """Metadata records interleaved with other fields (any protobuf writer may do that) are cut
    out byte by byte; the rest keeps its order."""
    bare = tiny_model().SerializeToString()
    entries = [e.SerializeToString() for e in signed.metadata_props]
    record = [b"\x72" + bytes([len(e)]) + e if len(e) < 128 else None for e in entries]
    small = [r for r in record if r is not None]
    assert small  # at least the short entries fit a one-byte length
    shuffled = small[0] + bare + b"".join(small[1:])
    assert stripped_hash(shuffled) == "sha256:" + hashlib.sha256(bare).hexdigest()
    with pytest.raises(FormatError, match="not an ONNX model"):
        stripped_hash(bare[:-3])  # a record cut short
    with pytest.raises(FormatError, match="not an ONNX model"):
        stripped_hash(b"\x73\x00")  # wire type 3 (groups) at top level


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, 1 << 20])
def test_streamed_scan_equals_the_in_memory_scan(signed: onnx.ModelProto, chunk: int) -> None:
    """scan_model_file (what verify_model and the CLI use on a path) gives the same hashes and
    metadata as scan_model_bytes, whatever the read size, for metadata anywhere."""
    import io

    from lethe_audit.model import scan_model_bytes
    from lethe_audit.model._bytes import scan_model_file

    bare = tiny_model().SerializeToString()
    entries = [e.SerializeToString() for e in signed.metadata_props]
    small = [b"\x72" + bytes([len(e)]) + e for e in entries if len(e) < 128]
    for data in (signed.SerializeToString(), small[0] + bare + b"".join(small[1:])):
        want = scan_model_bytes(data)
        got = scan_model_file(io.BytesIO(data), len(data), chunk=chunk)
        assert (got.sha256, got.stripped, dict(got.props)) == (
            want.sha256,
            want.stripped,
            dict(want.props),
        )
    for bad in (bare[:-3], b"\x73\x00", b"", signed.SerializeToString()[:-1]):
        with pytest.raises(FormatError):
            scan_model_file(io.BytesIO(bad), len(bad), chunk=chunk)
    with pytest.raises(FormatError, match="shrank"):
        scan_model_file(io.BytesIO(bare), len(bare) + 10, chunk=chunk)


def test_onnxruntime_still_runs_the_signed_model(signed: onnx.ModelProto) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(signed.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.ones((2, 4), np.float32)})[0]
    assert out.shape == (2, 3)
    assert sess.get_modelmeta().custom_metadata_map["lethe.model.name"] == "digits-cnn"


def _tamper_weight(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    init = out.graph.initializer[0]
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = np.nextafter(arr.flat[0], np.float32(np.inf))  # one ulp
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    return out


def _flip_signature(model: onnx.ModelProto) -> onnx.ModelProto:
    sig = _props(model)[SIGNATURE_KEY]
    text, _, line = sig.rpartition("\u2014 ")
    name, b64 = line.rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 0x01
    return _set_prop(
        model, SIGNATURE_KEY, f"{text}\u2014 {name} {base64.b64encode(raw).decode()}\n"
    )


TAMPERS = {
    "one weight": (_tamper_weight, "content", "graph or weights changed"),
    "one metadata value": (
        lambda m: _set_prop(m, "lethe.log.size", "2"),
        "metadata:lethe.log.size",
        "lethe.log.size is '2' but '1' was signed",
    ),
    "forgotten classes": (
        lambda m: _set_prop(m, "lethe.forgotten_classes", "[1]"),
        "metadata:lethe.forgotten_classes",
        "was signed",
    ),
    "an added key": (
        lambda m: _set_prop(m, "lethe.extra", "x"),
        "metadata:lethe.extra",
        "added after signing",
    ),
    "a removed key": (
        lambda m: _set_prop(m, "lethe.requests", None),
        "metadata:lethe.requests",
        "was removed",
    ),
    "the signature": (_flip_signature, "signature", "does not verify"),
    "no signature": (lambda m: _set_prop(m, SIGNATURE_KEY, None), "signature", "not signed"),
    "a garbage signature": (
        lambda m: _set_prop(m, SIGNATURE_KEY, "hello"),
        "signature",
        "does not verify",
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampering_is_detected_and_named(
    signed: onnx.ModelProto, signer: note.Signer, tamper: str
) -> None:
    fn, what, match = TAMPERS[tamper]
    bad = fn(signed)
    with pytest.raises(ModelVerificationError, match=match) as err:
        verify_model(bad.SerializeToString(), [note.Verifier.from_vkey(signer.vkey)])
    assert err.value.what == what


def test_signature_of_another_model_is_refused(signer: note.Signer) -> None:
    """A valid signature moved from one model onto another names the content."""
    a = sign_model(tiny_model(0), metadata(), signer)
    b = sign_model(tiny_model(1), metadata(), signer)
    swapped = _set_prop(b, SIGNATURE_KEY, _props(a)[SIGNATURE_KEY])
    with pytest.raises(ModelVerificationError) as err:
        verify_model(swapped, [note.Verifier.from_vkey(signer.vkey)])
    assert err.value.what == "content"


def test_untrusted_key_is_refused(signed: onnx.ModelProto) -> None:
    other = note.Signer.generate("example.org/lethe-test")
    with pytest.raises(ModelVerificationError, match="no signature by a trusted key") as err:
        verify_model(signed, [note.Verifier.from_vkey(other.vkey)])
    assert err.value.what == "signature"


def test_metadata_is_validated() -> None:
    with pytest.raises(FormatError, match="base_digest"):
        metadata(base_digest="abc")
    with pytest.raises(FormatError, match="log_root"):
        metadata(log_root="not base64!")
    with pytest.raises(FormatError, match="requests"):
        metadata(requests=("bad id with spaces",))
    with pytest.raises(FormatError, match="forgotten_classes"):
        metadata(forgotten_classes=(1, 1))
    with pytest.raises(FormatError, match="variant"):
        metadata(variant="fp16")
    with pytest.raises(FormatError, match="single line"):
        metadata(model_name="a\nb")
    assert metadata(forgotten_classes=(3, 1)).forgotten_classes == (1, 3)


def test_not_a_model_is_a_format_error(tmp_path: Path, signer: note.Signer) -> None:
    with pytest.raises(FormatError, match="not an ONNX model"):
        read_model(b"\x00\x01 definitely not protobuf")
    with pytest.raises(FormatError, match="not a Lethe model"):
        read_model(tiny_model().SerializeToString()).metadata()


# --- receipts --------------------------------------------------------------------------------


def _attestation(meta: ModelMetadata, file_sha256: str, content: str) -> S.UnlearningAttestation:
    req = S.RequestRecord(
        id="req-000001",
        subject_commitment=S.hmac_commitment(b"k" * 32, "subject-1"),
        classes=(1, 3),
        legal_basis="GDPR Art. 17(1)(a)",
        received_at="2024-05-01T12:00:00Z",
        due_at="2024-06-01T12:00:00Z",
        approved_at="2024-05-02T12:00:00Z",
    )
    return S.UnlearningAttestation(
        outcome="applied",
        requests=(req,),
        forgotten_classes=meta.forgotten_classes,
        applied_at="2024-05-03T00:00:00Z",
        model=S.ModelRef(meta.model_name, meta.base_digest, meta.folded_digest),
        filter_bank_digest="sha256:" + "c" * 64,
        method=S.MethodRef("weight-filtering", "0.1.0", {}),
        metrics={"forget_accuracy": 0.0},
        policy=S.PolicyVerdict({"forget_accuracy_max": 0.01}, True, ()),
        onnx=S.OnnxRef(file_sha256, content),
    )


@pytest.fixture
def logged(tmp_path: Path, signer: note.Signer, log_factory: Any) -> dict[str, Any]:
    """A signed model, its attestation in a real SQLite log, and a receipt for it."""
    log = log_factory(f"sqlite:///{tmp_path / 'log.db'}")
    log.append(
        S.LifecycleEvent("request.received", "2024-05-01T12:00:00Z", request_id="req-000001")
    )
    head = log.head()
    meta = metadata(head)
    model = sign_model(tiny_model(), meta, signer)
    data = model.SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    att = _attestation(meta, hashlib.sha256(data).hexdigest(), content_hash(model))
    index = log.append(att).index
    other = log.append(
        _attestation(meta, "f" * 64, "sha256:" + "e" * 64)
    ).index  # an attestation of some other model
    event = log.append(
        S.LifecycleEvent("request.approved", "2024-05-02T12:00:00Z", request_id="req-000001")
    ).index
    # Names this very file, but a different folded model than the one the file says it is.
    wrong_digest = log.append(
        _attestation(
            metadata(head, folded_digest="sha256:" + "9" * 64),
            hashlib.sha256(data).hexdigest(),
            content_hash(model),
        )
    ).index
    out = {"path": path, "model": model, "meta": meta, "vkey": signer.vkey, "signer": signer}
    out["log"] = log
    receipts = (("receipt", index), ("other", other), ("event", event), ("digest", wrong_digest))
    for name, i in receipts:
        p = tmp_path / f"{name}.tlog-proof"
        p.write_text(log.receipt(i))
        out[name] = p
    return out


def test_receipt_binds_the_model(logged: dict[str, Any]) -> None:
    keys = [note.Verifier.from_vkey(logged["vkey"])]
    verify_model(logged["path"], keys, receipt=logged["receipt"].read_bytes())
    with pytest.raises(ModelVerificationError, match="names another ONNX model") as err:
        verify_model(logged["path"], keys, receipt=logged["other"].read_bytes())
    assert err.value.what == "receipt" and err.value.index == 2
    with pytest.raises(ModelVerificationError, match="not an unlearning attestation"):
        verify_model(logged["path"], keys, receipt=logged["event"].read_bytes())
    with pytest.raises(ModelVerificationError, match="folded model digest"):
        verify_model(logged["path"], keys, receipt=logged["digest"].read_bytes())


def test_receipt_must_come_after_the_named_log_state(logged: dict[str, Any]) -> None:
    """A model claiming a log state later than its own attestation is refused."""
    meta = logged["meta"]
    later = ModelMetadata(**{**meta.to_dict(), "log_size": 5})
    model = sign_model(tiny_model(), later, logged["signer"])
    with pytest.raises(ModelVerificationError, match="logged after that state") as err:
        verify_model(
            model,
            [note.Verifier.from_vkey(logged["vkey"])],
            receipt=logged["receipt"].read_bytes(),
        )
    assert err.value.what == "receipt"


def test_tampered_receipt_fails_its_inclusion_proof(logged: dict[str, Any]) -> None:
    lines = logged["receipt"].read_text().split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("index ")) + 1
    raw = bytearray(base64.b64decode(lines[i]))
    raw[0] ^= 0xFF
    lines[i] = base64.b64encode(raw).decode()
    with pytest.raises(InclusionProofError):
        verify_model(
            logged["path"],
            [note.Verifier.from_vkey(logged["vkey"])],
            receipt="\n".join(lines).encode(),
        )


# --- CLI -------------------------------------------------------------------------------------


def test_cli_model_verify(logged: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["model", "verify", str(logged["path"]), "--key", logged["vkey"]]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    first, verdict = res.output.splitlines()[:2]
    assert first.startswith("trusted keys: ")
    assert verdict.startswith("OK: model.onnx (fp32) is signed by the log key")

    res = runner.invoke(main, [*args, "--receipt", str(logged["receipt"]), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["ok"] is True and doc["receipt"]["index"] == 1
    assert doc["bytes_hash"] == stripped_hash(logged["path"].read_bytes())
    assert doc["metadata"]["forgotten_classes"] == [1, 3]

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_tamper_weight(logged["model"]).SerializeToString())
    res = runner.invoke(main, ["model", "verify", str(bad), "--key", logged["vkey"], "--json"])
    assert res.exit_code == 50
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["error"]["what"] == "content"
    assert doc["error"]["type"] == "ModelVerificationError"

    res = runner.invoke(main, [*args, "--receipt", str(logged["other"])])
    assert res.exit_code == 50 and "names another ONNX model" in res.stderr

    res = runner.invoke(main, ["model", "info", str(logged["path"]), "--json"])
    assert res.exit_code == 0
    assert json.loads(res.output)["metadata"]["log_size"] == 1


def test_cli_model_verify_reads_bytes_without_onnx(logged: dict[str, Any]) -> None:
    """The CLI hashes the file's exact bytes: a v2 model and its receipt verify without even
    importing onnx (the parse and re-serialisation it used to do made it ~6x slower)."""
    script = (
        "import sys\n"
        "from lethe_audit.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'onnx' not in sys.modules, 'onnx was imported'\n"
    )
    args = ["model", "verify", str(logged["path"]), "--key", logged["vkey"]]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args, "--receipt", str(logged["receipt"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK: model.onnx (fp32)" in proc.stdout


PREPROCESSING = {
    "input_size": [1, 8, 8],
    "mean": [0.5],
    "std": [0.25],
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "input_range": [0.0, 1.0],
}


def test_optional_metadata_round_trips_and_is_signed(signer: note.Signer) -> None:
    meta = metadata(preprocessing=PREPROCESSING)
    model = sign_model(tiny_model(), meta, signer)
    assert _props(model)["lethe.preprocessing"].startswith('{"crop_pct":1.0,')
    back = read_model(model).metadata()
    assert back == meta and back.to_dict()["preprocessing"] == PREPROCESSING
    verify_model(model, [signer.verifier()])
    changed = _set_prop(model, "lethe.preprocessing", '{"mean":[0.0]}')
    with pytest.raises(ModelVerificationError, match=r"lethe\.preprocessing"):
        verify_model(changed, [signer.verifier()])
    with pytest.raises(FormatError, match="source_sha256 names the fp32 file"):
        metadata(source_sha256="a" * 64)
    with pytest.raises(FormatError, match="preprocessing"):
        metadata(preprocessing={"x": float("nan")})
    optional = {"lethe.preprocessing", "lethe.model.source_sha256"}
    assert not optional & set(metadata().to_props())  # unset: older models stay byte-identical


def test_a_variant_is_bound_by_the_receipt_of_its_fp32_source(
    logged: dict[str, Any], tmp_path: Path
) -> None:
    """An int8 file names the fp32 file it was made from (signed metadata): the apply's
    receipt, which names that fp32 file, binds the int8 file too."""
    keys = [note.Verifier.from_vkey(logged["vkey"])]
    fp32_sha = hashlib.sha256(logged["path"].read_bytes()).hexdigest()
    base = logged["meta"]
    int8 = tmp_path / "int8.onnx"
    meta = ModelMetadata(**{**base.to_dict(), "variant": "int8", "source_sha256": fp32_sha})
    int8.write_bytes(sign_model(tiny_model(seed=1), meta, logged["signer"]).SerializeToString())
    verify_model(int8, keys, receipt=logged["receipt"].read_bytes())
    args = ["model", "verify", str(int8), "--key", logged["vkey"]]
    res = CliRunner().invoke(main, [*args, "--receipt", str(logged["receipt"])])
    assert res.exit_code == 0 and "OK: int8.onnx (int8)" in res.output, res.output
    orphan = tmp_path / "orphan.onnx"
    meta = ModelMetadata(**{**base.to_dict(), "variant": "int8"})
    orphan.write_bytes(sign_model(tiny_model(seed=1), meta, logged["signer"]).SerializeToString())
    with pytest.raises(ModelVerificationError, match="names another ONNX model"):
        verify_model(orphan, keys, receipt=logged["receipt"].read_bytes())


def test_cli_prints_how_to_feed_the_model(signer: note.Signer, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    model = sign_model(tiny_model(), metadata(preprocessing=PREPROCESSING), signer)
    path.write_bytes(model.SerializeToString())
    res = CliRunner().invoke(main, ["model", "verify", str(path), "--key", signer.vkey])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[-2] == (
        "feed: pixels/255 -> [0, 1]; 1 channel (an RGB image: 0.299 R + 0.587 G + 0.114 B); "
        "resize to 8x8 bilinear (antialiased when shrinking); (x - mean) / std with mean "
        "[0.5], std [0.25]; float32 NCHW [N, 1, 8, 8]"
    )
    assert lines[-1].startswith("OK: m.onnx")


def test_the_feed_line_stays_one_escaped_line(signer: note.Signer, tmp_path: Path) -> None:
    """A signed record whose interpolation holds a newline and an escape sequence cannot add
    a line (say, a forged verdict) or drive the terminal."""
    path = tmp_path / "m.onnx"
    pre = {**PREPROCESSING, "interpolation": "bilinear\nOK: forged.onnx\x1b[2J"}
    model = sign_model(tiny_model(), metadata(preprocessing=pre), signer)
    path.write_bytes(model.SerializeToString())
    res = CliRunner().invoke(main, ["model", "verify", str(path), "--key", signer.vkey])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and not any(
        line.startswith("OK: forged") for line in res.output.splitlines()
    ), res.output
    assert res.output.splitlines()[-1].startswith("OK: m.onnx")


def test_feed_steps_are_in_order() -> None:
    """timm's ImageNet evaluation transform, step by step, in the order that reproduces it."""
    from lethe_audit.feed import feed_steps

    pre = {
        "input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "interpolation": "bicubic", "crop_pct": 0.95,
        "input_range": [-1.0, 1.0],
    }  # fmt: skip
    steps = feed_steps(pre).split("; ")
    assert steps[0] == "pixels/255 -> [-1, 1]"
    assert steps[1].startswith("3 channels RGB (a gray image: copied")
    assert steps[2] == "resize to 235x235 bicubic (antialiased when shrinking), clamp to [-1, 1]"
    assert steps[3] == "centre-crop 224x224"
    assert steps[4].startswith("(x - mean) / std with mean [0.485")
    assert steps[5] == "float32 NCHW [N, 3, 224, 224]"
    assert feed_steps({"odd": 1}) == '{"odd": 1}'
