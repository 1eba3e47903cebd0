"""bench_unlearning's configuration: the setups (dataset + backbone + training recipe), the
presets (how much of the benchmark to run) and the data they load."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

__all__ = [
    "METHODS", "PER_CLASS_METHODS", "PRESETS", "SETUPS", "SET_SIZES", "Data", "Preset", "Recipe",
    "Setup", "SmallCNN", "forget_sets", "load_data", "sampled_singles",
]  # fmt: skip

METHODS = ("lethe", "lethe_erase", "retrain", "finetune", "neggrad_plus", "ssd", "head_mask")


PER_CLASS_METHODS = ("retrain", "finetune", "neggrad_plus", "ssd")


SET_SIZES = (2, 3, 5)


class SmallCNN(nn.Module):
    """The small plain CNN of the MNIST setup (three conv blocks, a hidden linear, a head)."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def block(i: int, o: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
            return [*layers, nn.MaxPool2d(2)] if pool else layers

        w = width
        self.features = nn.Sequential(
            *block(in_chans, w, True), *block(w, 2 * w, True), *block(2 * w, 4 * w, False)
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU())
        self.head = nn.Linear(4 * w, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.fc(self.pool(self.features(x))))
        return out


@dataclass(frozen=True)
class Recipe:
    """How a setup's base model is built and trained, and the baselines' budgets."""

    epochs: int
    lr: float
    batch_size: int = 128
    augment_flip: bool = False
    augment_pad: int = 0
    filter_epochs: int = 8
    filter_options: Mapping[str, Any] = field(default_factory=dict)
    # Phase 2 (lethe.filters.EraseConfig options) of the "lethe_erase" method.
    erase_options: Mapping[str, Any] = field(default_factory=dict)
    finetune_epochs: int = 2
    finetune_lr: float = 1e-3
    # NegGrad+ and SSD settings were tuned on mnist_cnn's quick-preset classes (docs say so).
    neggrad_epochs: int = 1
    neggrad_lr: float = 1e-3
    neggrad_alpha: float = 0.95
    neggrad_cap: float | None = 5.0
    ssd_selection: float = 200.0
    ssd_dampening: float = 1.0
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    width: int = 32  # SmallCNN only

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["filter_options"] = dict(self.filter_options)
        d["erase_options"] = dict(self.erase_options)
        d["arch_kwargs"] = dict(self.arch_kwargs)
        return d

    def fit_options(self) -> dict[str, Any]:
        """:func:`lethe.models.fit` options of the base model (and of retraining)."""
        return {
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "augment_flip": self.augment_flip,
            "augment_pad": self.augment_pad,
        }

    def base_key(self) -> dict[str, Any]:
        """The fields that decide the base model (its cache key ignores the baselines')."""
        d = self.to_dict()
        keep = ("epochs", "lr", "batch_size", "augment_flip", "augment_pad", "arch_kwargs", "width")
        return {k: d[k] for k in keep}


@dataclass(frozen=True)
class Setup:
    """A dataset and a backbone (``cnn``: :class:`SmallCNN`; otherwise a timm architecture)."""

    dataset: str
    backbone: str
    recipe: Recipe
    small_stem: bool = True  # ResNets: a 3x3 stride-1 stem for small inputs (False: timm's)

    def make(self, in_chans: int, size: tuple[int, int], num_classes: int) -> nn.Module:
        if self.backbone == "cnn":
            return SmallCNN(in_chans, num_classes, width=self.recipe.width)
        from lethe.models import create_model

        return create_model(self.spec(in_chans, size, num_classes))

    def spec(self, in_chans: int, size: tuple[int, int], num_classes: int) -> Any:
        from lethe.models import ModelSpec

        return ModelSpec(
            self.backbone,
            num_classes,
            in_chans=in_chans,
            input_size=size,
            small_stem=self.small_stem and self.backbone.startswith("resnet"),
            kwargs=dict(self.recipe.arch_kwargs),
        )


_VIT = {"patch_size": 4, "depth": 6}


SETUPS: dict[str, Setup] = {
    # The small CNN has few channels to filter; a stronger forget term helps it (measured:
    # worst single-class forget accuracy 66 % -> 20 % on the quick preset).
    "mnist_cnn": Setup(
        "mnist", "cnn", Recipe(epochs=4, lr=2e-3, filter_options={"forget_weight": 2.0})
    ),
    "mnist_resnet18": Setup("mnist", "resnet18", Recipe(epochs=4, lr=2e-3)),
    # timm's own stem (layer4 at 1x1 on 28x28, ~10x cheaper than the small stem): the MNIST
    # model of the erase lab (bench_erase --setup mnist_timm) and of the erase preset.
    # NegGrad+ at its default lr 1e-3 diverged on it (NaN logits, forget [4]): 1e-4.
    "mnist_timm_resnet18": Setup(
        "mnist",
        "resnet18",
        Recipe(epochs=8, lr=2e-3, filter_epochs=6, neggrad_lr=1e-4),
        small_stem=False,
    ),
    "mnist_vit": Setup(
        "mnist",
        "vit_tiny_patch16_224",
        Recipe(epochs=15, lr=1e-3, arch_kwargs=_VIT, finetune_lr=3e-4, neggrad_lr=3e-4),
    ),
    "fashion_mnist_resnet18": Setup("fashion-mnist", "resnet18", Recipe(epochs=6, lr=2e-3)),
    "cifar10_resnet18": Setup(
        "cifar10",
        "resnet18",
        Recipe(epochs=30, lr=2e-3, augment_flip=True, augment_pad=4, finetune_epochs=3),
    ),
    "cifar10_vit": Setup(
        "cifar10",
        "vit_tiny_patch16_224",
        Recipe(
            epochs=60,
            lr=1e-3,
            augment_flip=True,
            augment_pad=4,
            arch_kwargs=_VIT,
            finetune_epochs=3,
            finetune_lr=3e-4,
            neggrad_lr=3e-4,
        ),
    ),
}


