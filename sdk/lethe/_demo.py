"""``lethe demo``: the whole story on the embedded digits data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DemoConfig", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    arch: str = "resnet18"
    image_size: int = 32
    base_epochs: int = 10
    filter_epochs: int = 8
    seed: int = 0
    progress: bool = True


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Train a small timm classifier on digits, train its filter bank, measure every class."""
    from lethe.data import load_digits, stratified_split, to_dataset
    from lethe.filters import FilterBank, filtered, train
    from lethe.models import ModelSpec, create_model, fit, predict

    torch.manual_seed(cfg.seed)
    spec = ModelSpec(
        arch=cfg.arch, num_classes=10, in_chans=1, input_size=(cfg.image_size, cfg.image_size)
    )
    data = load_digits()
    train_arr, test_arr = stratified_split(data, test_fraction=0.25, seed=cfg.seed)
    pre = spec.preprocess
    train_ds, test_ds = to_dataset(train_arr, pre), to_dataset(test_arr, pre)

    t0 = time.perf_counter()
    model = create_model(spec, seed=cfg.seed)
    fit(
        model,
        train_ds,
        epochs=cfg.base_epochs,
        lr=2e-3,
        seed=cfg.seed,
        progress=cfg.progress,
        desc="base model",
    )
    t_base = time.perf_counter() - t0

    t0 = time.perf_counter()
    bank = FilterBank.init(model, 10, class_names=data.classes)
    bank = train(
        model, bank, train_ds, epochs=cfg.filter_epochs, seed=cfg.seed, progress=cfg.progress
    )
    t_filters = time.perf_counter() - t0

    x, y = test_ds.tensors
    base_pred = predict(model, x).argmax(1)
    rows = []
    for c in range(bank.num_classes):
        pred = predict(filtered(model, bank, [c]), x).argmax(1)
        own, rest = y == c, y != c
        rows.append(
            {
                "class": c,
                "name": bank.class_names[c],
                "n_test": int(own.sum()),
                "class_acc_before": float((base_pred[own] == c).double().mean()),
                "class_acc_after": float((pred[own] == c).double().mean()),
                "others_acc_before": float((base_pred[rest] == y[rest]).double().mean()),
                "others_acc_after": float((pred[rest] == y[rest]).double().mean()),
            }
        )
    return {
        "dataset": "digits",
        "model": spec.to_dict(),
        "base_accuracy": float((base_pred == y).double().mean()),
        "n_train": len(train_arr),
        "n_test": len(test_arr),
        "bank_digest": bank.digest,
        "filtered_layers": len(bank.targets),
        "seconds": {"base_training": round(t_base, 2), "filter_training": round(t_filters, 2)},
        "classes": rows,
    }
