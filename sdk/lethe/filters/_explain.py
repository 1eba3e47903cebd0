"""Which channels serve which class: heatmaps of alpha and the class-by-class overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lethe.errors import ConfigError
from lethe.filters._bank import FilterBank

__all__ = ["ExplainResult", "channel_overlap", "explain", "suppression_by_layer"]


def _suppressed(bank: FilterBank, threshold: float) -> dict[str, npt.NDArray[np.bool_]]:
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")
    return {n: (a.numpy() < threshold) for n, a in bank.alpha.items()}


def suppression_by_layer(bank: FilterBank, *, threshold: float = 0.5) -> npt.NDArray[np.float64]:
    """``[num_classes, num_layers]``: share of each layer's channels a class's row suppresses."""
    sup = _suppressed(bank, threshold)
    return np.stack([sup[n].mean(axis=1) for n in bank.target_names], axis=1).astype(np.float64)


def channel_overlap(bank: FilterBank, *, threshold: float = 0.5) -> npt.NDArray[np.float64]:
    """``[num_classes, num_classes]`` Jaccard overlap of the channels each class suppresses.

    High overlap between two classes means their filters switch off the same channels, so
    the representation the model uses for them is shared.
    """
    sup = np.concatenate([s for s in _suppressed(bank, threshold).values()], axis=1)
    inter = sup.astype(np.float64) @ sup.T.astype(np.float64)
    sizes = sup.sum(axis=1).astype(np.float64)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    np.fill_diagonal(out, np.where(sizes > 0, 1.0, 0.0))
    return out


@dataclass(frozen=True)
class ExplainResult:
    """Paths of the written figures and the numbers behind them."""

    layer_figures: dict[str, Path]
    summary_figure: Path
    overlap_figure: Path
    suppression: npt.NDArray[np.float64]
    overlap: npt.NDArray[np.float64]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def explain(
    bank: FilterBank,
    out_dir: str | Path,
    *,
    classes: list[int] | None = None,
    layers: list[str] | None = None,
    threshold: float = 0.5,
    class_labels: bool = True,
) -> ExplainResult:
    """Write PNG heatmaps of alpha per layer (rows: classes), a class x layer summary of
    suppressed channels, and the class-overlap matrix, into ``out_dir``.

    ``class_labels=False`` labels classes by id only: class names can be personal data (people
    in face recognition), so figures that leave the organisation (auditor bundles) omit them.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(bank.forget_set(classes)) if classes is not None else list(range(bank.num_classes))
    names = list(layers) if layers is not None else list(bank.target_names)
    unknown = [n for n in names if n not in bank.target_names]
    if unknown:
        raise ConfigError(f"unknown layers {unknown}; the bank filters {list(bank.target_names)}")

    def label(c: int) -> str:
        return f"{c}: {bank.class_names[c]}" if class_labels else f"class {c}"

    labels = [label(c) for c in rows]
    alpha = bank.alpha
    figs: dict[str, Path] = {}
    for name in names:
        a = alpha[name].numpy()[rows]
        fig, ax = plt.subplots(figsize=(min(14, 2 + a.shape[1] / 24), 1 + 0.3 * len(rows)))
        im = ax.imshow(
            a, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.set_xlabel("output channel")
        ax.set_title(f"alpha of {name} (1 = keep, 0 = switched off)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03)
        fig.tight_layout()
        p = out / f"alpha_{_safe(name)}.png"
        fig.savefig(p, dpi=90, metadata={"Software": None})
        plt.close(fig)
        figs[name] = p

    sup = suppression_by_layer(bank, threshold=threshold)
    fig, ax = plt.subplots(
        figsize=(min(16, 3 + 0.35 * len(bank.target_names)), 1.2 + 0.3 * len(rows))
    )
    im = ax.imshow(
        sup[rows], aspect="auto", cmap="magma", vmin=0.0, vmax=max(0.05, float(sup.max()))
    )
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xticks(range(len(bank.target_names)), list(bank.target_names), rotation=90, fontsize=6)
    ax.set_title(f"share of channels suppressed (alpha < {threshold}) per layer", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    summary = out / "alpha_summary.png"
    fig.savefig(summary, dpi=90, metadata={"Software": None})
    plt.close(fig)

    ov = channel_overlap(bank, threshold=threshold)
    fig, ax = plt.subplots(figsize=(2 + 0.4 * bank.num_classes, 1.5 + 0.4 * bank.num_classes))
    im = ax.imshow(ov, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = [f"{i}" for i in range(bank.num_classes)]
    ax.set_xticks(range(bank.num_classes), ticks, fontsize=7)
    ax.set_yticks(range(bank.num_classes), [label(i) for i in range(bank.num_classes)], fontsize=7)
    ax.set_title("overlap of suppressed channels (Jaccard)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    overlap = out / "channel_overlap.png"
    fig.savefig(overlap, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return ExplainResult(figs, summary, overlap, sup, ov)
