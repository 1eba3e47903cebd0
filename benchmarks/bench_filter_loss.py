"""Filter-training losses on weak models (issue 13, "weak models" bullet).

Trains one filter bank per loss variant on the same base model (same seed, same epochs) and
measures, like the unlearning benchmark's coverage, forget accuracy and retain drop against
the base model on every single class and on seeded sets of 2, 3 and 5 classes:

    python -m benchmarks.bench_filter_loss --setup cnn-quick --variants default margin
    python -m benchmarks.bench_filter_loss --setup cnn-full --variants default margin
    python -m benchmarks.bench_filter_loss --setup resnet18-digits --variants default margin

Setups: ``cnn-quick`` is the ``quick`` preset's MNIST plain CNN (500 / 200 images per class);
``cnn-full`` the same CNN on whole MNIST (the GPU preset's data, trained here on the CPU);
``resnet18-digits`` the test suite's digits ResNet-18 fixture recipe; ``vit-filters`` the
``filters`` preset's small MNIST ViT (300 / 100 images per class, the base model that preset
and ``bench_erase --setup mnist_vit --preset filters`` cache). Variants are
:class:`lethe.filters.TrainConfig` options on top of the setup's own filter options.
"""

from __future__ import annotations

import argparse
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
import torch
from torch import nn
from torch.utils.data import TensorDataset

from benchmarks._common import CACHE, RESULTS_DIR, machine

__all__ = ["SETUPS", "VARIANTS", "main", "run"]

#: Named TrainConfig options; each is applied on top of the setup's filter options.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "per-sample-inverse": {"forget_loss": "per-sample-inverse"},
    "margin": {"forget_loss": "margin"},
    "margin-m3": {"forget_loss": "margin", "forget_margin": 3.0},
    "retain-set-1": {"retain_set_weight": 1.0},
    "set-power-1": {"set_size_power": 1.0},
    "margin+retain-set-1": {"forget_loss": "margin", "retain_set_weight": 1.0},
    "margin+set-power-1": {"forget_loss": "margin", "set_size_power": 1.0},
    "psi+retain-set-1": {"forget_loss": "per-sample-inverse", "retain_set_weight": 1.0},
    "margin-fw1": {"forget_loss": "margin", "forget_weight": 1.0},
    "margin+set-power-2": {"forget_loss": "margin", "set_size_power": 2.0},
    "margin+set-power-0.5": {"forget_loss": "margin", "set_size_power": 0.5},
    "margin+retain-set-0.5": {"forget_loss": "margin", "retain_set_weight": 0.5},
    "margin+retain-set-1+fw4": {
        "forget_loss": "margin",
        "retain_set_weight": 1.0,
        "forget_weight": 4.0,
    },
}

SETUPS = ("cnn-quick", "cnn-full", "resnet18-digits", "vit-filters")


def _predict(model: nn.Module, x: torch.Tensor) -> np.ndarray[Any, Any]:
    from lethe.models import predict

    return predict(model, x, batch_size=512).argmax(1).numpy()


def _preset_model(
    setup: str, cache: Path, progress: bool
) -> tuple[nn.Module, TensorDataset, TensorDataset, dict[str, Any], list[list[int]]]:
    from benchmarks._unlearning_methods import base_model
    from benchmarks._unlearning_setups import PRESETS, forget_sets, load_data

    name = "mnist_vit" if setup == "vit-filters" else "mnist_cnn"
    preset = PRESETS["filters" if setup == "vit-filters" else "quick"]
    if setup == "cnn-full":
        preset = replace(preset, train_per_class=None, test_per_class=None)
    recipe = preset.recipe(name)
    data = load_data("mnist", preset)
    model, info = base_model(name, recipe, data, seed=preset.seed, cache=cache, progress=progress)
    sets = [[c] for c in range(10)] + forget_sets(10, preset, 10, salt=2)
    opts = {"epochs": recipe.filter_epochs, "seed": preset.seed, **dict(recipe.filter_options)}
    meta = {"base": info, "filter_options": opts, "train": len(data.train), "test": len(data.test)}
    return model, data.train, data.test, meta, sets


def _digits(
    cache: Path, model_path: Path | None = None
) -> tuple[nn.Module, TensorDataset, TensorDataset, dict[str, Any], list[list[int]]]:
    """The tests' digits fixture: resnet18 32x32, 10 epochs, 75 / 25 split, seed 0."""
    from safetensors.torch import load_file, save_file

    from benchmarks._unlearning_setups import PRESETS, forget_sets
    from lethe.data import load_digits, stratified_split, to_dataset
    from lethe.models import ModelSpec, create_model, fit

    spec = ModelSpec("resnet18", 10, in_chans=1, input_size=(32, 32))
    tr, te = stratified_split(load_digits(), test_fraction=0.25, seed=0)
    train_ds, test_ds = to_dataset(tr, spec.preprocess), to_dataset(te, spec.preprocess)
    torch.manual_seed(0)
    model = create_model(spec, seed=0)
    path = cache / "filter-loss-digits-resnet18.safetensors"
    if model_path is not None:
        # The tests' fixture model (tests/conftest.py, same recipe), saved by lethe.models.
        from lethe.models import load_checkpoint

        model, _ = load_checkpoint(model_path)
        info: dict[str, Any] = {"cached": True, "from": str(model_path)}
    elif path.exists():
        model.load_state_dict(load_file(str(path)))
        info = {"cached": True}
    else:
        t = time.perf_counter()
        fit(model, train_ds, epochs=10, lr=2e-3, seed=0, progress=False)
        info = {"cached": False, "train_seconds": time.perf_counter() - t}
        cache.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    model.eval()
    sets = [[c] for c in range(10)] + forget_sets(10, PRESETS["quick"], 10, salt=2)
    meta = {"base": info, "filter_options": {"epochs": 8, "seed": 0}, "train": len(train_ds),
            "test": len(test_ds)}  # fmt: skip
    return model, train_ds, test_ds, meta, sets