# The setups of the full and gpu presets (the erase lab's timm-stem MNIST model is the erase
# preset's own).
_MAIN_SETUPS = tuple(k for k in SETUPS if k != "mnist_timm_resnet18")


@dataclass(frozen=True)
class Preset:
    """How much of the benchmark to run.

    ``train_per_class`` / ``test_per_class``: seeded per-class subsample (``None``: all);
    ``per_class_by_dataset`` overrides the pair per dataset.
    ``singles``: how many single classes the comparison samples (``None``: all);
    ``singles_by_dataset`` overrides it per dataset.
    ``recipes``: per-setup overrides of :class:`Recipe` fields (smaller budgets for quick runs).
    """

    setups: tuple[str, ...]
    methods: tuple[str, ...] = METHODS
    train_per_class: int | None = None
    test_per_class: int | None = None
    per_class_by_dataset: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    singles: int | None = None
    singles_by_dataset: Mapping[str, int] = field(default_factory=dict)
    sets_per_size: int = 1
    lethe_sets_per_size: int = 10
    relearn_steps: int = 100
    relearn_seeds: int = 3
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int = 0
    # (k, n): this run compares only the forget sets k, k + n, k + 2n, ... of the preset's list
    # (parallel runs on one GPU; ``--render`` joins the shards of a setup).
    shard: tuple[int, int] = (0, 1)

    def recipe(self, name: str) -> Recipe:
        return replace(SETUPS[name].recipe, **dict(self.recipes.get(name, {})))

    def per_class(self, dataset: str) -> tuple[int | None, int | None]:
        """(train, test) images per class for ``dataset`` (``None``: all)."""
        default = (self.train_per_class, self.test_per_class)
        return self.per_class_by_dataset.get(dataset, default)


# The CPU-sized MNIST ResNet-18 of the filters and compare presets: one definition, so that
# compare reuses the base model and bank filters cached.
_CPU_MNIST = Preset(setups=(), train_per_class=300, test_per_class=100, lethe_sets_per_size=5)


_CPU_RESNET18 = {"epochs": 3, "filter_epochs": 6}


