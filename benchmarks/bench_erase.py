"""Phase 2 (erase) recipes against retraining, per class: the lab behind the erase method.

For each setup and each compared class: the masked (phase 1, folded) model, a model retrained
from scratch without the class (the reference, timed), and every erase variant, all measured
with the same metrics (forget / retain accuracy, feature-probe AUC, relearn steps over
``--relearn-seeds`` seeds). Depth columns: relearn ratio (variant steps / retrained steps),
probe AUC gap (variant - retrained), erase seconds / retrain seconds, in wall time and in
process CPU time (``cpu_cost_ratio``: run with ``OMP_NUM_THREADS=1`` on a shared machine, where
wall times depend on the load; a retrain read from the cache is flagged ``timing_cached``).

    python -m benchmarks.bench_erase --setup digits --classes 0 3 5 --variants top1 top2
    python -m benchmarks.bench_erase --setup mnist_resnet18 --classes 3 8

Results: ``benchmarks/results/erase-lab-<setup>.json`` (one row per class and model; a rerun
adds or replaces rows of the variants it ran).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from benchmarks import _baselines as B
from benchmarks import bench_unlearning as U
from benchmarks._common import CACHE, RESULTS_DIR, machine

__all__ = ["VARIANTS", "main"]

# Erase variants: EraseConfig options, plus lab-only steps around erase() ("perturb": shrink
# and perturb the frozen part first, W <- (1 - p) W + p W_fresh; "finetune": whole-network
# epochs on retain data afterwards, {"epochs": E, "lr": LR}).
_RR = "relearn-resistant"
# The variants were defined (and their rows in results/ measured) when EraseConfig's defaults
# were retrain-top, 15 epochs, batch 128, an adversary on forget images at every step: pinned
# here, so a name keeps its meaning after the defaults changed (to "px-look-e2-s4", then
# "px-look-e3", which "default" runs as EraseConfig() has it).
_ROUND_DEFAULTS: dict[str, Any] = {
    "method": "retrain-top",
    "blocks": 1,  # the default until the sixth round (since then None: 2 on a ViT)
    "epochs": 15,
    "batch_size": 128,
    "adversary_every": 1,
    "adversary_data": "forget",
}
# The third round's px-look-e3, EraseConfig()'s defaults since the fourth: the base of the
# later variants.
_PX_LOOK_E3: dict[str, Any] = {
    "method": _RR,
    "adversary_data": "lookalike",
    "epochs": 3,
    "batch_size": 32,
    "adversary_every": 2,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "top1": {"blocks": 1},
    "top1-e5": {"blocks": 1, "epochs": 5},
    "top2": {"blocks": 2},
    "top2-e5": {"blocks": 2, "epochs": 5},
    "top3-e5": {"blocks": 3, "epochs": 5},
    "l3.1-e5": {"boundary": "layer3.1", "epochs": 5},
    "l3.0-e5": {"boundary": "layer3.0", "epochs": 5},
    "l2.0-e5": {"boundary": "layer2.0", "epochs": 5},
    "top1+ft1": {"blocks": 1, "epochs": 5, "finetune": {"epochs": 1, "lr": 1e-3}},
    "top1+ft1-lr1e-4": {"blocks": 1, "finetune": {"epochs": 1, "lr": 1e-4}},
    "top2+ft1": {"blocks": 2, "epochs": 5, "finetune": {"epochs": 1, "lr": 1e-3}},
    "sp0.3+top1+ft1": {
        "blocks": 1,
        "epochs": 5,
        "perturb": 0.3,
        "finetune": {"epochs": 1, "lr": 1e-3},
    },
    "ft1+top1": {"blocks": 1, "epochs": 5, "finetune_first": {"epochs": 1, "lr": 1e-3}},
    # The other lethe.filters.erase recipes (EraseConfig fields; docs/benchmarks.md has the
    # numbers). The rows of results/erase-lab-*.json were measured with the same recipes from
    # a lab copy (spec keys: resist = resist_weight, adv_* = adversary_*, threshold =
    # saliency_threshold, method "resist" = relearn-resistant), bit-identical to these.
    "resist-top": {"method": "relearn-resistant", "adversary_scope": "top"},
    "resist-top-e4": {
        "method": "relearn-resistant",
        "adversary_scope": "top",
        "adversary_every": 4,
    },
    "resist-all": {"method": "relearn-resistant", "adversary_scope": "all"},
    "resist-all-e4": {
        "method": "relearn-resistant",
        "adversary_scope": "all",
        "adversary_every": 4,
    },
    "sal0.5": {"method": "saliency", "saliency_threshold": 0.5},
    "sal0.9": {"method": "saliency", "saliency_threshold": 0.9},
    # Third round: relearn-resistant with retain-only proxies of the forgotten classes as the
    # adversary's data (EraseConfig.adversary_data), and cheaper schedules of retrain-top.
    "top1-e8": {"blocks": 1, "epochs": 8, "lr": 3e-3},
    "top1-e5-lr3e-3": {"blocks": 1, "epochs": 5, "lr": 3e-3},
    "top1-e3": {"blocks": 1, "epochs": 3, "batch_size": 32},
    "px-look-e3": dict(_PX_LOOK_E3),
    "px-retain-e3": {
        "method": _RR,
        "adversary_data": "retain",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 2,
    },
    "px-inv-e3": {
        "method": _RR,
        "adversary_data": "invert",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 2,
    },
    "pxh-look-e3": {
        "method": _RR,
        "adversary_data": "lookalike",
        "adversary_scope": "head",
        "epochs": 3,
        "batch_size": 32,
    },
    "px-look-e2-s4": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 2,
        "batch_size": 32,
        "adversary_every": 4,
    },
    "pxh-look-r60": {
        "method": _RR,
        "adversary_data": "lookalike",
        "adversary_scope": "head",
        "epochs": 3,
        "batch_size": 32,
        "retain_per_class": 60,
    },
    # Lab diagnostic, not a recipe: top1-e3, then the forgotten classes' head biases lowered
    # until their forget margin equals the given one (measured on the test images): is a
    # variant's relearn time only its deeper margin?
    "top1-e3-bias-20": {"blocks": 1, "epochs": 3, "batch_size": 32, "bias_margin": -20.0},
    "top1-e3-bias-28": {"blocks": 1, "epochs": 3, "batch_size": 32, "bias_margin": -28.0},
    "px-look-r60": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 2,
        "retain_per_class": 60,
    },
    "px-look-r40-s4": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 4,
        "adversary_steps": 2,
        "retain_per_class": 40,
    },
    "px-look-r60-s4": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 4,
        "retain_per_class": 60,
    },
    "px-look-e2-a1": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 2,
        "batch_size": 32,
        "adversary_every": 2,
        "adversary_steps": 1,
    },
    "top1-e3-r60": {"blocks": 1, "epochs": 3, "batch_size": 32, "retain_per_class": 60},
    "px-retain-e4": {"method": _RR, "adversary_data": "retain", "adversary_every": 4},
    "px-look-e4": {"method": _RR, "adversary_data": "lookalike", "adversary_every": 4},
    "px-inv-e4": {"method": _RR, "adversary_data": "invert", "adversary_every": 4},
    "px-retain": {"method": _RR, "adversary_data": "retain"},
    "px-look": {"method": _RR, "adversary_data": "lookalike"},
    "px-inv": {"method": _RR, "adversary_data": "invert"},
    # Fourth round (the fast path made epochs cheap): px-look-e3 with all of layer4 rebuilt.
    "px-look-e3-b2": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 2,
        "blocks": 2,
    },
    # Fourth round, cheaper tops for the plain CNN (the cap applies before features are cached).
    "px-look-e2-r30-s4": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 2,
        "batch_size": 32,
        "adversary_every": 4,
        "retain_per_class": 30,
    },
    "px-look-e3-fc": {
        "method": _RR,
        "adversary_data": "lookalike",
        "epochs": 3,
        "batch_size": 32,
        "adversary_every": 2,
        "boundary": "fc.0",
    },
    # Fifth round: the default with a longer adversary (5 sign steps instead of 3; the relearn
    # test's Adam needs 7-30 steps on the retrained model, more on sets).
    "px-look-e3-as5": {**_PX_LOOK_E3, "adversary_steps": 5},
    # Fifth round, the ViT (6 blocks, its retrain 40 epochs): half of the blocks rebuilt, or
    # all of them (only the patch embedding kept): the residual stream carries what the kept
    # blocks computed to the features the probe reads.
    "px-look-e3-b3": {**_PX_LOOK_E3, "blocks": 3},
    "px-look-e3-b6": {**_PX_LOOK_E3, "blocks": 6},
    # Fifth round, ViT: the default, then one whole-network epoch on retain data (changes the
    # residual stream below the cut, at 1/40 of the ViT's retrain).
    "px-look-e3+ft1": {**_PX_LOOK_E3, "finetune": {"epochs": 1, "lr": 3e-4}},
    # Fifth round, lab only: the default on the unmasked base model (the frozen part below the
    # cut keeps all its channels: does the mask's damage there cost the 5-class set retain?).
    "default-base": {**_PX_LOOK_E3, "from_base": True},
    # Sixth round (the H200 run: on a GPU a small model's step costs about the same whatever
    # its batch, so phase 2's cost there is its step count, 12 / retrain epochs at batch 32):
    # the default with 4x / 8x fewer, larger steps (lr scaled by the square root of the batch
    # ratio, the adversary at every step).
    "px-look-e3-bs128": {**_PX_LOOK_E3, "batch_size": 128, "lr": 4e-3, "adversary_every": 1},
    "px-look-e3-bs256": {**_PX_LOOK_E3, "batch_size": 256, "lr": 6e-3, "adversary_every": 1},
    # EraseConfig()'s own defaults (since the fourth round: px-look-e3; third: px-look-e2-s4).
    # Sixth round: all of a ResNet's layer4 rebuilt (px-look-e3-b2 closes most of CIFAR-10's
    # probe gap at 3x the default's cost) with fewer epochs or half the retain samples.
    "px-look-e3-b2-e2": {**_PX_LOOK_E3, "blocks": 2, "epochs": 2},
    "px-look-e3-b2-r150": {**_PX_LOOK_E3, "blocks": 2, "retain_per_class": 150},
    # Since the sixth round blocks=None: 2 on a ViT, 1 elsewhere (the fifth round's ViT rows
    # named "default" ran blocks=1, i.e. px-look-e3; its px-look-e3-b2 is today's default).
    "default": {**_PX_LOOK_E3, "blocks": None},
    # Lab only: retrain-top, then the forgotten classes' head rows re-initialised or zeroed.
    "rows-fresh": {"rows": "fresh"},
    "rows-zero": {"rows": "zero"},
}


def _reset_rows(model: nn.Module, forget: Sequence[int], how: str, seed: int) -> None:
    """The forgotten classes' head rows re-initialised (``fresh``, seeded) or zeroed."""
    import copy

    head = model.get_classifier()  # type: ignore[operator]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed * 13 + 1)
        fresh = copy.deepcopy(head)
        fresh.reset_parameters()
        for c in forget:
            head.weight[c] = 0 if how == "zero" else fresh.weight[c]
            if head.bias is not None:
                head.bias[c] = 0 if how == "zero" else fresh.bias[c]