def _coverage(
    model: nn.Module, bank: Any, test: TensorDataset, sets: Sequence[Sequence[int]]
) -> list[dict[str, Any]]:
    from lethe.filters import fold

    x, y = test.tensors
    y_np = y.numpy()
    base = _predict(model, x)
    rows = []
    for forget in sets:
        pred = _predict(fold(model, bank, forget), x)
        gone = np.isin(y_np, list(forget))
        rows.append(
            {
                "forget": list(forget),
                "forget_acc": float((pred[gone] == y_np[gone]).mean()),
                "retain_acc": float((pred[~gone] == y_np[~gone]).mean()),
                "base_retain_acc": float((base[~gone] == y_np[~gone]).mean()),
                "retain_drop": float((base[~gone] == y_np[~gone]).mean())
                - float((pred[~gone] == y_np[~gone]).mean()),
                "per_class": [float((pred[y_np == c] == c).mean()) for c in range(10)],
            }
        )
    return rows


def _summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sorted({len(r["forget"]) for r in rows}):
        sub = [r for r in rows if len(r["forget"]) == size]
        f = [r["forget_acc"] for r in sub]
        d = [r["retain_drop"] for r in sub]
        out[str(size)] = {
            "n": len(sub),
            "forget_mean": statistics.fmean(f),
            "forget_worst": max(f),
            "retain_drop_mean": statistics.fmean(d),
            "retain_drop_worst": max(d),
        }
    return out


def run(
    setup: str,
    variants: Sequence[str],
    *,
    cache: Path = CACHE,
    progress: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    save: Callable[[dict[str, Any]], None] = lambda _r: None,
    digits_model: Path | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    from lethe.filters import FilterBank, train

    if setup == "resnet18-digits":
        model, train_ds, test_ds, meta, sets = _digits(cache, digits_model)
    else:
        model, train_ds, test_ds, meta, sets = _preset_model(setup, cache, progress)
    if seed is not None:
        meta["filter_options"] = {**meta["filter_options"], "seed": seed}
    x, y = test_ds.tensors
    result: dict[str, Any] = {
        "benchmark": "filter-loss",
        "setup": setup,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine("timm", "lethe"),
        "base_test_acc": float((_predict(model, x) == y.numpy()).mean()),
        **meta,
        "variants": {},
    }
    for name in variants:
        opts = {**meta["filter_options"], **VARIANTS[name]}
        log(f"[{setup}] {name}: {opts}")
        t = time.perf_counter()
        bank = train(model, FilterBank.init(model, 10), train_ds, progress=progress, **opts)
        seconds = time.perf_counter() - t
        rows = _coverage(model, bank, test_ds, sets)
        summ = _summary(rows)
        result["variants"][name] = {
            "options": opts, "round_seconds": seconds, "summary": summ, "coverage": rows
        }  # fmt: skip
        log(f"[{setup}] {name}: {seconds:.0f} s " + "; ".join(
            f"{k}: f {v['forget_mean']:.3f}/{v['forget_worst']:.3f} "
            f"d {v['retain_drop_mean']:.3f}/{v['retain_drop_worst']:.3f}" for k, v in summ.items()
        ))  # fmt: skip
        save(result)
    return result


def table(result: Mapping[str, Any]) -> str:
    """A Markdown table: per variant and set size, forget mean / worst and retain drop mean /
    worst in % / points against the base model."""
    sizes = sorted({k for v in result["variants"].values() for k in v["summary"]}, key=int)
    head = "| variant | round s | " + " | ".join(
        f"{'single' if k == '1' else k + ' classes'}: forget / drop" for k in sizes
    )
    lines = [head + " |", "|---|---|" + "---|" * len(sizes)]
    for name, v in result["variants"].items():
        cells = []
        for k in sizes:
            s = v["summary"][k]
            cells.append(
                f"{100 * s['forget_mean']:.1f} / {100 * s['forget_worst']:.1f} · "
                f"{100 * s['retain_drop_mean']:.1f} / {100 * s['retain_drop_worst']:.1f}"
            )
        lines.append(f"| {name} | {v['round_seconds']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--setup", choices=SETUPS, default="cnn-quick")
    ap.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--digits-model", type=Path, default=None, help="a trained fixture model")
    ap.add_argument("--seed", type=int, default=None, help="filter-training seed (default 0)")
    ap.add_argument(
        "--table", nargs="+", type=Path, default=None, metavar="JSON",
        help="run nothing: print the Markdown table of these result files",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.table:
        for path in args.table:
            result = json.loads(path.read_text())
            print(f"{result['setup']} (base {100 * result['base_test_acc']:.1f} %)\n")
            print(table(result) + "\n")
        return {}
    out = args.out or RESULTS_DIR / f"filters-loss-{args.setup}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(result: Mapping[str, Any]) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        tmp.replace(out)

    result = run(
        args.setup, args.variants, cache=args.cache, save=write,
        digits_model=args.digits_model, seed=args.seed,
    )  # fmt: skip
    write(result)
    return result


if __name__ == "__main__":
    main()
