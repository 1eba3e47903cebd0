"""Weight filtering against the baselines a user would pick instead, on real data (issues 2, 8).

One command trains (or loads from the cache) a base model per setup, learns Lethe's filter bank
in one round, runs every baseline on the same base model and data, measures every DESIGN §4
metric and the cost of each method, and writes JSON, PNG plots and a section of
``docs/benchmarks.md``:

    python -m benchmarks.bench_unlearning --preset quick     # minutes on 2 CPU cores
    python -m benchmarks.bench_unlearning --preset filters   # Lethe on MNIST ResNet-18 + ViT
    python -m benchmarks.bench_unlearning --preset full      # everything (CUDA when present)

Two kinds of evaluation per setup:

- *coverage* (Lethe only, it is cheap): every single class and ``lethe_sets_per_size`` seeded
  random sets of 2, 3 and 5 classes, forget / retain accuracy against the base model (the
  DESIGN §9 unlearning targets);
- *comparison* (every method): a seeded sample of single classes and of class sets, with all
  §4 metrics (accuracies, ZRF, MIA efficacy, feature-probe AUC, relearn time) and the gaps to
  the model retrained without the classes (the gold standard).

Cost: Lethe's one training round covers every class; a per-class method's cost to be able to
forget *any* class is its mean measured time per class times the number of classes.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import TensorDataset

from benchmarks import _baselines as B
from benchmarks._common import CACHE, DOCS, REPO_ROOT, RESULTS_DIR, machine, update_docs

__all__ = ["PRESETS", "SETUPS", "Preset", "Setup", "main", "run"]

METHODS = ("lethe", "lethe_erase", "retrain", "finetune", "neggrad_plus", "ssd", "head_mask")
PER_CLASS_METHODS = ("retrain", "finetune", "neggrad_plus", "ssd")
SET_SIZES = (2, 3, 5)
FIGURES = REPO_ROOT / "docs" / "figures"


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
            small_stem=self.backbone.startswith("resnet"),
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
    # Phase 2 (issue 13) beside every method on the compare preset's MNIST ResNet-18 (same
    # cached base model and bank): two single classes and one set of each size (CPU, ~30 min).
    "erase": replace(
        _CPU_MNIST,
        setups=("mnist_resnet18",),
        singles=2,
        sets_per_size=1,
        recipes={"mnist_resnet18": _CPU_RESNET18},
    ),
    # Phase 2 on a lent GPU (not run yet): ResNet-18 on MNIST and the CIFAR-10 subsample,
    # where the probe discriminates, plus the weak models (CNN, ViT); every method.
    "gpu-erase": Preset(
        setups=("cifar10_resnet18", "mnist_resnet18", "mnist_cnn", "mnist_vit"),
        per_class_by_dataset={"cifar10": (1800, 500)},
        singles=3,
        sets_per_size=1,
        lethe_sets_per_size=5,
    ),
    # The complete tables: every backbone on MNIST, Fashion-MNIST and CIFAR-10 (hours; meant for
    # a GPU). CIFAR-10 single classes are a seeded sample, as the issue allows.
    "full": Preset(
        setups=tuple(SETUPS),
        singles=None,
        singles_by_dataset={"cifar10": 5},
        sets_per_size=3,
        lethe_sets_per_size=20,
    ),
    # Sized for one lent GPU (an H200) under the device tool's limits: 10-minute calls and 64 MiB
    # of data per call. MNIST and Fashion-MNIST are whole; CIFAR-10 is a seeded subsample (the
    # whole set is 134 MB). benchmarks/README.md has the command lines (ViTs: Lethe alone).
    "gpu": Preset(
        setups=tuple(SETUPS),
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


# --------------------------------------------------------------------------------------- data
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


# ------------------------------------------------------------------------------ model caching
def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def base_model(
    name: str, recipe: Recipe, data: Data, *, seed: int, cache: Path, progress: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """The setup's base model, trained with its recipe or loaded from the cache (by digest)."""
    from safetensors.torch import load_file, save_file

    from lethe import model_digest
    from lethe.models import fit

    setup = SETUPS[name]
    key = _key({"setup": name, "recipe": recipe.base_key(), "data": data.digests, "seed": seed})
    path = cache / f"{name}-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    torch.manual_seed(seed)
    model = setup.make(data.in_chans, data.size, data.num_classes).to(_device())
    if path.exists() and meta_path.exists():
        model.load_state_dict(load_file(str(path), device=str(_device())))
        info = json.loads(meta_path.read_text())
        info["cached"] = True
    else:
        t = time.perf_counter()
        fit(
            model, data.train, seed=seed, progress=progress, desc=f"{name} base",
            **recipe.fit_options(),
        )  # fmt: skip
        info = {"train_seconds": time.perf_counter() - t, "cache_key": key, "cached": False}
        cache.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path))
        meta_path.write_text(json.dumps(info, indent=1))
    model.eval()
    info["digest"] = model_digest(model)
    return model, info


