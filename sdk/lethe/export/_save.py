"""Writing ONNX models to disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx

from lethe._io import atomic_write_bytes

__all__ = ["save_model"]


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Write ``model`` as one self-contained ONNX file (temp file + fsync + rename).

    Returns the path and the file's SHA-256 (hex), the digest a log statement names it by.
    """
    data = model.SerializeToString()
    return atomic_write_bytes(path, data), hashlib.sha256(data).hexdigest()