def _perturb(model: nn.Module, p: float, seed: int) -> nn.Module:
    """Shrink and perturb (Ash & Adams 2020) every conv / linear weight: (1-p) W + p W_fresh."""
    import copy

    out = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for mod in out.modules():
            if isinstance(mod, nn.Conv2d | nn.Linear):
                fresh = copy.deepcopy(mod)
                fresh.reset_parameters()
                mod.weight.mul_(1 - p).add_(p * fresh.weight)
    return out


def erase_variant(
    masked: nn.Module,
    train: TensorDataset,
    c: int | Sequence[int],
    spec: Mapping[str, Any],
    seed: int = 0,
    scales: Mapping[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, float], dict[str, Any]]:
    """One variant: (model, {seconds, cpu_seconds}, EraseConfig dict)."""
    from lethe.filters import EraseConfig, erase
    from lethe.models import fit

    lab = ("perturb", "finetune", "finetune_first", "rows", "bias_margin", "from_base")
    opts = {k: v for k, v in spec.items() if k not in lab}
    cfg = EraseConfig(**{"seed": seed, **_ROUND_DEFAULTS, **opts})
    forget = _classes(c)
    keep = ~torch.isin(train.tensors[1], torch.tensor(forget))
    retain = TensorDataset(*(t[keep] for t in train.tensors))
    t, cpu = time.perf_counter(), time.process_time()
    start = masked
    if spec.get("perturb"):
        start = _perturb(masked, float(spec["perturb"]), seed)
    if spec.get("finetune_first"):
        import copy

        start = copy.deepcopy(start).requires_grad_(True)
        fit(start, retain, seed=seed, progress=False, **spec["finetune_first"])
    out, report = erase(start, train, forget, config=cfg, scales=scales)
    if spec.get("rows"):
        _reset_rows(out, forget, str(spec["rows"]), seed)
    if spec.get("finetune"):
        out.requires_grad_(True)
        fit(out, retain, seed=seed, progress=False, **spec["finetune"])
    timing = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu}
    return out.eval(), timing, {**cfg.to_dict(), "extras": report.extras}


