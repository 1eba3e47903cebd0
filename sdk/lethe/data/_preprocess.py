"""Turning ``uint8`` images into model inputs, following the model's timm data config."""

from __future__ import annotations

import math
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

__all__ = ["INTERPOLATIONS", "Preprocess", "to_dataset"]

#: Resampling modes a :class:`Preprocess` (and a model spec) may name.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocess:
    """Match the model's channel count, resize, centre-crop, scale, normalise.

    Pixels (``uint8``) are scaled to ``input_range`` (default [0, 1]: ``x / 255``), resized with
    ``interpolation`` to ``floor(size / crop_pct)`` and centre-cropped to the input size
    (timm's evaluation transform), then normalised as ``(x - mean) / std``. With the default
    ``crop_pct=1.0`` images are resized directly (cropping an 8x8 digit loses the digit).
    """

    input_size: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    input_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        c = self.input_size[0]
        if c not in (1, 3) or min(self.input_size) < 1:
            raise DataError(f"input_size must be (C, H, W) with C in (1, 3), got {self.input_size}")
        if len(self.mean) != c or len(self.std) != c:
            raise DataError(f"mean and std need {c} values each, got {self.mean}, {self.std}")
        if any(not s > 0 or not math.isfinite(s) for s in self.std):
            raise DataError(f"std values must be positive, got {self.std}")
        if not all(math.isfinite(m) for m in self.mean):
            raise DataError(f"mean values must be finite, got {self.mean}")
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        if not 0.0 < self.crop_pct <= 1.0:
            raise DataError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        lo, hi = (float(v) for v in self.input_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(
                f"input_range must be (low, high) with low < high, got {self.input_range}"
            )
        object.__setattr__(self, "input_range", (lo, hi))

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Preprocess:
        """From a timm-style data config (``input_size``, ``mean``, ``std``, ``interpolation``,
        ``crop_pct``; ``input_range`` too when it is a Lethe record)."""
        try:
            size = tuple(int(v) for v in cfg["input_size"])
            c = size[0]
            mean = tuple(float(v) for v in cfg.get("mean", (0.5,) * c))
            std = tuple(float(v) for v in cfg.get("std", (0.5,) * c))
            interp = str(cfg.get("interpolation") or "bilinear")
            crop = float(cfg.get("crop_pct") or 1.0)
            lo, hi = (float(v) for v in cfg.get("input_range") or (0.0, 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"invalid data config {cfg!r}: {exc}") from exc
        # timm keeps 3-channel ImageNet statistics for 1-channel models: average them.
        if len(mean) != c:
            mean = (float(np.mean(mean)),) * c
        if len(std) != c:
            std = (float(np.mean(std)),) * c
        return cls((size[0], size[1], size[2]), mean, std, interp, crop, (lo, hi))

    @classmethod
    def from_model(cls, model: nn.Module) -> Preprocess:
        """Resolve the data config timm attached to ``model``."""
        from timm.data.config import resolve_data_config

        return cls.from_config(resolve_data_config({}, model=model))  # type: ignore[no-untyped-call]

    def to_dict(self) -> dict[str, Any]:
        """The full record (what registration stores, attestations and ONNX metadata carry)."""
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "input_range": list(self.input_range),
        }

    def describe(self) -> str:
        """One line saying how to feed the model, step by step in order, e.g. for a user
        preparing ONNX inputs (:func:`lethe_audit.feed.feed_steps`, shared with the auditor)."""
        from lethe_audit.feed import feed_steps

        return feed_steps(self.to_dict())

    def __call__(self, x: npt.NDArray[np.uint8], *, batch_size: int = 4096) -> torch.Tensor:
        """``uint8`` [N, H, W, C] -> ``float32`` [N, C, H, W] ready for the model."""
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"expected uint8 images [N, H, W, C], got {x.dtype} {x.shape}")
        c, h, w = self.input_size
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, c, 1, 1)
        lo, hi = self.input_range
        out = torch.empty((len(x), c, h, w), dtype=torch.float32)
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            t = chunk.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
            if t.shape[1] != c:
                t = _convert_channels(t, c)
            t = self._resize_crop(t)
            if (lo, hi) != (0.0, 1.0):
                t = t * (hi - lo) + lo
            out[start : start + len(chunk)] = (t - mean) / std
        return out

    def _resize_crop(self, t: torch.Tensor) -> torch.Tensor:
        _, h, w = self.input_size
        sh, sw = (h, w) if self.crop_pct == 1.0 else _scaled(h, w, self.crop_pct)
        if t.shape[-2:] != (sh, sw):
            t = _resize(t, sh, sw, self.interpolation)
        if (sh, sw) != (h, w):
            top, left = (sh - h) // 2, (sw - w) // 2
            t = t[..., top : top + h, left : left + w]
        return t

    def numpy(self, x: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Same as calling, as a numpy array (for onnxruntime)."""
        return self(x).numpy()


def _scaled(h: int, w: int, crop_pct: float) -> tuple[int, int]:
    return max(h, math.floor(h / crop_pct)), max(w, math.floor(w / crop_pct))


def _resize(t: torch.Tensor, h: int, w: int, interpolation: str) -> torch.Tensor:
    if interpolation == "nearest":
        return F.interpolate(t, size=(h, w), mode="nearest")
    shrink = t.shape[-2] > h or t.shape[-1] > w
    out = F.interpolate(t, size=(h, w), mode=interpolation, align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out


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