PRESETS: dict[str, Preset] = {
    # The whole comparison on the plain CNN, in minutes on 2 CPU cores.
    "quick": Preset(
        setups=("mnist_cnn",),
        train_per_class=500,
        test_per_class=200,
        singles=3,
        sets_per_size=1,
        recipes={"mnist_cnn": {"epochs": 4, "filter_epochs": 8}},
    ),
    # Issue 2's benchmark: Lethe alone on MNIST with a ResNet-18 and a small ViT.
    "filters": replace(
        _CPU_MNIST,
        setups=("mnist_resnet18", "mnist_vit"),
        methods=("lethe",),
        singles=0,
        recipes={
            "mnist_resnet18": _CPU_RESNET18,
            # Patch 7 (16 tokens): a ViT from scratch on 3,000 images needs many epochs, and
            # patch 4 (49 tokens) reached only 60 % in 20 epochs on 2 CPU cores.
            "mnist_vit": {
                "epochs": 40,
                "filter_epochs": 6,
                "arch_kwargs": {"patch_size": 7, "depth": 6},
            },
        },
    ),
    # The comparison on the filters preset's ResNet-18 (same cached base model and bank), and
    # the same recipe on Fashion-MNIST, two single classes each: what 2 CPU cores can afford
    # (~30 min a setup); the gpu and full presets do more.
    "compare": replace(
        _CPU_MNIST,
        setups=("mnist_resnet18", "fashion_mnist_resnet18"),
        singles=2,
        sets_per_size=0,
        recipes={"mnist_resnet18": _CPU_RESNET18, "fashion_mnist_resnet18": _CPU_RESNET18},
    ),
    # Phase 2 (issue 13) beside every method on the erase lab's MNIST ResNet-18 (timm stem,
    # 300 / 100 images per class): two single classes and one set of each size (CPU).
    "erase": replace(
        _CPU_MNIST,
        setups=("mnist_timm_resnet18",),
        singles=2,
        sets_per_size=1,
    ),
    # Phase 2 on a lent GPU: ResNet-18 on MNIST and the CIFAR-10 subsample, where the probe
    # discriminates, plus the weak models (CNN, ViT; the ViT erases two blocks, as
    # docs/workflow.md advises); every method (benchmarks/gpu.sh erase runs it in shards).
    "gpu-erase": Preset(
        setups=("cifar10_resnet18", "mnist_resnet18", "mnist_cnn", "mnist_vit"),
        # MNIST at half its train set: the device tool carries 64 MiB a call, data included.
        per_class_by_dataset={"cifar10": (1800, 500), "mnist": (3000, None)},
        singles=3,
        sets_per_size=1,
        lethe_sets_per_size=5,
        # (blocks=2 is EraseConfig's default on a ViT since the sixth lab round; kept explicit.)
        recipes={"mnist_vit": {"erase_options": {"blocks": 2}}},
    ),
    # The complete tables: every backbone on MNIST, Fashion-MNIST and CIFAR-10 (hours; meant for
    # a GPU). CIFAR-10 single classes are a seeded sample, as the issue allows.
    "full": Preset(
        setups=_MAIN_SETUPS,
        singles=None,
        singles_by_dataset={"cifar10": 5},
        sets_per_size=3,
        lethe_sets_per_size=20,
    ),
    # Sized for one lent GPU (an H200) under the device tool's limits: 10-minute calls and 64 MiB
    # of data per call. MNIST and Fashion-MNIST are whole; CIFAR-10 is a seeded subsample (the
    # whole set is 134 MB). benchmarks/README.md has the command lines (ViTs: Lethe alone).
    "gpu": Preset(
        setups=_MAIN_SETUPS,
        per_class_by_dataset={"cifar10": (1800, 500)},
        singles=3,
        sets_per_size=1,
        lethe_sets_per_size=10,
    ),
    # The test suite's size: every code path, a few batches.
    "toy": Preset(
        setups=("mnist_cnn", "mnist_vit"),
        train_per_class=12,
        test_per_class=10,
        singles=1,
        sets_per_size=1,
        lethe_sets_per_size=1,
        relearn_steps=2,
        recipes={
            "mnist_cnn": {"epochs": 2, "filter_epochs": 1, "width": 8, "finetune_epochs": 1},
            "mnist_vit": {
                "epochs": 1,
                "filter_epochs": 1,
                "finetune_epochs": 1,
                "arch_kwargs": {"patch_size": 7, "depth": 1, "embed_dim": 32, "num_heads": 2},
            },
        },
    ),
}


@dataclass
class Data:
    train: TensorDataset
    test: TensorDataset
    train_set: Any  # lethe_audit.metrics.ImageSet
    test_set: Any
    classes: tuple[str, ...]
    in_chans: int
    size: tuple[int, int]
    digests: dict[str, str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _per_class(arrays: Any, n: int | None, seed: int) -> Any:
    if n is None:
        return arrays
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(arrays.y == c))[:n] for c in range(arrays.num_classes)]
    return arrays.subset(np.sort(np.concatenate(idx)))


def load_data(dataset: str, preset: Preset) -> Data:
    """The dataset's train/test splits, subsampled per class, preprocessed to tensors."""
    from lethe.data import Preprocess, load_dataset
    from lethe_audit.metrics import ImageSet

    n_train, n_test = preset.per_class(dataset)
    train = _per_class(load_dataset(dataset, split="train"), n_train, preset.seed)
    test = _per_class(load_dataset(dataset, split="test"), n_test, preset.seed + 1)
    c = train.channels
    pre = Preprocess((c, *train.image_size), (0.5,) * c, (0.5,) * c)
    tr, te = pre(train.x), pre(test.x)
    ytr, yte = torch.from_numpy(train.y), torch.from_numpy(test.y)
    k = train.num_classes
    return Data(
        train=TensorDataset(tr, ytr),
        test=TensorDataset(te, yte),
        train_set=ImageSet(tr.numpy(), train.y, k),
        test_set=ImageSet(te.numpy(), test.y, k),
        classes=train.classes,
        in_chans=c,
        size=train.image_size,
        digests={"train": train.digest, "test": test.digest},
    )


def forget_sets(k: int, preset: Preset, per_size: int, *, salt: int) -> list[list[int]]:
    """Seeded random class sets of each size in :data:`SET_SIZES` (distinct within a size)."""
    rng = np.random.default_rng([preset.seed, salt])
    out: list[list[int]] = []
    for size in SET_SIZES:
        if size >= k:
            continue
        seen: set[tuple[int, ...]] = set()
        while len(seen) < min(per_size, math.comb(k, size)):
            s = tuple(sorted(int(c) for c in rng.choice(k, size, replace=False)))
            seen.add(s)
        out += [list(s) for s in sorted(seen)]
    return out


def sampled_singles(k: int, preset: Preset, dataset: str) -> list[int]:
    """The single classes the comparison runs on: all, or a seeded sample."""
    n = preset.singles_by_dataset.get(dataset, preset.singles)
    if n is None or n >= k:
        return list(range(k))
    rng = np.random.default_rng([preset.seed, 1])
    return sorted(int(c) for c in rng.choice(k, n, replace=False))
