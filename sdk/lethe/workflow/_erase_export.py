"""ONNX for the erased model: patch every changed tensor of the base export, or re-export.

Phase 2 changes weights anywhere below the head, BatchNorm statistics included, but never the
topology. The base export (``optimize=False``) keeps every state-dict tensor as an initializer
under its torch name, so the erased model's ONNX is the base graph with those initializers
replaced, optimised and full-checked, like a phase-1 patch. When some changed tensor has no
initializer of the same name and shape, the erased model is exported again instead. Either
way the parity check against the torch model decides.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["export_erased"]


def _patched(base_proto: Any, erased: Any, base_model: Any) -> Any | None:
    """The base graph with every tensor that erase changed replaced, or None when one of them
    has no initializer of the same name and shape."""
    import onnx
    from onnx import numpy_helper

    new_sd = {k: v.detach().cpu() for k, v in erased.state_dict().items()}
    old_sd = {k: v.detach().cpu() for k, v in base_model.state_dict().items()}
    changed = {k for k, v in new_sd.items() if k not in old_sd or not v.equal(old_sd[k])}
    out = onnx.ModelProto()
    out.CopyFrom(base_proto)
    inits = {i.name: i for i in out.graph.initializer}
    for name in changed:
        init = inits.get(name)
        value = new_sd[name].numpy()
        if init is None or tuple(init.dims) != value.shape:
            return None
        arr = value.astype(numpy_helper.to_array(init).dtype, copy=False)
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))
    return out


def export_erased(
    erased: Any,
    base_model: Any,
    *,
    base_onnx: Path | None,
    forget: tuple[int, ...],
    parity_inputs: Any,
    input_shape: tuple[int, int, int],
) -> Any:
    """A :class:`lethe.export.FilteredExport` of ``erased`` (``method`` says patch or
    re-export); parity is checked only against gross breaches here, the policy judges it."""
    import onnx

    from lethe import model_digest
    from lethe.export import FilteredExport, check_parity, finalize, reexport

    t0 = time.perf_counter()
    proto = None
    if base_onnx is not None and base_onnx.is_file():
        raw = onnx.load_model_from_string(base_onnx.read_bytes())
        patched = _patched(raw, erased, base_model)
        if patched is not None:
            proto = finalize(patched)
    method = "patch"
    if proto is None:
        proto = reexport(erased, input_shape=input_shape)
        method = "reexport"
    parity = check_parity(proto, erased, parity_inputs, threshold=1e3)
    return FilteredExport(
        model=proto,
        folded=erased,
        forget=forget,
        base_digest="sha256:" + model_digest(base_model),
        folded_digest="sha256:" + model_digest(erased),
        method=method,  # type: ignore[arg-type]
        parity=parity,
        seconds=time.perf_counter() - t0,
    )
