"""The int8 model's own attestation (``urn:lethe:attestation:variant:v1``): strict predicate,
statement binding, typed parsing, and the receipt that binds the int8 file; the unlearning
predicate's optional ``preprocessing``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from lethe_audit import note
from lethe_audit import statements as S
from lethe_audit.errors import ModelVerificationError, StatementError
from lethe_audit.model import ModelMetadata, read_model, sign_model, verify_model
from tests.audit.test_model_verify import _attestation, logged, metadata, signer, tiny_model

__all__ = ["logged", "signer"]  # fixtures

FP32 = "e" * 64


def _variant(**overrides: Any) -> S.VariantAttestation:
    fields: dict[str, Any] = {
        "variant": "int8",
        "exported_at": "2024-05-04T00:00:00Z",
        "model": S.ModelRef("digits-cnn", "sha256:" + "a" * 64, "sha256:" + "b" * 64),
        "source": {"index": 1, "onnx_sha256": FP32},
        "requests": ("req-2", "req-000001"),
        "forgotten_classes": (1, 3),
        "onnx": S.OnnxRef("d" * 64, "sha256:" + "d" * 64),
        "quantization": {"format": "qdq", "calibration_samples": 256},
        "metrics": {"accuracy": {"forget_accuracy": 0.0}},
        "policy": S.PolicyVerdict({"forget_accuracy_max": 0.01}, True, ()),
    }
    fields.update(overrides)
    return S.VariantAttestation(**fields)


def test_variant_statement_round_trips() -> None:
    att = _variant()
    assert att.requests == ("req-000001", "req-2")  # sorted
    st = att.to_statement()
    assert [s.name for s in st.subject] == ["digits-cnn.int8.onnx", "digits-cnn.onnx"]
    assert st.subject[1].sha256 == FP32
    S.validate_statement(st)
    back = S.parse_predicate(st)
    assert isinstance(back, S.VariantAttestation) and back.to_predicate() == att.to_predicate()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"policy": S.PolicyVerdict({"x": 1}, False, ("forget too high",))}, "predicate.policy"),
        ({"source": {"index": -1, "onnx_sha256": FP32}}, "predicate.source.index"),
        ({"source": {"index": 1}}, "predicate.source"),
        ({"requests": ("req-1", "req-1")}, "predicate.requests"),
        ({"requests": ()}, "predicate.requests"),
        ({"variant": "INT 8"}, "predicate.variant"),
        ({"metrics": {"x": float("inf")}}, "predicate.metrics"),
        ({"model": S.ModelRef("m", "sha256:" + "a" * 64, None)}, "predicate.model"),
        (
            {"quantization": {"format": "qdq", "calibration_source": "test"}},
            "predicate.quantization.calibration_source",
        ),
    ],
)
def test_variant_predicate_is_strict(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(StatementError) as err:
        _variant(**overrides)
    assert err.value.field is not None and err.value.field.startswith(field)


def test_variant_records_its_calibration_source() -> None:
    """``quantization.calibration_source`` is optional (older variants lack it) and, when
    present, one of CALIBRATION_SOURCES."""
    for source in S.CALIBRATION_SOURCES:
        att = _variant(quantization={"format": "qdq", "calibration_source": source})
        back = S.parse_predicate(att.to_statement())
        assert isinstance(back, S.VariantAttestation)
        assert back.quantization["calibration_source"] == source


def test_variant_statement_subjects_must_name_both_files() -> None:
    st = _variant().to_statement()
    swapped = S.Statement((st.subject[1], st.subject[0]), st.predicate_type, st.predicate)
    with pytest.raises(StatementError, match="subject\\[0\\] must be the variant file"):
        S.validate_statement(swapped)
    alone = S.Statement((st.subject[0],), st.predicate_type, st.predicate)
    with pytest.raises(StatementError, match="source fp32 file"):
        S.validate_statement(alone)


def test_unlearning_preprocessing_is_optional_and_checked() -> None:
    meta = metadata()
    plain = _attestation(meta, FP32, "sha256:" + "e" * 64)
    assert "preprocessing" not in plain.to_predicate()  # older entries stay byte-identical
    pre = {"input_size": [1, 8, 8], "mean": [0.5], "std": [0.25]}
    att = S.UnlearningAttestation.from_predicate({**plain.to_predicate(), "preprocessing": pre})
    assert att.preprocessing == pre and att.to_predicate()["preprocessing"] == pre
    with pytest.raises(StatementError, match="preprocessing must be an object"):
        S.validate_unlearning({**plain.to_predicate(), "preprocessing": [1]})


def test_the_variant_receipt_binds_the_int8_file(logged: dict[str, Any], tmp_path: Path) -> None:
    """The int8 file's own attestation, appended to the log, gives a receipt that verifies
    the int8 file (by its SHA-256)."""
    keys = [note.Verifier.from_vkey(logged["vkey"])]
    base: ModelMetadata = logged["meta"]
    fp32_sha = hashlib.sha256(logged["path"].read_bytes()).hexdigest()
    meta = ModelMetadata(**{**base.to_dict(), "variant": "int8", "source_sha256": fp32_sha})
    data = sign_model(tiny_model(seed=2), meta, logged["signer"]).SerializeToString()
    int8 = tmp_path / "int8.onnx"
    int8.write_bytes(data)
    log = logged["log"]
    att = _variant(
        model=S.ModelRef(meta.model_name, meta.base_digest, meta.folded_digest),
        source={"index": 1, "onnx_sha256": fp32_sha},
        requests=meta.requests,
        forgotten_classes=meta.forgotten_classes,
        onnx=S.OnnxRef(hashlib.sha256(data).hexdigest(), read_model(data).content_hash),
    )
    receipt = log.receipt(log.append(att).index)
    verify_model(int8, keys, receipt=receipt)
    other = sign_model(tiny_model(seed=3), meta, logged["signer"]).SerializeToString()
    (tmp_path / "other.onnx").write_bytes(other)
    with pytest.raises(ModelVerificationError, match="names another ONNX model"):
        # same fp32 source, another int8 file: the variant attestation names one file only
        verify_model(tmp_path / "other.onnx", keys, receipt=receipt)
