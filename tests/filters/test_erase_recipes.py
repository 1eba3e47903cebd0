"""Phase 2's other recipes (relearn-resistant, saliency) at toy size: deterministic for a seed,
same topology, what each one changes, and typed errors for what each one needs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lethe import model_digest
from lethe.errors import ConfigError, TrainingError
from lethe.filters import ERASE_METHODS, EraseConfig, erase


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 4)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.pool(self.features(x)))
        return out


def _data(n: int = 64) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=gen)
    y = torch.arange(n) % 4
    x[:, 0, 0, 0] += y.float() * 3
    return TensorDataset(x, y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return _CNN().eval()


def test_relearn_resistant_is_deterministic_and_adds_its_penalty() -> None:
    assert ERASE_METHODS == ("retrain-top", "relearn-resistant", "saliency")
    model, data = _model(), _data()
    for scope in ("all", "top"):
        cfg = EraseConfig(
            method="relearn-resistant", epochs=2, batch_size=16, adversary_scope=scope,
            adversary_data="forget", adversary_every=1,
        )  # fmt: skip
        a, rep = erase(model, data, [1], config=cfg, device="cpu")
        b, _ = erase(model, data, [1], config=cfg, device="cpu")
        assert model_digest(a) == model_digest(b)
        assert list(a.state_dict()) == list(model.state_dict())
        assert rep.method == "relearn-resistant" and len(rep.extras["epoch_penalties"]) == 2
        plain, _ = erase(
            model, data, [1], config=EraseConfig(method="retrain-top", epochs=2, batch_size=16)
        )
        assert model_digest(plain) != model_digest(a)  # the penalty changed the training
        # The simulated adversary's steps are undone: the part below the cut is untouched.
        below = "features.0.weight"
        assert torch.equal(a.state_dict()[below], model.state_dict()[below])


def test_relearn_resistant_with_retain_only_proxies() -> None:
    """The adversary's data made from retain samples only: works on a dataset without any
    forgotten-class sample, deterministic, each proxy kind trains a different model."""
    model, data = _model(), _data()
    retain_only = TensorDataset(*(t[data.tensors[1] != 1] for t in data.tensors))
    digests = set()
    for kind in ("retain", "lookalike", "invert"):
        cfg = EraseConfig(
            method="relearn-resistant", epochs=2, batch_size=16, adversary_data=kind,
            adversary_every=2,
        )  # fmt: skip
        a, rep = erase(model, retain_only, [1], config=cfg, device="cpu")
        b, _ = erase(model, retain_only, [1], config=cfg, device="cpu")
        assert model_digest(a) == model_digest(b)
        assert len(rep.extras["epoch_penalties"]) == 2
        assert rep.retain_samples == len(retain_only)
        digests.add(model_digest(a))
    head = EraseConfig(
        method="relearn-resistant", epochs=2, batch_size=16, adversary_data="lookalike",
        adversary_scope="head",
    )  # fmt: skip
    digests.add(model_digest(erase(model, retain_only, [1], config=head, device="cpu")[0]))
    plain, _ = erase(
        model, retain_only, [1], config=EraseConfig(method="retrain-top", epochs=2, batch_size=16)
    )
    digests.add(model_digest(plain))
    assert len(digests) == 5
    capped = EraseConfig(epochs=1, batch_size=16, retain_per_class=5)
    _, rep = erase(model, retain_only, [1], config=capped, device="cpu")
    assert rep.retain_samples == 15  # 5 of each of the three retain classes
    # Two forgotten classes share the proxies evenly.
    cfg = EraseConfig(method="relearn-resistant", epochs=1, adversary_data="lookalike")
    _, rep = erase(model, data, [1, 2], config=cfg, device="cpu")
    assert rep.extras["forget"] == [1, 2]


def test_saliency_redirects_low_scale_channels_below_the_cut_only() -> None:
    model, data = _model(), _data()
    scales = {"features.0": torch.tensor([0.01, 1.0, 1.0, 0.2, 1.0, 1.0, 1.0, 1.0])}
    cfg = EraseConfig(method="saliency", epochs=1, batch_size=16, saliency_threshold=0.5)
    with pytest.raises(ConfigError, match=r"scales=bank\.scales"):
        erase(model, data, [1], config=cfg)
    out, rep = erase(model, data, [1], config=cfg, scales=scales, device="cpu")
    assert rep.extras["saliency_channels"] == {"features.0": 2}
    w0, w1 = model.state_dict()["features.0.weight"], out.state_dict()["features.0.weight"]
    assert torch.equal(w0[[1, 2, 4]], w1[[1, 2, 4]])
    assert not torch.equal(w0[0], w1[0]) and not torch.equal(w0[3], w1[3])
    # A fresh direction at the masked magnitude: row norm scaled by s against a fresh row.
    assert float(w1[0].abs().max()) < float(w1[1].abs().max())


def test_recipe_options_and_missing_forget_data_are_typed_errors() -> None:
    with pytest.raises(ConfigError, match="adversary_scope"):
        EraseConfig(adversary_scope="layer1")
    with pytest.raises(ConfigError, match="adversary_steps"):
        EraseConfig(adversary_steps=-1)
    with pytest.raises(ConfigError, match="adversary_data must be one of"):
        EraseConfig(adversary_data="images")
    with pytest.raises(ConfigError, match="use adversary_scope='top'"):
        EraseConfig(adversary_data="retain", adversary_scope="all")
    with pytest.raises(ConfigError, match="retain_per_class"):
        EraseConfig(retain_per_class=0)
    with pytest.raises(ConfigError, match="invert_steps"):
        EraseConfig(invert_steps=-2)
    with pytest.raises(ConfigError, match="resist_weight"):
        EraseConfig(resist_weight=float("inf"))
    model, data = _model(), _data()
    retain_only = TensorDataset(*(t[data.tensors[1] != 1] for t in data.tensors))
    cfg = EraseConfig(method="relearn-resistant", epochs=1, adversary_data="forget")
    with pytest.raises(TrainingError, match="needs training samples of the forgotten"):
        erase(model, retain_only, [1], config=cfg)
