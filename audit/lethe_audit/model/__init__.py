"""Signed ONNX models for edge devices: metadata, content hash, signature, verification.

Torch-free (onnx + cryptography + lethe_audit). The SDK signs with :func:`sign_model`; an
edge device or auditor checks a model file with :func:`verify_model` (or
``lethe-audit model verify MODEL.onnx --key VKEY [--receipt FILE]``).

>>> signed = sign_model(onnx_model, metadata, log_signer)              # doctest: +SKIP
>>> verify_model("model.onnx", [Verifier.from_vkey(vkey)], receipt=r)  # doctest: +SKIP
"""

from __future__ import annotations

from lethe_audit.model._signed import (
    MODEL_FORMAT,
    SIGNATURE_KEY,
    VARIANTS,
    ModelMetadata,
    SignedModel,
    content_hash,
    read_model,
    sign_model,
    signing_text,
    verify_model,
)

__all__ = [
    "MODEL_FORMAT",
    "SIGNATURE_KEY",
    "VARIANTS",
    "ModelMetadata",
    "SignedModel",
    "content_hash",
    "read_model",
    "sign_model",
    "signing_text",
    "verify_model",
]
