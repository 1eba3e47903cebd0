"""The install resolves a working torch + torchvision pair: timm imports and builds a model."""

from __future__ import annotations


def test_timm_imports_and_builds_a_model() -> None:
    import timm
    import torch
    import torchvision

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    out = model.eval()(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 3)
    # A CPU-only local torch build paired with the registry's torchvision fails to import.
    assert torch.__version__.split("+")[0].split(".")[:2] == ["2", "14"]
    assert torchvision.__version__.startswith("0.29")
