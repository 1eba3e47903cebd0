"""Phase 2's fast path (lethe.filters._fastpath): the same training as the plain forward,
only cheaper; and it steps aside wherever its shortcuts would not hold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from lethe.filters import EraseConfig, erase
from lethe.filters._fastpath import fast_top
from lethe.models import ModelSpec, create_model, predict


def _toy(size: int, n: int = 96) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.arange(n) % 4
    x[:, 0, 0, 0] += y.float() * 3
    return TensorDataset(x, y)


def _resnet(size: int) -> nn.Module:
    return create_model(ModelSpec("resnet18", 4, 1, (size, size)), seed=0).eval()


def test_fast_and_plain_paths_train_the_same_model() -> None:
    """16x16 inputs put layer4 at 1x1: both of layer4.1's 3x3 convolutions are narrowed to
    their centre tap, and the modules below the cut are not recomputed; the erased model
    is the plain path's up to float rounding, for the default recipe (adversary included)."""
    model, data = _resnet(16), _toy(16)
    cfg = EraseConfig(epochs=2, batch_size=16, seed=3)
    fast, fast_report = erase(model, data, [1], config=cfg, device="cpu")
    plain, plain_report = erase(
        model, data, [1], config=EraseConfig(epochs=2, batch_size=16, seed=3, fast_path=False)
    )
    info = fast_report.extras["fast_path"]
    assert info["narrowed"] == ["layer4.1.conv1", "layer4.1.conv2"]
    assert info["skipped_below"] >= 5  # conv1, bn1, act1, maxpool, layer1-3, layer4.0
    assert plain_report.extras["fast_path"] is None
    assert list(fast.state_dict()) == list(plain.state_dict())
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values(), strict=True):
        assert a.shape == b.shape, name
        if a.is_floating_point():  # Adam magnifies rounding on single tiny gradients
            assert float((a - b).norm()) <= 1e-2 * float(b.norm()) + 1e-6, name
    x = data.tensors[0]
    assert torch.allclose(predict(fast, x), predict(plain, x), rtol=1e-3, atol=1e-3)
    assert fast_report.epoch_losses == pytest.approx(plain_report.epoch_losses, rel=1e-4)


def test_the_off_centre_taps_only_ever_meet_padding() -> None:
    """The claim the narrowing rests on: at a 1x1 input the plain gradient of a 3x3 kernel is
    zero off its centre, and its centre equals the narrowed tap's gradient."""
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(4, 8, 1, 1)
    F.conv2d(x, conv.weight, conv.bias, 1, 1).square().sum().backward()
    plain = conv.weight.grad
    assert plain is not None
    centre = conv.weight.detach()[:, :, 1:2, 1:2].clone().requires_grad_(True)
    F.conv2d(x, centre, conv.bias).square().sum().backward()
    assert centre.grad is not None
    off = plain.clone()
    off[:, :, 1, 1] = 0
    assert torch.count_nonzero(off) == 0
    assert torch.allclose(plain[:, :, 1:2, 1:2], centre.grad, atol=1e-6)


def test_bigger_inputs_keep_their_kernels() -> None:
    """64x64 inputs put layer4 at 2x2, where every tap meets data: nothing is narrowed, the
    part below the cut is still skipped, and the result matches the plain path."""
    model, data = _resnet(64), _toy(64, n=48)
    cfg = EraseConfig(method="retrain-top", epochs=1, batch_size=16)
    _, report = erase(model, data, [0], config=cfg, device="cpu")
    assert report.extras["fast_path"]["narrowed"] == []
    assert report.extras["fast_path"]["skipped_below"] >= 5


class _Circular(nn.Module):
    """A top conv with circular padding at 1x1 (every tap wraps onto the input) and a stem
    called twice (its output is not one fixed tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.stage = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 3, stride=8, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"), nn.ReLU()),
        )
        self.head = nn.Linear(4, 4)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.stem(x).mean(1, keepdim=True))
        out: torch.Tensor = self.head(self.stage(h).mean((2, 3)))
        return out


def test_shortcuts_that_would_not_hold_are_not_taken() -> None:
    torch.manual_seed(0)
    model, data = _Circular().eval(), _toy(8, n=32)
    cfg = EraseConfig(method="retrain-top", epochs=1, batch_size=16)
    erased, report = erase(model, data, [0], config=cfg, device="cpu")
    assert report.boundary == "stage.1"
    info = report.extras["fast_path"]
    assert info is None or (info["narrowed"] == [] and info["skipped_below"] <= 1)
    plain, _ = erase(
        model, data, [0], config=EraseConfig(method="retrain-top", epochs=1, batch_size=16,
                                             fast_path=False),
    )  # fmt: skip
    x = data.tensors[0]
    assert torch.allclose(predict(erased, x), predict(plain, x), rtol=1e-4, atol=1e-5)


def test_a_fast_path_that_disagrees_is_dropped() -> None:
    """The check before training: when the shortcut's logits differ from the plain
    forward's (here a probe whose answer changes between calls), nothing is patched."""
    model = _resnet(16)
    order = [n for n, _ in model.named_modules() if n]
    calls = {"n": 0}

    def probe() -> torch.Tensor:
        calls["n"] += 1
        out: torch.Tensor = model(torch.randn(2, 1, 16, 16)) * calls["n"]
        return out

    with fast_top(model, order, "layer4.1", ["layer4.1.conv1", "fc"], probe) as fast:
        assert fast is None
        assert "forward" not in model.layer4[1].conv1.__dict__
        assert "forward" not in model.conv1.__dict__
