"""One call for an apply: fold, patch (or re-export), check parity."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnx
from torch import nn

from lethe._digest import model_digest
from lethe.errors import ConfigError, ExportMappingError
from lethe.export._base import BaseExport
from lethe.export._parity import DEFAULT_PARITY_THRESHOLD, ParityReport, check_parity
from lethe.export._patch import patch, reexport
from lethe.filters import FilterBank, fold

__all__ = ["ExportConfig", "FilteredExport", "export_filtered"]


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`export_filtered`.

    ``parity_threshold`` bounds max |Δlogit| between the folded torch model and the ONNX
    model; ``allow_reexport`` lets a missing or stale base export fall back to a full
    re-export instead of failing; ``optimize`` runs the onnxscript optimiser (keep it on:
    the unoptimised graph runs several times slower in onnxruntime).
    """

    parity_threshold: float = DEFAULT_PARITY_THRESHOLD
    parity_batch_size: int = 64
    optimize: bool = True
    allow_reexport: bool = True

    def __post_init__(self) -> None:
        if not (self.parity_threshold >= 0 and np.isfinite(self.parity_threshold)):
            raise ConfigError(
                f"parity_threshold must be a finite number >= 0, got {self.parity_threshold}"
            )
        if self.parity_batch_size < 1:
            raise ConfigError(f"parity_batch_size must be >= 1, got {self.parity_batch_size}")


@dataclass(frozen=True)
class FilteredExport:
    """The checked ONNX model for one forget set, and how it was made."""

    model: onnx.ModelProto = field(repr=False)
    folded: nn.Module = field(repr=False)
    forget: tuple[int, ...]
    base_digest: str
    folded_digest: str
    method: Literal["patch", "reexport"]
    parity: ParityReport
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "forget": list(self.forget),
            "base_digest": self.base_digest,
            "folded_digest": self.folded_digest,
            "method": self.method,
            "parity": self.parity.to_dict(),
            "seconds": self.seconds,
        }


def export_filtered(
    model: nn.Module,
    bank: FilterBank,
    forget: Iterable[int] | int,
    *,
    parity_inputs: Any,
    base: BaseExport | None = None,
    input_shape: tuple[int, int, int] | None = None,
    config: ExportConfig | None = None,
) -> FilteredExport:
    """Fold ``forget`` into ``model``, produce its ONNX model and prove parity.

    With a ``base`` export of ``model`` the ONNX model is made by patching initializers (no
    re-trace); without one (or with a base of another model, when
    ``config.allow_reexport``) the folded model is exported again. Either way the result is
    optimised, stripped of local information, full-checked and compared with the folded
    torch model on ``parity_inputs`` (real, preprocessed float32 images ``[N, C, H, W]``).
    """
    cfg = config or ExportConfig()
    start = time.perf_counter()
    ids = bank.forget_set(forget)
    folded = fold(model, bank, ids)
    base_digest = "sha256:" + model_digest(model)
    usable = base is not None
    if base is not None:
        problem = None
        if base.base_digest != base_digest:
            problem = (
                f"the base export was made from model {base.base_digest[:23]}..., "
                f"not from {base_digest[:23]}..."
            )
        elif missing := sorted(set(bank.target_names) - set(base.layers)):
            problem = f"the base export cannot patch layers {missing[:5]}"
        if problem is not None:
            if not cfg.allow_reexport:
                raise ExportMappingError(
                    f"{problem}; export the base model again (lethe.export.export_base) or "
                    "allow the re-export fallback"
                )
            usable = False
    if usable and base is not None:
        proto = patch(base, bank.scales(ids), optimize=cfg.optimize)
        method: Literal["patch", "reexport"] = "patch"
    else:
        shape = input_shape or (base.input_shape if base is not None else _model_input(model))
        names = {"input_name": base.input_name, "output_name": base.output_name} if base else {}
        proto = reexport(folded, input_shape=shape, optimize=cfg.optimize, **names)
        method = "reexport"
    report = check_parity(
        proto,
        folded,
        parity_inputs,
        threshold=cfg.parity_threshold,
        batch_size=cfg.parity_batch_size,
    )
    return FilteredExport(
        model=proto,
        folded=folded,
        forget=ids,
        base_digest=base_digest,
        folded_digest="sha256:" + model_digest(folded),
        method=method,
        parity=report,
        seconds=time.perf_counter() - start,
    )


def _model_input(model: nn.Module) -> tuple[int, int, int]:
    from lethe.data import Preprocess

    try:
        c, h, w = Preprocess.from_model(model).input_size
    except Exception as exc:
        raise ConfigError(
            "cannot tell the model's input shape; pass input_shape=(C, H, W)"
        ) from exc
    return (c, h, w)
