"""Per-deletion patching of a base export (and the re-export fallback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from torch import nn

from lethe.errors import PatchError
from lethe.export._base import BaseExport, torch_export
from lethe.export._proto import check_model, copy_model, strip_local_info

__all__ = ["finalize", "patch", "reexport"]


def _as_vector(name: str, s: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    if hasattr(s, "detach") and hasattr(s, "cpu"):
        s = s.detach().to("cpu").float().numpy()
    arr = np.asarray(s, dtype=np.float32)
    if arr.ndim != 1:
        raise PatchError(f"the scale for {name!r} must be a vector (one value per output channel)")
    return arr


def finalize(model: onnx.ModelProto, *, optimize: bool = True) -> onnx.ModelProto:
    """Optimise (``onnxscript.optimizer.optimize``), strip local information, full-check.

    Returns a new model; ``model`` is not modified. Stripping removes every ``doc_string`` and
    every ``metadata_props`` (model-level ones included: signing adds Lethe's own later).
    """
    out = copy_model(model)
    if optimize:
        import onnxscript

        out = onnxscript.optimizer.optimize(out)
    strip_local_info(out)
    check_model(out)
    return out


def patch(base: BaseExport, scales: Mapping[str, Any], *, optimize: bool = True) -> onnx.ModelProto:
    """The base export with each layer's weight rows and bias scaled, optimised and checked.

    ``scales`` maps layer (module) names to one factor per output channel, as returned by
    :meth:`lethe.filters.FilterBank.scales`; the result equals exporting the model folded with
    the same scales (:func:`lethe.filters.fold`), without re-tracing it. Every scale is
    checked before anything is written; the base export is never modified.
    """
    unknown = sorted(set(scales) - set(base.layers))
    if unknown:
        raise PatchError(
            f"layers {unknown[:5]} are not patchable layers of this base export; was it "
            "exported from the model the filter bank was trained for?"
        )
    inits = {i.name: i for i in base.model.graph.initializer}
    new: dict[str, np.ndarray[Any, Any]] = {}
    for layer, raw in scales.items():
        s = _as_vector(layer, raw)
        if s.shape[0] != base.layers[layer]:
            raise PatchError(
                f"the scale for {layer!r} has {s.shape[0]} values; the layer has "
                f"{base.layers[layer]} output channels"
            )
        if not np.isfinite(s).all():
            raise PatchError(f"the scale for {layer!r} contains NaN or infinite values")
        for tensor in (f"{layer}.weight", f"{layer}.bias"):
            init_name = base.initializers.get(tensor)
            if init_name is None:
                continue
            arr = numpy_helper.to_array(inits[init_name])
            # Same arithmetic as lethe.filters.fold (scale cast to the weight dtype, one
            # multiply per element), so patched weights equal folded ones bit for bit.
            scaled = arr * s.astype(arr.dtype).reshape(-1, *([1] * (arr.ndim - 1)))
            if not np.isfinite(scaled).all():
                raise PatchError(f"scaling {tensor} produced NaN/inf values; nothing was written")
            new[init_name] = scaled
    out = copy_model(base.model)
    for init in out.graph.initializer:
        if init.name in new:
            init.CopyFrom(numpy_helper.from_array(new[init.name], init.name))
    return finalize(out, optimize=optimize)


def reexport(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    input_name: str = "input",
    output_name: str = "logits",
    optimize: bool = True,
) -> onnx.ModelProto:
    """Fallback: export an already folded model from scratch (same exporter settings, same
    finishing steps as :func:`patch`). Slower; use when no base export is available."""
    proto = torch_export(
        model, input_shape=input_shape, input_name=input_name, output_name=output_name
    )
    strip_local_info(proto)
    return finalize(proto, optimize=optimize)