# The digits setup of the test fixture (tests/conftest.py), plus the CPU presets' setups, all
# with timm's own ResNet stem (no small-stem adaptation): layer4 runs at 1x1 on these inputs.
_DIGITS = U.Setup(
    "digits", "resnet18", U.Recipe(epochs=10, lr=2e-3, filter_epochs=8), small_stem=False
)
# MNIST at the compare preset's size (300 / 100 images per class), ~10x cheaper than
# bench_unlearning's small-stem mnist_resnet18, so that retraining references fit a shared
# 2-core machine: the erase preset's model, one definition.
_MNIST_TIMM = U.SETUPS["mnist_timm_resnet18"]
# CIFAR-10 at the same size, where the feature probe discriminates (issue 13): a weak base
# model, what 2 CPU cores afford.
_CIFAR_TIMM = U.Setup(
    "cifar10",
    "resnet18",
    U.Recipe(epochs=15, lr=2e-3, filter_epochs=6, augment_flip=True, augment_pad=4),
    small_stem=False,
)


def _digits_data() -> U.Data:
    from lethe.data import Preprocess, load_digits, stratified_split
    from lethe_audit.metrics import ImageSet

    data = load_digits()
    tr, te = stratified_split(data, test_fraction=0.25, seed=0)
    pre = Preprocess((1, 32, 32), (0.5,), (0.5,))
    x_tr, x_te = pre(tr.x), pre(te.x)
    y_tr, y_te = torch.from_numpy(tr.y), torch.from_numpy(te.y)
    return U.Data(
        train=TensorDataset(x_tr, y_tr),
        test=TensorDataset(x_te, y_te),
        train_set=ImageSet(x_tr.numpy(), tr.y, 10),
        test_set=ImageSet(x_te.numpy(), te.y, 10),
        classes=data.classes,
        in_chans=1,
        size=(32, 32),
        digests={"train": tr.digest, "test": te.digest},
    )


