"""Target selection: defaults, peft-style selectors, and refusals before mutation."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from lethe import model_digest
from lethe.errors import TargetSelectionError
from lethe.filters import FilterBank, TargetSpec, select_targets, train


def _resnet() -> nn.Module:
    return timm.create_model("resnet18", num_classes=10, in_chans=1)


def test_default_targets_exclude_the_head_and_keep_every_conv_and_linear() -> None:
    model = _resnet()
    names = [t.name for t in select_targets(model)]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert names == convs  # resnet18: all convs (incl. downsample), no linear besides the head
    assert "fc" not in names


def test_depthwise_and_grouped_convs_are_targets() -> None:
    model = timm.create_model("mobilenetv3_small_050", num_classes=10)
    targets = {t.name: t for t in select_targets(model)}
    dw = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dw and all(n in targets for n in dw)
    assert "classifier" not in targets


def test_vit_head_excluded_linear_layers_included() -> None:
    model = timm.create_model("test_vit", num_classes=10, img_size=16, patch_size=4)
    names = [t.name for t in select_targets(model)]
    assert "head" not in names
    assert "patch_embed.proj" in names
    assert any(n.endswith("attn.qkv") for n in names)
    kinds = {t.name: t.kind for t in select_targets(model)}
    assert kinds["patch_embed.proj"] == "conv2d" and kinds["blocks.0.mlp.fc1"] == "linear"


def test_suffix_regex_and_exclude() -> None:
    model = _resnet()
    only = [t.name for t in select_targets(model, TargetSpec(suffixes=["conv2"]))]
    assert only and all(n.endswith(".conv2") for n in only)
    rx = [t.name for t in select_targets(model, TargetSpec(regex=r"^layer4\."))]
    assert rx and all(n.startswith("layer4.") for n in rx)
    ex = [t.name for t in select_targets(model, TargetSpec(exclude=["conv1", "downsample.0"]))]
    assert not any(n.endswith("conv1") or n.endswith("downsample.0") for n in ex)
    with_head = [t.name for t in select_targets(model, TargetSpec(include_head=True))]
    assert "fc" in with_head


def test_bad_selections_raise() -> None:
    model = _resnet()
    with pytest.raises(TargetSelectionError, match="matches no module"):
        select_targets(model, TargetSpec(suffixes=["nope"]))
    with pytest.raises(TargetSelectionError, match="no Conv2d or Linear"):
        select_targets(model, TargetSpec(regex="^zzz"))
    with pytest.raises(TargetSelectionError, match="invalid target regex"):
        TargetSpec(regex="(")
    with pytest.raises(TargetSelectionError, match="list of names"):
        TargetSpec(suffixes="conv1")  # type: ignore[arg-type]


def test_model_without_conv_or_linear_is_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(TargetSelectionError, match="no Conv2d or Linear"):
        FilterBank.init(model, 10)


def test_weight_standardised_conv_is_refused_untouched() -> None:
    model = timm.create_model("resnetv2_50x1_bit", num_classes=10)  # StdConv2d everywhere
    before = model_digest(model)
    with pytest.raises(TargetSelectionError, match="StdConv2d"):
        select_targets(model)
    assert model_digest(model) == before
    for m in model.modules():
        assert not m._forward_hooks


class _WithMHA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.unused = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        h, _ = self.attn(h, h, h)
        return self.fc(h.mean(1))


def test_functionally_used_linear_is_skipped_by_default_and_refused_explicitly() -> None:
    model = _WithMHA()
    names = [t.name for t in select_targets(model)]
    assert "attn.out_proj" not in names
    with pytest.raises(TargetSelectionError, match=r"torch\.nn\.functional"):
        select_targets(model, TargetSpec(suffixes=["out_proj"]))


def test_layer_never_called_is_reported_at_training() -> None:
    model = _WithMHA()
    bank = FilterBank.init(model, 3)
    data = (torch.randn(8, 5, 4), torch.randint(0, 3, (8,)))
    with pytest.raises(TargetSelectionError, match="unused"):
        train(model, bank, data, epochs=1, batch_size=8, progress=False)
    for m in model.modules():
        assert not m._forward_hooks
    assert all(p.requires_grad for p in model.parameters())
