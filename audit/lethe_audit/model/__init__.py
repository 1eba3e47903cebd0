"""Signed ONNX models for edge devices: metadata, content hash, signature, verification.

Torch-free (onnx + cryptography + lethe_audit). The SDK signs with :func:`sign_model`; an
edge device loads one with :func:`load_verified` (verifies and builds the onnxruntime session
from the same bytes); an auditor checks a model file with :func:`verify_model` (or
``lethe-audit model verify MODEL.onnx --key VKEY [--receipt FILE]``). Exports also carry an
OpenSSF Model Signing signature (``MODEL.onnx.sig``: :func:`sign_openssf`, :func:`verify_openssf`,
the ``[openssf]`` extra).

>>> signed = sign_model(onnx_model, metadata, log_signer)              # doctest: +SKIP
>>> verify_model("model.onnx", [Verifier.from_vkey(vkey)], receipt=r)  # doctest: +SKIP
"""

from __future__ import annotations

from lethe_audit.model._bytes import ModelBytes, scan_model_bytes
from lethe_audit.model._load import load_verified
from lethe_audit.model._openssf import (
    OPENSSF_SIGNATURE_SUFFIX,
    openssf_signature_path,
    sign_openssf,
    verify_openssf,
)
from lethe_audit.model._signed import (
    MAX_MODEL_BYTES,
    MODEL_FORMAT,
    SIGNATURE_FORMAT,
    SIGNATURE_KEY,
    VARIANTS,
    ModelMetadata,
    SignedModel,
    content_hash,
    read_model,
    read_model_bytes,
    scan_model_path,
    sign_model,
    signing_text,
    signing_text_v2,
    stripped_hash,
    verify_model,
)

__all__ = [
    "MAX_MODEL_BYTES",
    "MODEL_FORMAT",
    "OPENSSF_SIGNATURE_SUFFIX",
    "SIGNATURE_FORMAT",
    "SIGNATURE_KEY",
    "VARIANTS",
    "ModelBytes",
    "ModelMetadata",
    "SignedModel",
    "content_hash",
    "load_verified",
    "openssf_signature_path",
    "read_model",
    "read_model_bytes",
    "scan_model_bytes",
    "scan_model_path",
    "sign_model",
    "sign_openssf",
    "signing_text",
    "signing_text_v2",
    "stripped_hash",
    "verify_model",
    "verify_openssf",
]
