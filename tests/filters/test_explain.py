"""Explainability figures and numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lethe.filters import FilterBank, channel_overlap, explain, suppression_by_layer
from lethe.models import ModelSpec, create_model


def _bank() -> FilterBank:
    model = create_model(ModelSpec("resnet18", 4, 1, (16, 16)), seed=0)
    bank = FilterBank.init(model, 4)
    alpha = bank.alpha
    for a in alpha.values():
        a[0, : a.shape[1] // 2] = 0.0  # class 0 switches off the first half of every layer
        a[1, : a.shape[1] // 2] = 0.1  # class 1 the same channels
        a[2, a.shape[1] // 2 :] = 0.0  # class 2 the other half
    return bank.with_alpha(alpha)


def test_overlap_and_suppression_numbers() -> None:
    bank = _bank()
    ov = channel_overlap(bank)
    assert np.allclose(ov, ov.T)
    assert ov[0, 1] == 1.0 and ov[0, 2] == 0.0 and ov[3, 3] == 0.0
    sup = suppression_by_layer(bank)
    assert sup.shape == (4, len(bank.targets))
    assert np.allclose(sup[0], 0.5) and np.allclose(sup[3], 0.0)


def test_explain_writes_pngs(tmp_path: Path) -> None:
    bank = _bank()
    res = explain(bank, tmp_path, classes=[0, 2])
    assert len(res.layer_figures) == len(bank.targets)
    for p in [*res.layer_figures.values(), res.summary_figure, res.overlap_figure]:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 50
    assert not torch.equal(bank.alpha[bank.target_names[0]][0], torch.ones(1))
