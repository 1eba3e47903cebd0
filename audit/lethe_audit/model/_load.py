"""Verified loading on an edge device: verify exactly the bytes that run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lethe_audit import note
from lethe_audit.errors import FormatError
from lethe_audit.model._bytes import scan_model_bytes
from lethe_audit.model._signed import (
    _check_self_contained,
    _Subject,
    _verify_subject,
    content_hash,
    read_model_bytes,
)

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["load_verified"]


def _as_verifiers(key: Any) -> list[note.Verifier]:
    """``key``: a Verifier, a vkey string, or a sequence of them."""
    items = [key] if isinstance(key, (str, note.Verifier)) else list(key)
    out = [k if isinstance(k, note.Verifier) else note.Verifier.from_vkey(k) for k in items]
    if not out:
        raise FormatError("key: give at least one trusted vkey or Verifier")
    return out


def load_verified(
    path_or_bytes: str | os.PathLike[str] | bytes,
    key: str | note.Verifier | Sequence[str | note.Verifier],
    *,
    receipt: str | bytes | None = None,
    origin: str | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    session_options: onnxruntime.SessionOptions | None = None,
) -> onnxruntime.InferenceSession:
    """An onnxruntime session for a signed Lethe model, built from the very bytes verified.

    A path is read once (one open file, a regular file of at most ``MAX_MODEL_BYTES``); the
    signature by a trusted ``key`` (vkey text or :class:`~lethe_audit.note.Verifier`, or a
    list), the file hash the signature covers and, with ``receipt``, the receipt's inclusion
    proof and its binding to this model are all checked on those bytes, every tensor is checked
    to be inside the file (no external data), and the session is built from the same bytes
    object: replacing the file after the read cannot change what runs. Raises
    :class:`~lethe_audit.errors.ModelVerificationError` (``what`` names the part at fault),
    :class:`~lethe_audit.errors.FormatError` for a file that is not a self-contained ONNX model,
    or the receipt verifier's errors. Needs ``onnxruntime`` (the ``[edge]`` extra;
    ``[remeasure]`` has it too).
    """
    verifiers = _as_verifiers(key)
    if isinstance(path_or_bytes, bytes):
        data = bytes(path_or_bytes)  # a bytes subclass could change what it returns
    else:
        data = read_model_bytes(path_or_bytes)
    proto = _parse(data)
    scanned = scan_model_bytes(data)

    def content() -> str:
        return content_hash(proto)

    subject = _Subject(scanned.sha256, scanned.stripped, scanned.props, content)
    _verify_subject(subject, verifiers, receipt=receipt, origin=origin)
    _check_self_contained(proto)
    return _session(data, providers, session_options)


def _parse(data: bytes) -> Any:
    import onnx

    try:
        return onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise FormatError(f"not an ONNX model: {e}") from None


def _session(data: bytes, providers: Sequence[str], options: Any) -> onnxruntime.InferenceSession:
    from lethe_audit.errors import MissingExtraError

    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingExtraError("load_verified", "edge", "onnxruntime") from None
    return ort.InferenceSession(data, sess_options=options, providers=list(providers))
