"""bench_unlearning's methods: the base model and filter bank (cached by digest) and the
registry of unlearning methods compared (:data:`METHOD_RUNNERS`, :func:`run_method`)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks import _baselines as B
from benchmarks._unlearning_setups import METHODS, SETUPS, Data, Recipe

__all__ = ["METHOD_RUNNERS", "MethodContext", "base_model", "run_method", "train_lethe"]


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


@dataclass(frozen=True)
class MethodContext:
    """What every method gets: the setup's name, base model, filter bank, data and recipe."""

    name: str
    model: nn.Module
    bank: Any
    data: Data
    recipe: Recipe
    seed: int


def _lethe(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    from lethe.filters import fold

    return fold(ctx.model, ctx.bank, forget)


def _lethe_erase(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    from lethe.filters import EraseConfig, erase, fold

    cfg = EraseConfig(**{"seed": ctx.seed, **dict(ctx.recipe.erase_options)})
    out, _ = erase(fold(ctx.model, ctx.bank, forget), ctx.data.train, forget, config=cfg)
    return out


def _head_mask(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    return B.head_mask(ctx.model, forget)


def _retrain(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    setup, data = SETUPS[ctx.name], ctx.data

    def make() -> nn.Module:
        torch.manual_seed(ctx.seed)
        return setup.make(data.in_chans, data.size, data.num_classes).to(_device())

    return B.retrain(make, data.train, forget, seed=ctx.seed, **ctx.recipe.fit_options())


def _finetune(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    r = ctx.recipe
    return B.finetune(
        ctx.model, ctx.data.train, forget, epochs=r.finetune_epochs, lr=r.finetune_lr,
        seed=ctx.seed,
    )  # fmt: skip


def _neggrad_plus(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    r = ctx.recipe
    return B.neggrad_plus(
        ctx.model, ctx.data.train, forget, epochs=r.neggrad_epochs, lr=r.neggrad_lr,
        alpha=r.neggrad_alpha, forget_ce_cap=r.neggrad_cap, seed=ctx.seed,
    )  # fmt: skip


def _ssd(ctx: MethodContext, forget: Sequence[int]) -> nn.Module:
    r = ctx.recipe
    return B.ssd(
        ctx.model, ctx.data.train, forget, selection=r.ssd_selection,
        dampening=r.ssd_dampening, seed=ctx.seed,
    )  # fmt: skip


# The registry: one function per method of METHODS, (context, forget set) -> unlearned model.
METHOD_RUNNERS: dict[str, Callable[[MethodContext, Sequence[int]], nn.Module]] = {
    "lethe": _lethe,
    "lethe_erase": _lethe_erase,
    "retrain": _retrain,
    "finetune": _finetune,
    "neggrad_plus": _neggrad_plus,
    "ssd": _ssd,
    "head_mask": _head_mask,
}


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
    import lethe.filters  # noqa: F401  (imported before the clock starts, as before)

    runner = METHOD_RUNNERS.get(method)
    if runner is None:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    ctx = MethodContext(name, model, bank, data, recipe, seed)
    t = time.perf_counter()
    out = runner(ctx, forget)
    return out.eval(), time.perf_counter() - t