def _setup(name: str, preset: U.Preset) -> tuple[U.Setup, U.Recipe, U.Data]:
    if name == "digits":
        U.SETUPS.setdefault("digits", _DIGITS)
        return _DIGITS, _DIGITS.recipe, _digits_data()
    if name == "mnist_timm":
        U.SETUPS.setdefault("mnist_timm", _MNIST_TIMM)
        return _MNIST_TIMM, _MNIST_TIMM.recipe, U.load_data("mnist", preset)
    if name == "cifar10_timm":
        U.SETUPS.setdefault("cifar10_timm", _CIFAR_TIMM)
        return _CIFAR_TIMM, _CIFAR_TIMM.recipe, U.load_data("cifar10", preset)
    setup = U.SETUPS[name]
    return setup, preset.recipe(name), U.load_data(setup.dataset, preset)


def _classes(c: int | Sequence[int]) -> list[int]:
    return [c] if isinstance(c, int) else sorted(int(x) for x in c)


def _label(c: int | Sequence[int]) -> int | list[int]:
    """A row's "class": the id for one class, the sorted list for a set."""
    cs = _classes(c)
    return cs[0] if len(cs) == 1 else cs


def _parse_classes(text: str) -> int | list[int]:
    """``3`` (one class) or ``3+7`` (a set)."""
    try:
        return _label([int(x) for x in text.split("+")])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"class or set like 3 or 3+7, got {text!r}") from exc


