"""Folding equals the filtered forward on real timm architectures and a plain CNN."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from lethe import model_digest
from lethe.filters import filtered, fold
from lethe.models import ModelSpec, create_model
from tests._helpers import random_bank


class PlainCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.fc1 = nn.Linear(64, 32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return self.fc(torch.relu(self.fc1(x)))


def _models() -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    return {
        "resnet": (
            create_model(ModelSpec("resnet18", 10, 1, (16, 16), small_stem=True), seed=0),
            (1, 16, 16),
        ),
        "vit": (
            timm.create_model("test_vit", num_classes=10, in_chans=1, img_size=16, patch_size=4),
            (1, 16, 16),
        ),
        "convnext": (timm.create_model("test_convnext", num_classes=10, in_chans=1), (1, 32, 32)),
        "depthwise": (
            timm.create_model("mobilenetv3_small_050", num_classes=10, in_chans=1),
            (1, 32, 32),
        ),
        "plain": (PlainCNN(), (1, 8, 8)),
    }


@pytest.mark.parametrize("arch", ["resnet", "vit", "convnext", "depthwise", "plain"])
@pytest.mark.parametrize("forget", [[3], [1, 4, 7]])
def test_fold_equals_filtered(arch: str, forget: list[int]) -> None:
    torch.manual_seed(0)
    model, shape = _models()[arch]
    model.eval()
    digest_before = model_digest(model)
    bank = random_bank(model, seed=1)
    x = torch.randn(6, *shape)
    with torch.no_grad():
        base = model(x)
        live = filtered(model, bank, forget)(x)
        folded_model = fold(model, bank, forget)
        folded = folded_model(x)
    # The filter must actually change the output, or equality proves nothing.
    assert (live - base).abs().max() > 1e-3
    assert (live - folded).abs().max() <= 1e-5
    # Folding works on a copy: the original is untouched and no hooks are left anywhere.
    assert model_digest(model) == digest_before
    for m in [*model.modules(), *folded_model.modules()]:
        assert not m._forward_hooks
    assert type(folded_model) is type(model)
    assert [type(m) for m in folded_model.modules()] == [type(m) for m in model.modules()]


def test_fold_set_is_product_of_rows_in_sorted_order() -> None:
    model, _ = _models()["plain"]
    bank = random_bank(model, seed=2)
    s = bank.scales([7, 1, 4, 4])
    for name, a in bank.alpha.items():
        assert torch.equal(s[name], a[1] * a[4] * a[7])


def test_fold_refuses_non_finite_result() -> None:
    from lethe.errors import NonFiniteError
    from lethe.filters._apply import fold_scales

    model, _ = _models()["plain"]
    with torch.no_grad():
        model.c1.weight[0, 0, 0, 0] = float("inf")
    before = model_digest(model)
    with pytest.raises(NonFiniteError, match="c1"):
        fold_scales(model, {"c1": torch.full((8,), 0.5)}, {"c1": "conv2d"})
    assert model_digest(model) == before