# ------------------------------------------------------------------------------- evaluation
class _Memo:
    """A metrics backend that remembers its outputs, for models evaluated again and again
    (the base model and its random re-initialisation appear in every evaluation)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cache: dict[tuple[str, str], Any] = {}

    @property
    def kind(self) -> str:
        return str(self._inner.kind)

    def _memo(self, what: str, key_data: bytes, fn: Callable[[], Any]) -> Any:
        key = (what, hashlib.sha1(key_data).hexdigest())
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def logits(self, images: npt.NDArray[np.float32], *, progress: bool = False) -> Any:
        return self._memo("logits", images.tobytes(), lambda: self._inner.logits(images))

    def features(self, images: npt.NDArray[np.float32], *, progress: bool = False) -> Any:
        return self._memo("features", images.tobytes(), lambda: self._inner.features(images))

    def random_init(self, *, seed: int) -> tuple[Any, str]:
        def build() -> tuple[Any, str]:
            backend, how = self._inner.random_init(seed=seed)
            return _Memo(backend), how

        result: tuple[Any, str] = self._memo("random", str(seed).encode(), build)
        return result

    def relearn(self, train_images: Any, train_labels: Any, *args: Any, **kw: Any) -> Any:
        key = train_images.tobytes() + train_labels.tobytes() + repr(kw).encode()
        return self._memo(
            "relearn", key, lambda: self._inner.relearn(train_images, train_labels, *args, **kw)
        )


def _summary(result: Any, seconds: float | None) -> dict[str, Any]:
    """The numbers the tables use, from one :class:`MetricsResult`."""
    acc = result.accuracy
    counts = np.asarray(acc.class_counts, dtype=np.float64)
    per = np.asarray([np.nan if v is None else v for v in acc.per_class], dtype=np.float64)
    ok = counts > 0
    row: dict[str, Any] = {
        "forget": list(result.forget_classes),
        "forget_acc": acc.forget_accuracy,
        "retain_acc": acc.retain_accuracy,
        "test_acc": float((per[ok] * counts[ok]).sum() / counts[ok].sum()),
        "retain_drop": None if acc.retain_delta is None else -acc.retain_delta,
        "per_class": list(acc.per_class),
        "zrf": None if result.zrf is None else result.zrf.zrf,
        "mia": None if result.mia is None else result.mia.efficacy,
        "mia_base": None if result.mia is None else result.mia.base_efficacy,
        "probe_auc": None if result.probe is None else result.probe.auc,
        "probe_auc_base": None if result.probe is None else result.probe.base_auc,
        "relearn_steps": None,
        "relearn_reached": None,
        "seconds": seconds,
    }
    if result.relearn is not None:
        row["relearn_steps"] = result.relearn.model.steps
        row["relearn_runs"] = [run.steps for run in result.relearn.model_runs]
        row["relearn_reached"] = result.relearn.model.reached
    return row


def _evaluate(
    model: nn.Module, forget: Sequence[int], data: Data, base: _Memo, preset: Preset
) -> Any:
    from lethe.metrics import TorchBackend
    from lethe_audit.metrics import RelearnConfig, evaluate

    return evaluate(
        TorchBackend(model),
        data.test_set,
        forget=forget,
        base=base,
        train_set=data.train_set,
        relearn=RelearnConfig(max_steps=preset.relearn_steps, seeds=preset.relearn_seeds),
        seed=preset.seed,
        progress=False,
    )


@torch.no_grad()
def _predictions(model: nn.Module, x: torch.Tensor, batch: int = 512) -> npt.NDArray[np.int64]:
    from lethe.models import predict

    return predict(model, x, batch_size=batch).argmax(1).numpy()


def _accuracy_pair(
    pred: npt.NDArray[np.int64], y: npt.NDArray[np.int64], forget: Sequence[int]
) -> tuple[float, float]:
    mask = np.isin(y, list(forget))
    return float((pred[mask] == y[mask]).mean()), float((pred[~mask] == y[~mask]).mean())


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


# ---------------------------------------------------------------------------------- methods
def train_lethe(
    name: str,
    model: nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    base_digest: str,
    seed: int,
    cache: Path,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """One filter-training round for every class (cached with its measured timings), and the
    time of a plain fine-tuning epoch of the same model on the same data, for the ratio."""
    from lethe.filters import FilterBank, train
    from lethe.models import fit

    options = {"epochs": recipe.filter_epochs, "seed": seed, **dict(recipe.filter_options)}
    key = _key({"base": base_digest, "options": options, "data": data.digests["train"]})
    path = cache / f"{name}-bank-{key}.safetensors"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        bank = FilterBank.load(path, model=model)
        info = json.loads(info_path.read_text())
        info["cached"] = True
        return bank, info

    def finetune_epoch() -> float:
        clone = copy.deepcopy(model)
        t = time.perf_counter()
        fit(clone, data.train, epochs=1, lr=1e-4, batch_size=options.get("batch_size", 128),
            seed=seed, progress=False)  # fmt: skip
        return time.perf_counter() - t

    ft_before = finetune_epoch()
    marks = [time.perf_counter()]
    bank = train(
        model,
        FilterBank.init(model, data.num_classes),
        data.train,
        progress=progress,
        on_epoch=lambda _e, _s: marks.append(time.perf_counter()),
        **options,
    )
    ft_after = finetune_epoch()
    epochs = [b - a for a, b in itertools.pairwise(marks)]
    info = {
        "options": options,
        "round_seconds": marks[-1] - marks[0],
        "epoch_seconds": epochs,
        "finetune_epoch_seconds": [ft_before, ft_after],
        "epoch_ratio": statistics.median(epochs) / statistics.mean([ft_before, ft_after]),
        "cached": False,
    }
    cache.mkdir(parents=True, exist_ok=True)
    bank.save(path)
    info_path.write_text(json.dumps(info, indent=1))
    return bank, info


def run_method(
    method: str,
    forget: Sequence[int],
    *,
    name: str,
    model: nn.Module,
    bank: Any,
    data: Data,
    recipe: Recipe,
    seed: int,
) -> tuple[nn.Module, float]:
    """The unlearned model for one method and forget set, and the seconds it took."""
    from lethe.filters import fold

    setup = SETUPS[name]
    t = time.perf_counter()
    out: nn.Module
    if method == "lethe":
        out = fold(model, bank, forget)
    elif method == "lethe_erase":
        from lethe.filters import EraseConfig, erase

        cfg = EraseConfig(**{"seed": seed, **dict(recipe.erase_options)})
        out, _ = erase(fold(model, bank, forget), data.train, forget, config=cfg)
    elif method == "head_mask":
        out = B.head_mask(model, forget)
    elif method == "retrain":

        def make() -> nn.Module:
            torch.manual_seed(seed)
            return setup.make(data.in_chans, data.size, data.num_classes).to(_device())

        out = B.retrain(make, data.train, forget, seed=seed, **recipe.fit_options())
    elif method == "finetune":
        out = B.finetune(
            model, data.train, forget, epochs=recipe.finetune_epochs, lr=recipe.finetune_lr,
            seed=seed,
        )  # fmt: skip
    elif method == "neggrad_plus":
        out = B.neggrad_plus(
            model, data.train, forget, epochs=recipe.neggrad_epochs, lr=recipe.neggrad_lr,
            alpha=recipe.neggrad_alpha, forget_ce_cap=recipe.neggrad_cap, seed=seed,
        )  # fmt: skip
    elif method == "ssd":
        out = B.ssd(
            model, data.train, forget, selection=recipe.ssd_selection,
            dampening=recipe.ssd_dampening, seed=seed,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return out.eval(), time.perf_counter() - t


# ------------------------------------------------------------------------------------- runs
def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(statistics.fmean(vals)) if vals else None


def _max(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(max(vals)) if vals else None


class Deadline:
    """When to stop starting new work (``None``: never), so that a run in a time-limited
    session ends with complete results for what it did and a list of what it skipped."""

    def __init__(self, seconds: float | None) -> None:
        self._at = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at


def run_setup(
    name: str,
    preset: Preset,
    *,
    cache: Path,
    progress: bool,
    log: Callable[[str], None],
    deadline: Deadline | None = None,
    save: Callable[[dict[str, Any]], None] = lambda _out: None,
) -> dict[str, Any]:
    """Every measurement of one setup, as a JSON-ready dict.

    ``save`` gets the partial result after each finished step (for a run that may be cut
    short); past ``deadline`` no new comparison run starts and the skipped ones are listed in
    ``skipped_at_deadline``.
    """
    deadline = deadline or Deadline(None)
    from lethe.metrics import TorchBackend

    setup = SETUPS[name]
    recipe = preset.recipe(name)
    log(f"[{name}] data")
    data = load_data(setup.dataset, preset)
    log(f"[{name}] base model ({len(data.train)} train / {len(data.test)} test images)")
    model, base_info = base_model(
        name, recipe, data, seed=preset.seed, cache=cache, progress=progress
    )
    x_test, y_test = data.test.tensors
    y_np = y_test.numpy()
    base_pred = _predictions(model, x_test)
    base_acc = float((base_pred == y_np).mean())
    per_class_base = [float((base_pred[y_np == c] == c).mean()) for c in range(data.num_classes)]
    base = _Memo(TorchBackend(model))
    out: dict[str, Any] = {
        "dataset": setup.dataset,
        "backbone": setup.backbone,
        "recipe": recipe.to_dict(),
        "train_samples": len(data.train),
        "test_samples": len(data.test),
        "data_digests": data.digests,
        "base": {**base_info, "test_acc": base_acc, "per_class": per_class_base},
    }

    bank = None
    if "lethe" in preset.methods or "lethe_erase" in preset.methods:
        log(f"[{name}] filter bank: one round for {data.num_classes} classes")
        bank, out["lethe_round"] = train_lethe(
            name, model, data, recipe, base_digest=base_info["digest"], seed=preset.seed,
            cache=cache, progress=progress,
        )  # fmt: skip
        cover: list[dict[str, Any]] = []
        sets = [[c] for c in range(data.num_classes)]
        sets += forget_sets(data.num_classes, preset, preset.lethe_sets_per_size, salt=2)
        for forget in sets:
            folded, seconds = run_method(
                "lethe", forget, name=name, model=model, bank=bank, data=data, recipe=recipe,
                seed=preset.seed,
            )  # fmt: skip
            f_acc, r_acc = _accuracy_pair(_predictions(folded, x_test), y_np, forget)
            bf, br = _accuracy_pair(base_pred, y_np, forget)
            cover.append(
                {"forget": forget, "forget_acc": f_acc, "retain_acc": r_acc,
                 "base_forget_acc": bf, "base_retain_acc": br, "retain_drop": br - r_acc,
                 "fold_seconds": seconds}
            )  # fmt: skip
        out["lethe_coverage"] = cover
        _finish(out, {}, data.num_classes, [])
        save(out)

    singles = sampled_singles(data.num_classes, preset, setup.dataset)
    if preset.singles == 0:
        singles = []
    compare_sets = [[c] for c in singles]
    if preset.singles != 0:
        compare_sets += forget_sets(data.num_classes, preset, preset.sets_per_size, salt=3)
    # Forget sets outside, methods inside: a run cut short by its deadline still compares
    # every method on the sets it finished.
    comparison: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    for forget in compare_sets:
        for method in preset.methods:
            if deadline.passed():
                skipped.append(f"{method} {forget}")
                continue
            log(f"[{name}] {method} forget {forget}")
            unlearned, seconds = run_method(
                method, forget, name=name, model=model, bank=bank, data=data, recipe=recipe,
                seed=preset.seed,
            )  # fmt: skip
            row = _summary(_evaluate(unlearned, forget, data, base, preset), seconds)
            comparison.setdefault(method, []).append(row)
            _finish(out, comparison, data.num_classes, singles)
            save(out)
    if skipped:
        out["skipped_at_deadline"] = skipped
    _finish(out, comparison, data.num_classes, singles)
    return out


def _finish(
    out: dict[str, Any],
    comparison: Mapping[str, list[dict[str, Any]]],
    k: int,
    singles: Sequence[int],
) -> None:
    """(Re)compute the derived parts of a setup's result: gaps, cost and targets."""
    if comparison:
        out["comparison"] = dict(comparison)
        out["gaps_to_retrain"] = _gaps(comparison)
    out["cost"] = _cost(out, k, singles)
    out["targets"] = _targets(out)


