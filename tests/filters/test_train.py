"""One-round filter training on real data (digits), determinism and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lethe import model_digest
from lethe.data import load_digits, stratified_split, to_dataset
from lethe.errors import ConfigError, TrainingError
from lethe.filters import FilterBank, TrainConfig, filtered, fold, train
from lethe.filters._train import sample_forget_sets
from lethe.models import ModelSpec, create_model, predict


def test_every_class_is_forgotten_and_the_rest_kept(digits) -> None:  # type: ignore[no-untyped-def]
    model, _, bank = digits.load()
    _, test = digits.data()
    x, y = to_dataset(test, ModelSpec(**_spec()).preprocess).tensors
    base = predict(model, x).argmax(1)
    for c in range(10):
        own, rest = y == c, y != c
        pred = predict(filtered(model, bank, [c]), x).argmax(1)
        forget_acc = float((pred[own] == c).double().mean())
        retain_acc = float((pred[rest] == y[rest]).double().mean())
        base_retain = float((base[rest] == y[rest]).double().mean())
        assert forget_acc <= 0.05, (c, forget_acc)
        assert retain_acc >= base_retain - 0.05, (c, retain_acc, base_retain)
    # Products of rows compose: a set of three classes is forgotten at once.
    pred = predict(fold(model, bank, [2, 5, 8]), x).argmax(1)
    gone = torch.isin(y, torch.tensor([2, 5, 8]))
    assert float((pred[gone] == y[gone]).double().mean()) <= 0.05
    assert (
        float((pred[~gone] == y[~gone]).double().mean())
        >= float((base[~gone] == y[~gone]).double().mean()) - 0.05
    )


def _spec() -> dict[str, object]:
    from tests.conftest import DIGITS_SPEC

    return dict(DIGITS_SPEC)


def _small_setup() -> tuple[torch.nn.Module, FilterBank, torch.utils.data.TensorDataset]:
    spec = ModelSpec("resnet18", 10, 1, (16, 16))
    model = create_model(spec, seed=0).eval()
    tr, _ = stratified_split(load_digits(), test_fraction=0.8, seed=0)
    return model, FilterBank.init(model, 10), to_dataset(tr, spec.preprocess)


def test_training_is_deterministic_and_leaves_the_model_untouched() -> None:
    model, bank, ds = _small_setup()
    before = model_digest(model)
    model.train()
    a = train(model, bank, ds, epochs=1, batch_size=64, seed=3, progress=False)
    b = train(model, bank, ds, epochs=1, batch_size=64, seed=3, progress=False)
    c = train(model, bank, ds, epochs=1, batch_size=64, seed=4, progress=False)
    assert a.digest == b.digest != c.digest
    assert a.digest != bank.digest
    assert model_digest(model) == before
    assert model.training  # mode restored
    assert all(p.requires_grad for p in model.parameters())
    assert a.train_config["seed"] == 3 and a.base_digest == bank.base_digest


def test_resume_after_a_crash_gives_the_same_bank(tmp_path: Path) -> None:
    model, bank, ds = _small_setup()
    full = train(model, bank, ds, epochs=2, batch_size=64, progress=False)

    class Crash(Exception):
        pass

    def crash(epoch: int, _stats: dict[str, float]) -> None:
        if epoch == 0:
            raise Crash

    ckpt = tmp_path / "train.ckpt"
    with pytest.raises(Crash):
        train(
            model,
            bank,
            ds,
            epochs=2,
            batch_size=64,
            progress=False,
            checkpoint=ckpt,
            on_epoch=crash,
        )
    assert ckpt.exists()
    epochs_seen: list[int] = []
    resumed = train(
        model,
        bank,
        ds,
        epochs=2,
        batch_size=64,
        progress=False,
        checkpoint=ckpt,
        on_epoch=lambda e, s: epochs_seen.append(e),
    )
    assert epochs_seen == [1]  # only the second epoch ran again
    assert resumed.digest == full.digest
    with pytest.raises(TrainingError, match="another training config"):
        train(model, bank, ds, epochs=3, batch_size=64, progress=False, checkpoint=ckpt)


def test_sets_contain_own_class_only_for_forget_samples() -> None:
    cfg = TrainConfig(max_set_size=5)
    y = torch.randint(0, 10, (512,), generator=torch.Generator().manual_seed(0))
    member, is_forget = sample_forget_sets(y, 10, cfg, torch.Generator().manual_seed(1))
    own = member[torch.arange(512), y]
    assert bool((own[is_forget] == 1).all()) and bool((own[~is_forget] == 0).all())
    sizes = member.sum(1)
    assert int(sizes.min()) == 1 and int(sizes.max()) == 5
    assert 0.35 < float(is_forget.double().mean()) < 0.65


def test_bad_config_and_data() -> None:
    model, bank, ds = _small_setup()
    with pytest.raises(ConfigError, match="unknown filter-training options"):
        train(model, bank, ds, epoch=2, progress=False)
    with pytest.raises(ConfigError, match="lr"):
        train(model, bank, ds, lr=-1.0, progress=False)
    with pytest.raises(TrainingError, match="empty"):
        train(
            model,
            bank,
            (torch.empty(0, 1, 16, 16), torch.empty(0, dtype=torch.long)),
            progress=False,
        )
    with pytest.raises(TrainingError, match="images but"):
        train(
            model,
            bank,
            (torch.zeros(4, 1, 16, 16), torch.zeros(3, dtype=torch.long)),
            progress=False,
        )


def test_divergence_is_an_error_and_leaves_no_checkpoint(tmp_path: Path) -> None:
    model, _, ds = _small_setup()
    # Overflowing logits make the loss non-finite from the first batch.
    with torch.no_grad():
        model.get_classifier().weight.fill_(3e38)
    bank = FilterBank.init(model, 10)
    ckpt = tmp_path / "train.ckpt"
    with pytest.raises(TrainingError, match="diverged"):
        train(model, bank, ds, epochs=2, batch_size=64, progress=False, checkpoint=ckpt)
    assert not ckpt.exists()
    assert all(p.requires_grad for p in model.parameters())  # model restored
