"""Shared fixtures for the metrics tests: sklearn digits at 16x16 and tiny trained models.

Everything is seeded and small (a plain CNN trains in well under a second, timm's
``test_resnet`` in about one) so the whole metrics suite stays fast on two CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from lethe_audit.metrics import ImageSet

FORGET = 3  # the digit the tests forget


@dataclass(frozen=True)
class Digits:
    train: ImageSet
    test: ImageSet


@pytest.fixture(scope="session")
def digits() -> Digits:
    d = load_digits()
    # 8x8 -> 16x16 by pixel repetition, one channel, values in [0, 1].
    x = (np.kron(d.images, np.ones((2, 2))) / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.33, stratify=y, random_state=0)
    return Digits(ImageSet(xtr, ytr, 10), ImageSet(xte, yte, 10))


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def make_timm() -> nn.Module:
    import timm

    return timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)


def train_model(
    make: Callable[[], nn.Module],
    data: ImageSet,
    *,
    exclude: int | None = None,
    epochs: int = 6,
    seed: int = 0,
) -> nn.Module:
    """Adam, lr 3e-3, batch 64; ``exclude`` drops a class (the "retrained without" model)."""
    x, y = data.images, data.labels
    if exclude is not None:
        keep = y != exclude
        x, y = x[keep], y[keep]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        xs, ys = torch.tensor(x), torch.tensor(y)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xs), generator=gen)
            for i in range(0, len(xs), 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
                opt.step()
    return model.eval()


def head_masked(model: nn.Module, head: nn.Linear, classes: list[int]) -> nn.Module:
    """The head-masking baseline (DESIGN §3): a copy whose head can never predict ``classes``.

    The head row is zeroed and its bias set very negative, so the logit always loses; every
    feature before the head is untouched.
    """
    import copy

    clone = copy.deepcopy(model)
    names = {id(m): n for n, m in model.named_modules()}
    new_head = clone.get_submodule(names[id(head)])
    assert isinstance(new_head, nn.Linear)
    with torch.no_grad():
        for c in classes:
            new_head.weight[c].zero_()
            assert new_head.bias is not None
            new_head.bias[c] = -1e4
    return clone


@pytest.fixture(scope="session")
def cnn(digits: Digits) -> nn.Module:
    return train_model(make_cnn, digits.train)


@pytest.fixture(scope="session")
def cnn_retrained(digits: Digits) -> nn.Module:
    return train_model(make_cnn, digits.train, exclude=FORGET)


@pytest.fixture(scope="session")
def timm_model(digits: Digits) -> nn.Module:
    return train_model(make_timm, digits.train, epochs=3)


@pytest.fixture(scope="session")
def timm_onnx(timm_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``timm_model`` exported as DESIGN §7 prescribes (dynamo, no optimisation, dynamic batch)."""
    path = tmp_path_factory.mktemp("onnx") / "test_resnet.onnx"
    program = torch.onnx.export(
        timm_model,
        (torch.zeros(2, 1, 16, 16),),
        dynamo=True,
        optimize=False,
        external_data=False,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    assert program is not None
    program.save(str(path))
    return path
