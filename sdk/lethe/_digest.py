"""Canonical digests of tensors and models.

The digest must not depend on the process, the device, the order in which a state dict was
built or how it was saved, so it hashes a self-describing canonical stream: a version tag,
then for each tensor in sorted-name order a JSON header (name, dtype, shape) and the raw
little-endian bytes of the contiguous CPU tensor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["model_digest", "tensors_digest", "update_with_tensors"]

_TAG = b"lethe/tensors/v1\n"


def _tensor_bytes(t: torch.Tensor) -> bytes:
    cpu = t.detach().to("cpu").contiguous()
    if cpu.dim() == 0:
        cpu = cpu.reshape(1)
    # Viewing as bytes works for every dtype, including bfloat16 that numpy cannot hold.
    return bytes(cpu.view(torch.uint8).numpy().tobytes())


def update_with_tensors(h: hashlib._Hash, tensors: Mapping[str, torch.Tensor]) -> None:
    """Feed ``tensors`` into ``h`` in canonical order."""
    h.update(_TAG)
    for name in sorted(tensors):
        t = tensors[name]
        header = {
            "dtype": str(t.dtype).removeprefix("torch."),
            "name": name,
            "shape": list(t.shape),
        }
        h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        h.update(_tensor_bytes(t))


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a mapping of named tensors, independent of insertion order."""
    h = hashlib.sha256()
    update_with_tensors(h, tensors)
    return h.hexdigest()


def model_digest(model: nn.Module) -> str:
    """Canonical SHA-256 (hex) of a model's state dict (parameters and buffers).

    Stable across processes, devices and save/load round trips; any change to any weight,
    buffer, name, dtype or shape changes it.
    """
    return tensors_digest(model.state_dict())
