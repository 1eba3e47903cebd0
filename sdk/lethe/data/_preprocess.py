"""Turning ``uint8`` images into model inputs, following the model's timm data config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from lethe.data._arrays import ImageArrays
from lethe.errors import DataError

__all__ = ["Preprocess", "to_dataset"]


@dataclass(frozen=True)
class Preprocess:
    """Resize to the model's input size, match its channel count, scale to [0, 1], normalise.

    Small images are resized directly (no centre crop: cropping an 8x8 digit loses the digit).
    """

    input_size: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        c = self.input_size[0]
        if c not in (1, 3) or min(self.input_size) < 1:
            raise DataError(f"input_size must be (C, H, W) with C in (1, 3), got {self.input_size}")
        if len(self.mean) != c or len(self.std) != c:
            raise DataError(f"mean and std need {c} values each, got {self.mean}, {self.std}")
        if any(s <= 0 for s in self.std):
            raise DataError(f"std values must be positive, got {self.std}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Preprocess:
        """From a timm-style data config (``input_size``, ``mean``, ``std``)."""
        try:
            size = tuple(int(v) for v in cfg["input_size"])
            c = size[0]
            mean = tuple(float(v) for v in cfg.get("mean", (0.5,) * c))
            std = tuple(float(v) for v in cfg.get("std", (0.5,) * c))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"invalid data config {cfg!r}: {exc}") from exc
        # timm keeps 3-channel ImageNet statistics for 1-channel models: average them.
        if len(mean) != c:
            mean = (float(np.mean(mean)),) * c
        if len(std) != c:
            std = (float(np.mean(std)),) * c
        return cls((size[0], size[1], size[2]), mean, std)

    @classmethod
    def from_model(cls, model: nn.Module) -> Preprocess:
        """Resolve the data config timm attached to ``model``."""
        from timm.data.config import resolve_data_config

        return cls.from_config(resolve_data_config({}, model=model))  # type: ignore[no-untyped-call]

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, x: npt.NDArray[np.uint8], *, batch_size: int = 4096) -> torch.Tensor:
        """``uint8`` [N, H, W, C] -> ``float32`` [N, C, H, W] ready for the model."""
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"expected uint8 images [N, H, W, C], got {x.dtype} {x.shape}")
        c, h, w = self.input_size
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, c, 1, 1)
        out = torch.empty((len(x), c, h, w), dtype=torch.float32)
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            t = chunk.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
            if t.shape[1] != c:
                t = _convert_channels(t, c)
            if t.shape[-2:] != (h, w):
                shrink = t.shape[-2] > h or t.shape[-1] > w
                t = F.interpolate(
                    t, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink
                )
            out[start : start + len(chunk)] = (t - mean) / std
        return out

    def numpy(self, x: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Same as calling, as a numpy array (for onnxruntime)."""
        return self(x).numpy()


def _convert_channels(t: torch.Tensor, c: int) -> torch.Tensor:
    if t.shape[1] == 1 and c == 3:
        return t.expand(-1, 3, -1, -1)
    if t.shape[1] == 3 and c == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=t.dtype).view(1, 3, 1, 1)
        return (t * weights).sum(dim=1, keepdim=True)
    raise DataError(f"cannot convert {t.shape[1]}-channel images to {c} channels")


def to_dataset(data: ImageArrays, preprocess: Preprocess) -> TensorDataset:
    """A ``TensorDataset`` of preprocessed images and labels."""
    return TensorDataset(preprocess(data.x), torch.from_numpy(data.y.copy()))