def _measure(
    model: nn.Module, c: int | Sequence[int], data: U.Data, base: Any, seeds: int, max_steps: int
) -> dict[str, Any]:
    from lethe.metrics import TorchBackend
    from lethe_audit.metrics import RelearnConfig, evaluate

    r = evaluate(
        TorchBackend(model),
        data.test_set,
        forget=_classes(c),
        base=base,
        train_set=data.train_set,
        relearn=RelearnConfig(seeds=seeds, max_steps=max_steps),
        progress=False,
    )
    assert r.relearn is not None
    return {
        "forget_margin": _margin(model, c, data),
        "forget_acc": r.accuracy.forget_accuracy,
        "retain_acc": r.accuracy.retain_accuracy,
        "probe_auc": None if r.probe is None else r.probe.auc,
        "relearn_steps": r.relearn.model.steps,
        "relearn_runs": [run.steps for run in r.relearn.model_runs],
    }


def _margin(model: nn.Module, c: int | Sequence[int], data: U.Data) -> float:
    """Mean over forgotten-class test images of (best forgotten logit - best other logit):
    how far below the winning class the forgotten classes sit (a hint of a gamed relearn
    time when far more negative than the retrained model's)."""
    x, y = data.test.tensors
    keep = torch.isin(y, torch.tensor(_classes(c)))
    with torch.no_grad():
        z = model.eval()(x[keep]).float()
    mask = torch.zeros(z.shape[1], dtype=torch.bool)
    mask[_classes(c)] = True
    return float((z[:, mask].max(1).values - z[:, ~mask].max(1).values).mean())


def _shift_bias(model: nn.Module, c: int | Sequence[int], data: U.Data, target: float) -> None:
    """Lower the forgotten classes' head biases by the gap between their forget margin and
    ``target`` (a diagnostic of relearn time bought by margin alone)."""
    head = model.get_classifier()  # type: ignore[operator]
    with torch.no_grad():
        head.bias[_classes(c)] -= _margin(model, c, data) - target


def _depth(row: dict[str, Any], ref: Mapping[str, Any]) -> None:
    row["relearn_ratio"] = row["relearn_steps"] / max(ref["relearn_steps"], 1)
    if row["probe_auc"] is not None and ref["probe_auc"] is not None:
        row["probe_gap"] = row["probe_auc"] - ref["probe_auc"]
    row["retain_gap"] = row["retain_acc"] - ref["retain_acc"]
    if row.get("seconds") is not None and ref.get("seconds"):
        row["cost_ratio"] = row["seconds"] / ref["seconds"]
    if row.get("cpu_seconds") is not None and ref.get("cpu_seconds"):
        row["cpu_cost_ratio"] = row["cpu_seconds"] / ref["cpu_seconds"]


