"""bench_unlearning's report writer: PNG plots and the Markdown section of docs/benchmarks.md,
from a result JSON."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._unlearning_setups import METHODS

__all__ = ["plot", "section"]


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(statistics.fmean(vals)) if vals else None


def _max(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(max(vals)) if vals else None


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


def _header_lines(result: Mapping[str, Any]) -> list[str]:
    """The section title and how the runs were made."""
    m, st = result["machine"], result["settings"]
    lines = [
        f"## Unlearning: `--preset {result['preset']}`",
        "",
        f"`python -m benchmarks.bench_unlearning --preset {result['preset']}` "
        f"(results: `benchmarks/results/unlearning-{result['preset']}.json`, "
        f"{_duration(result)} on {result['device']}). "
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
    return lines


def _duration(result: Mapping[str, Any]) -> str:
    """A run's minutes; for a merge of runs that overlapped in time (parallel shards), also
    the span from the first start to the last end."""
    total = f"{result['wall_seconds'] / 60:.0f} min"
    parts = result.get("parts", [])
    if len(parts) < 2:
        return total
    start = [datetime.strptime(p["date"], "%Y-%m-%dT%H:%M:%SZ") for p in parts]
    end = [t + timedelta(seconds=p["wall_seconds"]) for t, p in zip(start, parts, strict=True)]
    span = (max(end) - min(start)).total_seconds()
    if span >= result["wall_seconds"] - 60:
        return total
    return f"{total} of runs, {span / 60:.0f} min from the first start to the last end,"


def section(result: Mapping[str, Any], figures: Sequence[Path]) -> str:
    """The preset's Markdown section of ``docs/benchmarks.md``."""
    lines = _header_lines(result)
    for name, s in result["setups"].items():
        lines += _setup_lines(name, s)
        for p in figures:
            if f"-{name}-" in p.name:
                lines += ["", f"![{name}: per-class forget / retain](figures/{p.name})"]
    for p in figures:
        if p.name.endswith("cost-quality.png"):
            lines += ["", f"![cost vs quality](figures/{p.name})"]
    return "\n".join(lines)


def _setup_lines(name: str, s: Mapping[str, Any]) -> list[str]:
    """One setup's subsection: base model, coverage, comparison, depth, cost."""
    b = s["base"]
    lines = ["", f"### {name} ({s['dataset']}, {s['backbone']})", ""]
    lines.append(
        f"Base model: test accuracy {_pct(b['test_acc'])} %, recipe "
        f"{s['recipe']['epochs']} epochs, lr {s['recipe']['lr']:g}"
        + (f", trained in {b['train_seconds']:.0f} s" if "train_seconds" in b else "")
        + f"; {s['train_samples']} train / {s['test_samples']} test images."
    )
    t = s.get("targets", {})
    lines += _coverage_lines(s, t)
    lines += _comparison_lines(s)
    lines += _depth_lines(s)
    lines += _cost_lines(s, t)
    return lines


def _coverage_lines(s: Mapping[str, Any], t: Mapping[str, Any]) -> list[str]:
    """Lethe's one round: epoch ratio and forget / retain per set size."""
    lines: list[str] = []
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
    return lines


def _comparison_lines(s: Mapping[str, Any]) -> list[str]:
    """The every-method table on the same forget sets."""
    lines: list[str] = []
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
    return lines


def _cost_lines(s: Mapping[str, Any], t: Mapping[str, Any]) -> list[str]:
    """Cost against the per-class methods, apply time, Lethe's gaps to retrain."""
    lines: list[str] = []
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
    return lines
