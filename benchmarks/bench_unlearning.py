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
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from benchmarks._common import CACHE, DOCS, REPO_ROOT, RESULTS_DIR, machine, update_docs
from benchmarks._unlearning_methods import (
    METHOD_RUNNERS,
    MethodContext,
    _device,
    base_model,
    run_method,
    train_lethe,
)
from benchmarks._unlearning_methods import _key as _key
from benchmarks._unlearning_report import _max, _mean, plot, section
from benchmarks._unlearning_setups import (
    METHODS,
    PER_CLASS_METHODS,
    PRESETS,
    SET_SIZES,
    SETUPS,
    Data,
    Preset,
    Recipe,
    Setup,
    SmallCNN,
    forget_sets,
    load_data,
    sampled_singles,
)
from lethe_audit.errors import BackendError

# Configuration, methods and the report writer live in _unlearning_{setups,methods,report}.py;
# their names are re-exported here (the benchmark's public surface is this module).
__all__ = [
    "METHODS", "METHOD_RUNNERS", "PER_CLASS_METHODS", "PRESETS", "SETUPS", "SET_SIZES", "Data",
    "Deadline", "MethodContext", "Preset", "Recipe", "Setup", "SmallCNN", "base_model",
    "forget_sets", "load_data", "main", "merge", "plot", "run", "run_method", "run_setup",
    "sampled_singles", "section", "train_lethe",
]  # fmt: skip

FIGURES = REPO_ROOT / "docs" / "figures"


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
        ctx = MethodContext(name, model, bank, data, recipe, preset.seed)
        out["lethe_coverage"] = _coverage(ctx, preset, base_pred)
        _finish(out, {}, data.num_classes, [])
        save(out)
    ctx = MethodContext(name, model, bank, data, recipe, preset.seed)
    _compare(ctx, preset, out, base, log=log, deadline=deadline, save=save)
    return out


def _coverage(
    ctx: MethodContext, preset: Preset, base_pred: npt.NDArray[np.int64]
) -> list[dict[str, Any]]:
    """Lethe on every single class and on seeded sets: forget / retain accuracy vs base."""
    data = ctx.data
    x_test, y_test = data.test.tensors
    y_np = y_test.numpy()
    cover: list[dict[str, Any]] = []
    sets = [[c] for c in range(data.num_classes)]
    sets += forget_sets(data.num_classes, preset, preset.lethe_sets_per_size, salt=2)
    for forget in sets:
        folded, seconds = run_method(
            "lethe", forget, name=ctx.name, model=ctx.model, bank=ctx.bank, data=data,
            recipe=ctx.recipe, seed=ctx.seed,
        )  # fmt: skip
        f_acc, r_acc = _accuracy_pair(_predictions(folded, x_test), y_np, forget)
        bf, br = _accuracy_pair(base_pred, y_np, forget)
        cover.append(
            {"forget": forget, "forget_acc": f_acc, "retain_acc": r_acc,
             "base_forget_acc": bf, "base_retain_acc": br, "retain_drop": br - r_acc,
             "fold_seconds": seconds}
        )  # fmt: skip
    return cover


def _compare(
    ctx: MethodContext,
    preset: Preset,
    out: dict[str, Any],
    base: _Memo,
    *,
    log: Callable[[str], None],
    deadline: Deadline,
    save: Callable[[dict[str, Any]], None],
) -> None:
    """Every method on the sampled single classes and sets, all §4 metrics, into ``out``."""
    name, data = ctx.name, ctx.data
    dataset = SETUPS[name].dataset
    singles = sampled_singles(data.num_classes, preset, dataset)
    if preset.singles == 0:
        singles = []
    compare_sets = [[c] for c in singles]
    if preset.singles != 0:
        compare_sets += forget_sets(data.num_classes, preset, preset.sets_per_size, salt=3)
    k, n = preset.shard
    compare_sets = compare_sets[k::n]
    out["singles"] = list(singles)
    if n > 1:
        out["shard"] = [k, n]
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
                method, forget, name=name, model=ctx.model, bank=ctx.bank, data=data,
                recipe=ctx.recipe, seed=ctx.seed,
            )  # fmt: skip
            try:
                row = _summary(_evaluate(unlearned, forget, data, base, preset), seconds)
            except BackendError as exc:  # a baseline that diverged: say so, go on
                log(f"[{name}] {method} forget {forget}: {exc}")
                out.setdefault("diverged", []).append(f"{method} {forget}: {exc}")
                continue
            comparison.setdefault(method, []).append(row)
            _finish(out, comparison, data.num_classes, singles)
            save(out)
    if skipped:
        out["skipped_at_deadline"] = skipped
    _finish(out, comparison, data.num_classes, singles)


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
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Run a preset (optionally restricted to some setups and methods, and to one ``shard``
    (k, n) of its forget sets); returns the results.

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
    if not 0 <= shard[0] < shard[1]:
        raise SystemExit(f"--shard K/N needs 0 <= K < N, got {shard[0]}/{shard[1]}")
    preset = replace(preset, shard=shard)
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
            "shard": list(preset.shard),
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


def _join_shards(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """One setup's result from two shards of its forget sets (same base model): the
    comparison rows of both, the derived gaps, cost and targets recomputed."""
    if a["base"]["digest"] != b["base"]["digest"]:
        raise SystemExit("cannot join shards of one setup trained from different base models")
    out = copy.deepcopy(dict(a))
    comparison = copy.deepcopy(dict(a.get("comparison", {})))
    for method, rows in b.get("comparison", {}).items():
        seen = {tuple(r["forget"]) for r in comparison.get(method, [])}
        comparison.setdefault(method, []).extend(
            copy.deepcopy(r) for r in rows if tuple(r["forget"]) not in seen
        )
    skipped = [*a.get("skipped_at_deadline", []), *b.get("skipped_at_deadline", [])]
    out.pop("skipped_at_deadline", None)
    if skipped:
        out["skipped_at_deadline"] = skipped
    out["shard"] = "joined"
    _finish(out, comparison, len(out["base"]["per_class"]), out.get("singles", []))
    return out


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
        for name, setup in r["setups"].items():
            old = merged["setups"].get(name)
            if old is not None and "shard" in old and "shard" in setup:
                merged["setups"][name] = _join_shards(old, setup)
            else:
                merged["setups"][name] = copy.deepcopy(setup)
        merged["wall_seconds"] += r["wall_seconds"]
    # A setup one run skipped but a later run did is not missing from the merge.
    skipped = {s for r in results for s in r.get("skipped_at_deadline", [])}
    merged.pop("skipped_at_deadline", None)
    if skipped - set(merged["setups"]):
        merged["skipped_at_deadline"] = sorted(skipped - set(merged["setups"]))
    return merged


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"shard like 0/3, got {text!r}") from exc
    return k, n


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
        "--shard", type=_shard, default=(0, 1), metavar="K/N",
        help="compare only forget sets K, K+N, K+2N, ... (parallel runs sharing --cache)",
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
            shard=args.shard,
        )  # fmt: skip
    write(result)
    if not args.no_docs:
        figures = plot(result, args.figures)
        update_docs(args.docs, f"unlearning-{args.preset}", section(result, figures))
    return result


if __name__ == "__main__":
    main()
