"""The forget-loss options of filter training (issue 13, weak models): each trains a bank that
forgets on real data, the default is the capped-mean loss, bad names are typed errors."""

from __future__ import annotations

import pytest
import torch

from lethe.data import to_dataset
from lethe.errors import ConfigError
from lethe.filters import FORGET_LOSSES, FilterBank, TrainConfig, fold, train
from lethe.filters._train import sample_forget_sets
from lethe.models import ModelSpec, create_model, predict


def _accuracies(model, bank, x, y, forget):  # type: ignore[no-untyped-def]
    pred = predict(fold(model, bank, forget), x).argmax(1)
    gone = torch.isin(y, torch.tensor(forget))
    return (
        float((pred[gone] == y[gone]).double().mean()),
        float((pred[~gone] == y[~gone]).double().mean()),
    )


@pytest.mark.parametrize("loss", ["margin", "per-sample-inverse"])
def test_each_new_forget_loss_trains_a_bank_that_forgets(digits, loss: str) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import DIGITS_SPEC

    model, _, _ = digits.load()
    train_split, test_split = digits.data()
    pre = ModelSpec(**DIGITS_SPEC).preprocess  # type: ignore[arg-type]
    train_ds = to_dataset(train_split, pre)
    x, y = to_dataset(test_split, pre).tensors
    base = predict(model, x).argmax(1)
    bank = train(
        model, FilterBank.init(model, 10), train_ds, epochs=4, seed=0, progress=False,
        forget_loss=loss,
    )  # fmt: skip
    assert bank.train_config["forget_loss"] == loss
    for forget in ([3], [7], [2, 5], [0, 2, 4, 6, 8]):
        f_acc, r_acc = _accuracies(model, bank, x, y, forget)
        rest = ~torch.isin(y, torch.tensor(forget))
        base_retain = float((base[rest] == y[rest]).double().mean())
        assert f_acc <= 0.05, (loss, forget, f_acc)
        assert r_acc >= base_retain - 0.05, (loss, forget, r_acc, base_retain)


def test_unknown_forget_loss_is_a_config_error_naming_the_choices() -> None:
    model = create_model(ModelSpec("resnet18", 10, 1, (16, 16)), seed=0).eval()
    bank = FilterBank.init(model, 10)
    with pytest.raises(ConfigError, match="forget_loss must be one of capped-mean, per-sample"):
        train(model, bank, (torch.zeros(4, 1, 16, 16), torch.zeros(4)), forget_loss="hinge")
    with pytest.raises(ConfigError, match="'hinge'"):
        TrainConfig.from_mapping({"forget_loss": "hinge"})
    with pytest.raises(ConfigError, match="forget_margin must be a positive number"):
        TrainConfig(forget_loss="margin", forget_margin=0.0)
    with pytest.raises(ConfigError, match="retain_set_weight must be a non-negative"):
        TrainConfig(retain_set_weight=-1.0)
    with pytest.raises(ConfigError, match="set_size_power must be finite"):
        TrainConfig(set_size_power=float("nan"))
    assert TrainConfig().forget_loss == FORGET_LOSSES[0] == "capped-mean"


def test_set_size_power_draws_larger_sets_and_zero_keeps_the_uniform_draw() -> None:
    y = torch.randint(0, 10, (4096,), generator=torch.Generator().manual_seed(0))

    def sizes(**kw: float) -> torch.Tensor:
        member, _ = sample_forget_sets(y, 10, TrainConfig(**kw), torch.Generator().manual_seed(1))
        return member.sum(1)

    uniform, big = sizes(), sizes(set_size_power=2.0)
    # P(k) ∝ k²: k = 5 is 25/55 of the draws, k = 1 only 1/55; uniform gives 1/5 each.
    assert 0.40 < float((big == 5).double().mean()) < 0.51
    assert float((big == 1).double().mean()) < 0.04
    assert 0.17 < float((uniform == 5).double().mean()) < 0.23
    # The default draw is the one earlier releases made (banks stay reproducible).
    k = torch.randint(1, 6, (4096,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(uniform, k.to(uniform.dtype))


def test_margin_and_set_weights_are_deterministic_per_seed(digits) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import DIGITS_SPEC

    model, _, _ = digits.load()
    train_split, _ = digits.data()
    ds = to_dataset(train_split, ModelSpec(**DIGITS_SPEC).preprocess)  # type: ignore[arg-type]
    sub = (ds.tensors[0][:256], ds.tensors[1][:256])
    opts = {"epochs": 1, "batch_size": 64, "progress": False, "forget_loss": "margin",
            "retain_set_weight": 1.0, "set_size_power": 1.0}  # fmt: skip
    a = train(model, FilterBank.init(model, 10), sub, seed=1, **opts)
    b = train(model, FilterBank.init(model, 10), sub, seed=1, **opts)
    c = train(model, FilterBank.init(model, 10), sub, seed=1, **{**opts, "forget_margin": 3.0})
    assert a.digest == b.digest != c.digest
