"""An "outside" model: a small timm ResNet trained on digits *outside Lethe* with the standard
ImageNet mean/std (normalised by hand, not by Lethe), saved the way people save weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTSIDE_SPEC: dict[str, Any] = {
    "arch": "resnet18",
    "num_classes": 10,
    "in_chans": 3,
    "input_size": (8, 8),
    "small_stem": True,
    "kwargs": {"channels": [8, 16, 32, 64]},
}


def by_hand(x: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The outside training code's own normalisation (uint8 NHWC 8x8 gray -> 3x8x8)."""
    import torch

    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    t = t.expand(-1, 3, -1, -1)
    return (t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@dataclass(frozen=True)
class Outside:
    state_dict: dict[str, Any]
    real_accuracy: float
    train: Any
    test: Any


@pytest.fixture(scope="session")
def outside() -> Outside:
    import torch
    from torch.utils.data import TensorDataset

    from lethe.data import load_digits, stratified_split
    from lethe.models import ModelSpec, accuracy, create_model, fit

    tr, te = stratified_split(load_digits(), test_fraction=0.25, seed=0)
    model = create_model(ModelSpec(**OUTSIDE_SPEC), seed=0)
    ds = TensorDataset(by_hand(tr.x, IMAGENET_MEAN, IMAGENET_STD), torch.from_numpy(tr.y))
    fit(model, ds, epochs=8, lr=3e-3, seed=0, progress=False)
    test = TensorDataset(by_hand(te.x, IMAGENET_MEAN, IMAGENET_STD), torch.from_numpy(te.y))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    return Outside(sd, accuracy(model, test), tr, te)


def save_safetensors(sd: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path