def _reference(
    c: int | list[int],
    *,
    name: str,
    setup: U.Setup,
    recipe: U.Recipe,
    data: U.Data,
    cache: Path,
    seed: int = 0,
) -> dict[str, Any]:
    """The model retrained without ``c`` from ``seed`` (cached by setup, recipe, data, classes
    and seed), timed."""
    from safetensors.torch import load_file, save_file

    spec = {"setup": name, "recipe": recipe.base_key(), "data": data.digests, "c": c}
    key = U._key(spec if seed == 0 else {**spec, "seed": seed})  # seed 0: the older caches
    path = cache / f"erase-lab-retrain-{name}-{key}.safetensors"
    torch.manual_seed(0)
    ref_model = setup.make(data.in_chans, data.size, data.num_classes)
    cached = path.exists()
    if cached:
        ref_model.load_state_dict(load_file(str(path)))
        timing = json.loads(path.with_suffix(".json").read_text())
    else:
        t, cpu = time.perf_counter(), time.process_time()
        ref_model = B.retrain(
            lambda: setup.make(data.in_chans, data.size, data.num_classes),
            data.train, _classes(c), seed=seed, **recipe.fit_options(),
        )  # fmt: skip
        timing = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu}
        cache.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in ref_model.state_dict().items()}, str(path))
        path.with_suffix(".json").write_text(json.dumps(timing))
    row = {"model": "retrain", "class": _label(c), **timing, "_model": ref_model}
    row["timing_cached"] = cached  # measured by an earlier run (its load, not this one's)
    return row


def _references(
    c: int | list[int], ref_seeds: int, base: Any, seeds: int, max_steps: int, **where: Any
) -> dict[str, Any]:
    """The reference row: with one retrain its own measurement; with ``ref_seeds`` > 1 the
    retrains from seeds 0, 1, ... pooled (relearn: the median of every run; probe AUC,
    retain accuracy and seconds: the means), each retrain's figures kept in ``refs``: two
    retrains of one recipe differ (MNIST class 3: probe AUC 0.972 and 0.991), which is the
    scale a gap to "the" retrained model has to be read against."""
    each = []
    for k in range(ref_seeds):
        r = _reference(c, seed=k, **where)
        r.update(_measure(r.pop("_model").eval(), c, where["data"], base, seeds, max_steps))
        each.append(r)
    if ref_seeds == 1:
        return each[0]
    runs = [x for r in each for x in r["relearn_runs"]]
    row = {"model": "retrain", "class": _label(c), "relearn_runs": runs}
    row["relearn_steps"] = int(statistics.median(runs))
    for k in ("seconds", "cpu_seconds", "probe_auc", "retain_acc", "forget_acc", "forget_margin"):
        vals = [r[k] for r in each if r.get(k) is not None]
        row[k] = statistics.fmean(vals) if vals else None
    row["timing_cached"] = any(r["timing_cached"] for r in each)
    keep = ("relearn_steps", "relearn_runs", "probe_auc", "retain_acc", "cpu_seconds")
    row["refs"] = [{k: r.get(k) for k in keep} for r in each]
    return row


