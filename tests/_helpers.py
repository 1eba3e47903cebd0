"""Helpers shared by several test packages."""

from __future__ import annotations

import torch
from torch import nn

from lethe.filters import FilterBank


def random_bank(model: nn.Module, seed: int = 0) -> FilterBank:
    """A bank with random filter values (mostly 0.6-1, some exact 0 and 1)."""
    bank = FilterBank.init(model, 10)
    g = torch.Generator().manual_seed(seed)
    alpha = {}
    for name, a in bank.alpha.items():
        r = 0.6 + 0.4 * torch.rand(a.shape, generator=g)
        r[torch.rand(a.shape, generator=g) < 0.05] = 0.0
        r[torch.rand(a.shape, generator=g) < 0.05] = 1.0
        alpha[name] = r
    return bank.with_alpha(alpha)