def _gaps(comparison: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per method, the mean gap to the retrained model on the same forget sets."""
    if "retrain" not in comparison:
        return {}
    gold = {tuple(r["forget"]): r for r in comparison["retrain"]}
    gaps: dict[str, Any] = {}
    for method, rows in comparison.items():
        pairs = [(r, gold[tuple(r["forget"])]) for r in rows if tuple(r["forget"]) in gold]

        def gap(key: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]] = pairs) -> Any:
            vals = [a[key] - b[key] for a, b in pairs if a[key] is not None and b[key] is not None]
            return _mean(vals)

        ratios = [
            a["relearn_steps"] / b["relearn_steps"]
            for a, b in pairs
            if a["relearn_steps"] is not None and b["relearn_steps"]
        ]
        costs = [a["seconds"] / b["seconds"] for a, b in pairs if b.get("seconds")]
        probe_gaps = [
            a["probe_auc"] - b["probe_auc"]
            for a, b in pairs
            if a["probe_auc"] is not None and b["probe_auc"] is not None
        ]
        gaps[method] = {
            "retain_acc": gap("retain_acc"),
            "test_acc": gap("test_acc"),
            "forget_acc": gap("forget_acc"),
            "mia": gap("mia"),
            "probe_auc": gap("probe_auc"),
            "relearn_ratio": _mean(ratios),
            "relearn_ratio_median": statistics.median(ratios) if ratios else None,
            "relearn_ratio_min": min(ratios) if ratios else None,
            "probe_auc_max": _max(probe_gaps),
            "forget_acc_max": _max([a["forget_acc"] for a, _ in pairs]),
            "seconds_vs_retrain": _mean(costs),
        }
    return gaps


def _erase_targets(g: Mapping[str, Any]) -> dict[str, Any]:
    """DESIGN §9 depth targets of the erase phase, from its gaps to retraining."""
    t: dict[str, Any] = {}

    def add(key: str, value: Any, target: float, met: Callable[[float], bool]) -> None:
        if value is not None:
            t[key] = {"value": value, "target": target, "met": bool(met(value))}

    add("erase_relearn_ratio_median", g.get("relearn_ratio_median"), 1.0, lambda v: v >= 1.0)
    add("erase_relearn_ratio_min", g.get("relearn_ratio_min"), 0.5, lambda v: v >= 0.5)
    add("erase_probe_gap_max", g.get("probe_auc_max"), 0.02, lambda v: v <= 0.02)
    add("erase_forget_worst", g.get("forget_acc_max"), 0.01, lambda v: v <= 0.01)
    add("erase_retain_gap", g.get("retain_acc"), 0.01, lambda v: abs(v) <= 0.01)
    add("erase_seconds_vs_retrain", g.get("seconds_vs_retrain"), 0.1, lambda v: v <= 0.1)
    return t


def _cost(out: Mapping[str, Any], k: int, singles: Sequence[int]) -> dict[str, Any]:
    cost: dict[str, Any] = {"classes": k}
    if "lethe_round" in out:
        cover = out["lethe_coverage"]
        cost["lethe_round_seconds"] = out["lethe_round"]["round_seconds"]
        cost["lethe_apply_seconds"] = _mean([r["fold_seconds"] for r in cover])
        cost["epoch_ratio"] = out["lethe_round"]["epoch_ratio"]
    per_class: dict[str, float] = {}
    for method, rows in out.get("comparison", {}).items():
        times = [r["seconds"] for r in rows if len(r["forget"]) == 1 and r["forget"][0] in singles]
        if times:
            per_class[method] = float(statistics.fmean(times))
    cost["per_class_seconds"] = per_class
    cost["any_class_seconds"] = {m: t * k for m, t in per_class.items()}
    if "lethe_round_seconds" in cost:
        cost["any_class_seconds"]["lethe"] = cost["lethe_round_seconds"]
        others = {m: per_class[m] * k for m in PER_CLASS_METHODS if m in per_class}
        if others:
            cheapest = min(others, key=lambda m: others[m])
            cost["cheapest_per_class_method"] = cheapest
            cost["lethe_vs_cheapest"] = cost["lethe_round_seconds"] / others[cheapest]
        if "retrain" in per_class:
            cost["retrain_all_vs_lethe"] = per_class["retrain"] * k / cost["lethe_round_seconds"]
            cost["one_retrain_vs_lethe"] = per_class["retrain"] / cost["lethe_round_seconds"]
    return cost


def _targets(out: Mapping[str, Any]) -> dict[str, Any]:
    """The DESIGN §9 / issue 8 targets, measured value and whether it was met."""
    t: dict[str, Any] = {}
    cover = out.get("lethe_coverage")
    if cover:
        singles = [r for r in cover if len(r["forget"]) == 1]
        sets = [r for r in cover if len(r["forget"]) > 1]
        wf = max(r["forget_acc"] for r in singles)
        wd = max(r["retain_drop"] for r in singles)
        t["single_forget_worst"] = {"value": wf, "target": 0.01, "met": wf <= 0.01}
        t["single_retain_drop_worst"] = {"value": wd, "target": 0.02, "met": wd <= 0.02}
        if sets:
            sf = max(r["forget_acc"] for r in sets)
            sd = max(r["retain_drop"] for r in sets)
            t["sets_forget_worst"] = {"value": sf, "target": 0.01, "met": sf <= 0.01}
            t["sets_retain_drop_worst"] = {"value": sd, "target": 0.03, "met": sd <= 0.03}
        ratio = out["lethe_round"]["epoch_ratio"]
        t["epoch_ratio"] = {"value": ratio, "target": 1.0, "met": ratio <= 1.0}
    gaps = out.get("gaps_to_retrain", {}).get("lethe")
    if gaps:
        g = gaps["retain_acc"]
        if g is not None:
            t["retain_gap_to_retrain"] = {"value": g, "target": 0.01, "met": abs(g) <= 0.01}
        r = gaps["relearn_ratio"]
        if r is not None:
            t["relearn_vs_retrain"] = {"value": r, "target": 0.5, "met": r >= 0.5}
    erase_gaps = out.get("gaps_to_retrain", {}).get("lethe_erase")
    if erase_gaps:
        t.update(_erase_targets(erase_gaps))
    cost = out.get("cost", {})
    if "lethe_vs_cheapest" in cost:
        v = cost["lethe_vs_cheapest"]
        t["round_vs_cheapest_per_class"] = {"value": v, "target": 1.0, "met": v < 1.0}
    if "retrain_all_vs_lethe" in cost:
        v = cost["retrain_all_vs_lethe"]
        t["retrain_all_vs_round"] = {"value": v, "target": 10.0, "met": v >= 10.0}
    if "lethe_apply_seconds" in cost:
        v = cost["lethe_apply_seconds"]
        t["apply_seconds"] = {"value": v, "target": 10.0, "met": v <= 10.0}
    return t


def run(
    preset_name: str,
    *,
    only: Sequence[str] = (),
    methods: Sequence[str] = (),
    cache: Path = CACHE,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    deadline_seconds: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] = lambda _result: None,
) -> dict[str, Any]:
    """Run a preset (optionally restricted to some setups and methods); returns the results.

    ``on_progress`` gets the partial result after every finished step; past
    ``deadline_seconds`` no new setup or comparison run starts (see :class:`Deadline`).
    """
    if preset_name not in PRESETS:
        raise SystemExit(f"unknown preset {preset_name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    unknown = [s for s in only if s not in SETUPS] + [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(
            f"unknown setups/methods {unknown}; setups: {', '.join(SETUPS)}; "
            f"methods: {', '.join(METHODS)}"
        )
    if only:
        preset = replace(preset, setups=tuple(only))
    if methods:
        preset = replace(preset, methods=tuple(m for m in METHODS if m in methods))
    deadline = Deadline(deadline_seconds)
    if torch.cuda.is_available():
        # Benchmark speed on the GPU: autotuned convolutions and TF32 matrix products.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "unlearning",
        "preset": preset_name,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine("timm", "sklearn", "lethe"),
        "device": str(_device()),
        "seed": preset.seed,
        "settings": {
            "setups": list(preset.setups),
            "methods": list(preset.methods),
            "train_per_class": preset.train_per_class,
            "test_per_class": preset.test_per_class,
            "per_class_by_dataset": {k: list(v) for k, v in preset.per_class_by_dataset.items()},
            "singles": preset.singles,
            "sets_per_size": preset.sets_per_size,
            "lethe_sets_per_size": preset.lethe_sets_per_size,
            "relearn_steps": preset.relearn_steps,
            "relearn_seeds": preset.relearn_seeds,
        },
        "setups": {},
    }
    if deadline_seconds is not None:
        result["settings"]["deadline_seconds"] = deadline_seconds

    def save(name: str, partial: dict[str, Any]) -> None:
        result["setups"][name] = partial
        result["wall_seconds"] = time.perf_counter() - started
        on_progress(result)

    for name in preset.setups:
        if deadline.passed():
            result.setdefault("skipped_at_deadline", []).append(name)
            continue
        result["setups"][name] = run_setup(
            name, preset, cache=cache, progress=progress, log=log, deadline=deadline,
            save=lambda partial, name=name: save(name, partial),
        )  # fmt: skip
    result["wall_seconds"] = time.perf_counter() - started
    return result


def merge(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One result from several runs of a preset (say, one per time-limited GPU call): setups
    are taken from the later runs where they repeat, wall times add up."""
    if not results:
        raise SystemExit("nothing to merge")
    merged: dict[str, Any] = copy.deepcopy(dict(results[0]))
    merged["parts"] = [
        {"date": r["date"], "setups": list(r["setups"]), "wall_seconds": r["wall_seconds"]}
        for r in results
    ]
    for r in results[1:]:
        if r["preset"] != merged["preset"]:
            raise SystemExit(f"cannot merge presets {merged['preset']!r} and {r['preset']!r}")
        merged["setups"].update(copy.deepcopy(r["setups"]))
        merged["wall_seconds"] += r["wall_seconds"]
    # A setup one run skipped but a later run did is not missing from the merge.
    skipped = {s for r in results for s in r.get("skipped_at_deadline", [])}
    merged.pop("skipped_at_deadline", None)
    if skipped - set(merged["setups"]):
        merged["skipped_at_deadline"] = sorted(skipped - set(merged["setups"]))
    return merged


# ------------------------------------------------------------------------------------ report
def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "–" if v is None else format(v, fmt)


def _mark(t: Mapping[str, Any] | None) -> str:
    return "" if t is None else (" ✓" if t["met"] else " ✗")


def plot(result: Mapping[str, Any], figures: Path) -> list[Path]:
    """Per-class forget/retain bars per setup and one cost-vs-quality chart; PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    preset = result["preset"]
    for name, s in result["setups"].items():
        cover = [r for r in s.get("lethe_coverage", []) if len(r["forget"]) == 1]
        if not cover:
            continue
        fig, ax = plt.subplots(figsize=(7, 3))
        xs = np.arange(len(cover))
        ax.bar(xs - 0.2, [100 * r["forget_acc"] for r in cover], 0.4, label="forget acc")
        ax.bar(xs + 0.2, [100 * r["retain_acc"] for r in cover], 0.4, label="retain acc")
        ax.plot(xs, [100 * r["base_retain_acc"] for r in cover], "k_", ms=14, label="base retain")
        ax.set_xticks(xs, [str(r["forget"][0]) for r in cover])
        ax.set_xlabel("forgotten class")
        ax.set_ylabel("% of test samples")
        ax.set_title(f"Lethe, {name}: one filter per class")
        ax.legend(fontsize=7, loc="center right")
        fig.tight_layout()
        p = figures / f"bench-{preset}-{name}-classes.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    points = []
    for name, s in result["setups"].items():
        cost = s.get("cost", {}).get("any_class_seconds", {})
        for method, rows in s.get("comparison", {}).items():
            if method in cost and cost[method] > 0:
                points.append((name, method, cost[method], _mean([r["forget_acc"] for r in rows]),
                               _mean([r["retain_drop"] for r in rows])))  # fmt: skip
    if points:
        # Colour = method, marker = setup; one legend entry for each, outside the axes.
        colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
        setups = list(dict.fromkeys(name for name, *_ in points))
        markers = dict(zip(setups, "osD^vP*X", strict=False))
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for name, method, secs, f_acc, drop in points:
            style = {"color": colors[method], "marker": markers.get(name, "o"), "s": 30}
            axes[0].scatter(secs, 100 * (f_acc or 0), **style)
            axes[1].scatter(secs, 100 * (drop or 0), **style)
        for ax, ylabel in zip(axes, ("mean forget acc (%)", "mean retain drop (points)"),
                              strict=True):  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("seconds to be able to forget any class")
            ax.set_ylabel(ylabel)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=colors[m], marker="o", ls="", label=_LABELS[m])
            for m in METHODS
            if any(m == method for _, method, *_ in points)
        ]
        if len(setups) > 1:
            handles += [
                Line2D([], [], color="k", marker=markers[n], ls="", label=n) for n in setups
            ]
        fig.legend(handles=handles, fontsize=7, loc="center right", frameon=False)
        fig.tight_layout(rect=(0, 0, 0.78, 0.94))
        fig.suptitle("cost vs quality (lower left is better)")
        p = figures / f"bench-{preset}-cost-quality.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


_LABELS = {
    "lethe": "Lethe (weight filtering)",
    "lethe_erase": "Lethe mask + erase (phase 2)",
    "retrain": "retrain without the classes (gold)",
    "finetune": "fine-tune on retain",
    "neggrad_plus": "NegGrad+",
    "ssd": "SSD",
    "head_mask": "head masking (reference)",
}


def _describe_sets(comp: Mapping[str, list[dict[str, Any]]]) -> str:
    sets = [r["forget"] for r in next(iter(comp.values()))]
    singles = [f[0] for f in sets if len(f) == 1]
    multi = [f for f in sets if len(f) > 1]
    parts = [f"single classes {singles}"] if singles else []
    if multi:
        parts.append("sets " + ", ".join(str(f) for f in multi))
    return " and ".join(parts)


_DEPTH_TARGETS = (
    ("erase_relearn_ratio_median", "relearn / retrain, median", "≥ 1.0", ".2f", 1),
    ("erase_relearn_ratio_min", "relearn / retrain, worst set", "≥ 0.5", ".2f", 1),
    ("erase_probe_gap_max", "probe AUC gap to retrain, worst set", "≤ +0.02", "+.3f", 1),
    ("erase_forget_worst", "forget accuracy, worst set (%)", "≤ 1 %", ".1f", 100),
    ("erase_retain_gap", "retain gap to retrain, mean (points)", "within ±1", "+.1f", 100),
    ("erase_seconds_vs_retrain", "erase seconds / retrain seconds", "≤ 0.10", ".2f", 1),
)


def _depth_lines(s: Mapping[str, Any]) -> list[str]:
    """Depth against retraining (relearn ratio, probe gap, cost), per method, and the erase
    phase's DESIGN §9 targets."""
    gaps = s.get("gaps_to_retrain", {})
    if not gaps or "retrain" not in gaps:
        return []
    first = s["comparison"]["retrain"][0]
    seeds = len(first.get("relearn_runs") or [first["relearn_steps"]])
    lines = [
        "",
        f"Depth against the retrained model on the same sets (relearn over {seeds} "
        "seed(s) per set, median run): relearn / retrain ≥ 1 means at least as slow to "
        "relearn as a model that never saw the class (good is high); probe gap ≤ 0.02 means "
        "the features know no more than the retrained model's (good is low).",
        "",
        "| method | relearn / retrain: median (worst) | probe gap: mean (worst) | "
        "retain gap | forget worst | seconds / retrain |",
        "|---|---|---|---|---|---|",
    ]
    for method, g in gaps.items():
        if method == "retrain":
            continue
        lines.append(
            f"| {_LABELS[method]} | {_num(g.get('relearn_ratio_median'), '.2f')} "
            f"({_num(g.get('relearn_ratio_min'), '.2f')}) | {_num(g.get('probe_auc'), '+.3f')} "
            f"({_num(g.get('probe_auc_max'), '+.3f')}) | "
            f"{_num(None if g.get('retain_acc') is None else 100 * g['retain_acc'], '+.1f')} | "
            f"{_pct(g.get('forget_acc_max'))} | {_num(g.get('seconds_vs_retrain'), '.3f')} |"
        )
    t = s.get("targets", {})
    marks = [
        f"{label} {format(t[key]['value'] * scale, fmt)}{_mark(t[key])} ({goal})"
        for key, label, goal, fmt, scale in _DEPTH_TARGETS
        if key in t
    ]
    if marks:
        lines += ["", "- Erase phase against DESIGN §9: " + "; ".join(marks) + "."]
    return lines


def section(result: Mapping[str, Any], figures: Sequence[Path]) -> str:
    """The preset's Markdown section of ``docs/benchmarks.md``."""
    m, st = result["machine"], result["settings"]
    lines = [
        f"## Unlearning: `--preset {result['preset']}`",
        "",
        f"`python -m benchmarks.bench_unlearning --preset {result['preset']}` "
        f"(results: `benchmarks/results/unlearning-{result['preset']}.json`, "
        f"{result['wall_seconds'] / 60:.0f} min on {result['device']}). "
        f"{m['cpu']}, {m['cpu_count']} cores (shared, load {m['load_average_at_start']}), "
        f"CUDA: {m['cuda'] or 'none'}; torch {m['torch']}, timm {m['timm']}, "
        f"scikit-learn {m['sklearn']}; seed {result['seed']}. Data per class: "
        f"{st['train_per_class'] or 'all'} train / {st['test_per_class'] or 'all'} test images"
        + "".join(
            f"; {d}: {a or 'all'} / {b or 'all'}"
            for d, (a, b) in st.get("per_class_by_dataset", {}).items()
        )
        + " (seeded subsample). Accuracies in % of test images; drops in points against the "
        "base model.",
    ]
    if len(result.get("parts", [])) > 1:
        lines += [
            "",
            "Merged from runs: "
            + "; ".join(
                f"{', '.join(p['setups'])} ({p['wall_seconds'] / 60:.1f} min, {p['date']})"
                for p in result["parts"]
            )
            + ".",
        ]
    if result.get("skipped_at_deadline"):
        lines += ["", f"Not run (deadline): {', '.join(result['skipped_at_deadline'])}."]
    if result.get("note"):
        lines += ["", str(result["note"])]
    for name, s in result["setups"].items():
        b = s["base"]
        lines += ["", f"### {name} ({s['dataset']}, {s['backbone']})", ""]
        lines.append(
            f"Base model: test accuracy {_pct(b['test_acc'])} %, recipe "
            f"{s['recipe']['epochs']} epochs, lr {s['recipe']['lr']:g}"
            + (f", trained in {b['train_seconds']:.0f} s" if "train_seconds" in b else "")
            + f"; {s['train_samples']} train / {s['test_samples']} test images."
        )
        t = s.get("targets", {})
        if "lethe_coverage" in s:
            cover = s["lethe_coverage"]
            lr_ = s["lethe_round"]
            lines += [
                "",
                f"Lethe, one round for all {len(s['base']['per_class'])} classes: "
                f"{lr_['round_seconds']:.0f} s ({len(lr_['epoch_seconds'])} epochs); filter "
                f"epoch / fine-tuning epoch = **{lr_['epoch_ratio']:.2f}**"
                f"{_mark(t.get('epoch_ratio'))} (target ≤ 1.0).",
                "",
                "| forget set | n | forget acc mean / worst | retain drop mean / worst | target |",
                "|---|---|---|---|---|",
            ]
            groups: dict[int, list[dict[str, Any]]] = {}
            for r in cover:
                groups.setdefault(len(r["forget"]), []).append(r)
            for size, rows in sorted(groups.items()):
                fa = [r["forget_acc"] for r in rows]
                dr = [r["retain_drop"] for r in rows]
                limit = 0.02 if size == 1 else 0.03
                ok = max(fa) <= 0.01 and max(dr) <= limit
                lines.append(
                    f"| {'single class' if size == 1 else f'{size} classes'} | {len(rows)} | "
                    f"{_pct(_mean(fa))} / {_pct(_max(fa))} | {100 * (_mean(dr) or 0):.1f} / "
                    f"{100 * (_max(dr) or 0):.1f} | ≤ 1 %, ≤ {100 * limit:.0f} pts"
                    f"{' ✓' if ok else ' ✗'} |"
                )
        comp = s.get("comparison")
        if comp:
            gaps = s.get("gaps_to_retrain", {})
            cost = s["cost"]
            lines += [
                "",
                f"Comparison on the same forget sets ({_describe_sets(comp)}): means over the "
                "sets; gaps are method − retrain, relearn / retrain is the mean per-set ratio.",
                "",
                "| method | forget acc | retain acc | retain gap | MIA | MIA gap | probe AUC "
                "(base) | probe gap | ZRF | relearn steps | relearn / retrain | apply s | "
                "any-class s |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for method, rows in comp.items():
                g = gaps.get(method, {})
                rgap = g.get("retain_acc")
                any_s = cost["any_class_seconds"].get(method)
                lines.append(
                    f"| {_LABELS[method]} | {_pct(_mean([r['forget_acc'] for r in rows]))} | "
                    f"{_pct(_mean([r['retain_acc'] for r in rows]))} | "
                    f"{_num(None if rgap is None else 100 * rgap, '+.1f')}"
                    f" | {_num(_mean([r['mia'] for r in rows]), '.2f')} | "
                    f"{_num(g.get('mia'), '+.2f')} | "
                    f"{_num(_mean([r['probe_auc'] for r in rows]))} "
                    f"({_num(_mean([r['probe_auc_base'] for r in rows]))}) | "
                    f"{_num(g.get('probe_auc'), '+.3f')} | "
                    f"{_num(_mean([r['zrf'] for r in rows]))} | "
                    f"{_num(_mean([r['relearn_steps'] for r in rows]), '.1f')} | "
                    f"{_num(g.get('relearn_ratio'), '.2f')} | "
                    f"{_num(_mean([r['seconds'] for r in rows]), '.2g')} | "
                    f"{_num(any_s, '.3g')} |"
                )
        lines += _depth_lines(s)
        cost = s.get("cost", {})
        if "lethe_vs_cheapest" in cost or "retrain_all_vs_lethe" in cost:
            lines += [""]
            if "lethe_vs_cheapest" in cost:
                lines.append(
                    f"- Cost: Lethe's round / ({cost['classes']} × cheapest per-class method, "
                    f"{cost['cheapest_per_class_method']}) = {cost['lethe_vs_cheapest']:.2f}"
                    f"{_mark(t.get('round_vs_cheapest_per_class'))} (target < 1)."
                )
            if "retrain_all_vs_lethe" in cost:
                lines.append(
                    f"- Retraining for every class costs {cost['retrain_all_vs_lethe']:.1f}× "
                    f"Lethe's round{_mark(t.get('retrain_all_vs_round'))} (target ≥ 10×); one "
                    f"retrain costs {cost['one_retrain_vs_lethe']:.2f}× the round."
                )
        if "lethe_apply_seconds" in cost:
            if "lethe_vs_cheapest" not in cost and "retrain_all_vs_lethe" not in cost:
                lines.append("")
            lines.append(
                f"- Apply one deletion (compose + fold, torch): "
                f"{cost['lethe_apply_seconds']:.3f} s{_mark(t.get('apply_seconds'))}; ONNX "
                "patching and signing are measured in the ONNX section."
            )
        if "retain_gap_to_retrain" in t:
            v = t["retain_gap_to_retrain"]
            lines.append(
                f"- Lethe's retain-accuracy gap to retrain: {100 * v['value']:+.1f} points"
                f"{_mark(v)} (target within ±1)."
            )
        if "relearn_vs_retrain" in t:
            v = t["relearn_vs_retrain"]
            lines.append(
                f"- Depth: Lethe's relearn time is {v['value']:.2f}× the retrained model's"
                f"{_mark(v)} (DESIGN §9 goal ≥ 0.5; the paper's method measured about 0.1)."
            )
        if s.get("skipped_at_deadline"):
            lines += [
                "",
                f"- Comparison runs skipped at the deadline ({len(s['skipped_at_deadline'])}): "
                + ", ".join(s["skipped_at_deadline"])
                + ".",
            ]
        for p in figures:
            if f"-{name}-" in p.name:
                lines += ["", f"![{name}: per-class forget / retain](figures/{p.name})"]
    for p in figures:
        if p.name.endswith("cost-quality.png"):
            lines += ["", f"![cost vs quality](figures/{p.name})"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    ap.add_argument("--only", nargs="*", default=[], metavar="SETUP", help="setups to run")
    ap.add_argument("--methods", nargs="*", default=[], metavar="METHOD", help="methods to run")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: results/)")
    ap.add_argument("--docs", type=Path, default=DOCS, help="Markdown file to update")
    ap.add_argument("--figures", type=Path, default=FIGURES, help="folder for PNG plots")
    ap.add_argument("--cache", type=Path, default=CACHE, help="base-model / bank cache")
    ap.add_argument("--no-docs", action="store_true", help="do not update the docs")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument(
        "--deadline", type=float, default=None, metavar="SECONDS",
        help="start no new setup or comparison run after this many seconds (results list "
        "what was skipped); the JSON is rewritten after every finished step",
    )  # fmt: skip
    ap.add_argument(
        "--render", nargs="+", type=Path, default=None, metavar="JSON",
        help="run nothing: merge these result files of one preset (later ones win per "
        "setup) into --out, and write the plots and the docs section from them",
    )  # fmt: skip
    ap.add_argument(
        "--note", default=None, help="with --render: a paragraph on how the runs were made"
    )
    args = ap.parse_args(argv)
    out = args.out or RESULTS_DIR / f"unlearning-{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(result: Mapping[str, Any]) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        tmp.replace(out)

    if args.render:
        result = merge([json.loads(p.read_text()) for p in args.render])
        if args.note:
            result["note"] = args.note
    else:
        result = run(
            args.preset, only=args.only, methods=args.methods, cache=args.cache,
            progress=not args.quiet, deadline_seconds=args.deadline, on_progress=write,
        )  # fmt: skip
    write(result)
    if not args.no_docs:
        figures = plot(result, args.figures)
        update_docs(args.docs, f"unlearning-{args.preset}", section(result, figures))
    return result


if __name__ == "__main__":
    main()