def run_class(
    c: int | list[int],
    *,
    name: str,
    setup: U.Setup,
    recipe: U.Recipe,
    data: U.Data,
    model: nn.Module,
    bank: Any,
    variants: Sequence[str],
    seeds: int,
    max_steps: int,
    cache: Path,
    refs: Sequence[dict[str, Any]] = (),
    ref_seeds: int = 1,
) -> list[dict[str, Any]]:
    """Rows for one class (or set): retrain reference, masked model, each erase variant.
    ``refs``: earlier retrain and mask rows of this class to reuse instead of re-measuring;
    ``ref_seeds``: retrains pooled into the reference (:func:`_references`)."""
    from lethe.filters import fold

    base = U._Memo(__import__("lethe.metrics", fromlist=["TorchBackend"]).TorchBackend(model))
    forget = _classes(c)
    masked = fold(model, bank, forget)
    old = {r["model"]: dict(r) for r in refs}
    if "retrain" in old and "mask" in old:
        ref, rows = old["retrain"], [old["retrain"], old["mask"]]
        if "forget_margin" not in ref:
            ref_model = _reference(c, name=name, setup=setup, recipe=recipe, data=data, cache=cache)
            ref["forget_margin"] = _margin(ref_model["_model"], c, data)
            rows[1]["forget_margin"] = _margin(masked, c, data)
    else:
        ref = _references(
            c, ref_seeds, base, seeds, max_steps,
            name=name, setup=setup, recipe=recipe, data=data, cache=cache,
        )  # fmt: skip
        rows = [ref]
        t = time.perf_counter()
        fold(model, bank, forget)
        rows.append({"model": "mask", "class": _label(c), "seconds": time.perf_counter() - t})
        rows[-1].update(_measure(masked, c, data, base, seeds, max_steps))
    for v in variants:
        start = model if VARIANTS[v].get("from_base") else masked
        erased, timing, cfg = erase_variant(
            start, data.train, c, VARIANTS[v], scales=bank.scales(forget)
        )
        if VARIANTS[v].get("bias_margin") is not None:
            _shift_bias(erased, c, data, float(VARIANTS[v]["bias_margin"]))
        row = {"model": v, "class": _label(c), **timing, "config": cfg}
        row["spec"] = VARIANTS[v]
        row.update(_measure(erased, c, data, base, seeds, max_steps))
        _depth(row, ref)
        print(json.dumps({k: v for k, v in row.items() if k not in ("config", "spec")}), flush=True)
        rows.append(row)
    _depth(rows[1], ref)
    return rows


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: median relearn ratio, worst ratio, mean probe gap, worst forget, mean
    retain gap to retrain, mean cost ratio."""
    out: dict[str, dict[str, Any]] = {}
    for m in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == m]

        def vals(k: str, rs: list[Mapping[str, Any]] = rs) -> list[float]:
            return [float(r[k]) for r in rs if r.get(k) is not None]

        s: dict[str, Any] = {"classes": [r["class"] for r in rs]}
        if vals("relearn_ratio"):
            s["relearn_ratio_median"] = statistics.median(vals("relearn_ratio"))
            s["relearn_ratio_min"] = min(vals("relearn_ratio"))
        s["relearn_steps"] = vals("relearn_steps")
        keys = ("probe_gap", "retain_gap", "cost_ratio", "cpu_cost_ratio", "probe_auc", "seconds")
        for k in keys:
            if vals(k):
                s[f"{k}_mean"] = statistics.fmean(vals(k))
        s["forget_acc_max"] = max(vals("forget_acc"))
        out[m] = s
    return out


def _cls(c: Any) -> str:
    return "+".join(str(x) for x in c) if isinstance(c, list) else str(c)


def table(result: Mapping[str, Any], models: Sequence[str] | None = None) -> str:
    """Markdown: one row per model with, per class (or set), relearn steps (3 seeds) and the
    ratio to the retrained model, then the summary columns (the docs' deep-deletion tables)."""
    rows = result["rows"]
    classes = list(dict.fromkeys(_cls(r["class"]) for r in rows))
    names = models or list(dict.fromkeys(r["model"] for r in rows))
    summary = summarise([r for r in rows if r["model"] in names])
    head = "| model | " + " | ".join(f"class {c}: steps (ratio)" for c in classes)
    head += " | ratio median (worst) | forget max | retain gap mean | probe gap mean |"
    head += " margin mean | s / retrain | CPU s / retrain |"
    out = [head, "|---" * (len(classes) + 8) + "|"]
    for m in names:
        by = {_cls(r["class"]): r for r in rows if r["model"] == m}
        cells = []
        for c in classes:
            r = by.get(c)
            if r is None:
                cells.append("–")
                continue
            runs = ", ".join(str(x) for x in r.get("relearn_runs", []))
            ratio = "" if m == "retrain" else f" **{r.get('relearn_ratio', 0):.2f}**"
            cells.append(f"{r['relearn_steps']} ({runs}){ratio}")
        s = summary[m]
        margins = [r["forget_margin"] for r in by.values() if r.get("forget_margin") is not None]

        def f(key: str, fmt: str, scale: float = 1.0, s: Mapping[str, Any] = s) -> str:
            v = s.get(key)
            return "–" if v is None else format(v * scale, fmt)

        out.append(
            f"| {m} | " + " | ".join(cells)
            + f" | {f('relearn_ratio_median', '.2f')} ({f('relearn_ratio_min', '.2f')})"
            + f" | {f('forget_acc_max', '.1f', 100)} % | {f('retain_gap_mean', '+.1f', 100)}"
            + f" | {f('probe_gap_mean', '+.3f')}"
            + f" | {statistics.fmean(margins) if margins else float('nan'):+.1f}"
            + f" | {f('cost_ratio_mean', '.2f')} | {f('cpu_cost_ratio_mean', '.2f')} |"
        )  # fmt: skip
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", default="digits")
    p.add_argument("--preset", default="compare", help="bench_unlearning preset for data sizes")
    p.add_argument(
        "--classes", type=_parse_classes, nargs="+", default=[0, 3, 5], help="3 or a set 3+7"
    )
    p.add_argument("--variants", nargs="*", default=["top1"], choices=sorted(VARIANTS))
    p.add_argument("--relearn-seeds", type=int, default=3)
    p.add_argument("--relearn-max-steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=CACHE, help="base-model / bank / retrain cache")
    p.add_argument("--fixture", type=Path, default=None, help="digits: a trained test fixture dir")
    p.add_argument(
        "--reuse-refs", action="store_true", help="keep the JSON's retrain / mask rows of a class"
    )
    p.add_argument(
        "--ref-seeds", type=int, default=1, help="retrains (seeds 0..N-1) pooled as the reference"
    )
    p.add_argument("--table", type=Path, default=None, help="run nothing: print JSON's table")
    a = p.parse_args(argv)
    if a.table is not None:
        res = json.loads(a.table.read_text())
        print(table(res))
        return dict(res)
    preset = U.PRESETS[a.preset]
    setup, recipe, data = _setup(a.setup, preset)
    if a.fixture is not None:
        # The test suite's trained digits model and bank (same recipe and split as _DIGITS).
        from lethe import model_digest
        from lethe.filters import FilterBank
        from lethe.models import load_checkpoint

        model, _ = load_checkpoint(a.fixture / "model.safetensors")
        bank = FilterBank.load(a.fixture / "bank.safetensors", model)
        info = {"digest": model_digest(model), "fixture": str(a.fixture)}
    else:
        model, info = U.base_model(a.setup, recipe, data, seed=0, cache=a.cache, progress=False)
        bank, _ = U.train_lethe(
            a.setup, model, data, recipe, base_digest=info["digest"], seed=0, cache=a.cache,
            progress=False,
        )  # fmt: skip
    out = a.out or RESULTS_DIR / f"erase-lab-{a.setup}.json"
    old = json.loads(out.read_text()) if out.exists() else {"rows": []}
    rows = [r for r in old["rows"] if r["model"] not in a.variants or r["class"] not in a.classes]
    for c in a.classes:
        refs = [r for r in rows if r["class"] == c and r["model"] in ("retrain", "mask")]
        new = run_class(
            c, name=a.setup, setup=setup, recipe=recipe, data=data, model=model, bank=bank,
            variants=a.variants, seeds=a.relearn_seeds, max_steps=a.relearn_max_steps,
            cache=a.cache, refs=refs if a.reuse_refs else (), ref_seeds=a.ref_seeds,
        )  # fmt: skip
        rows = [r for r in rows if not (r["class"] == c and r["model"] in ("retrain", "mask"))]
        rows += new
        result = {"setup": a.setup, "base": info, "machine": machine(), "rows": rows}
        result["summary"] = summarise(rows)
        out.write_text(json.dumps(result, indent=1, default=str))
        for r in new[:2]:
            print(json.dumps(r, default=str), flush=True)
    print(json.dumps(result["summary"], indent=1))
    return result


if __name__ == "__main__":
    main()
