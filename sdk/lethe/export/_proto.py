"""Small helpers on ONNX protos: copying, stripping local information, checking, sessions."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from lethe.errors import ExportInputError, OnnxCheckError

__all__ = [
    "check_images",
    "check_model",
    "copy_model",
    "input_spec",
    "ort_session",
    "run_session",
    "strip_local_info",
]


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _strip(msg: Any, *, keep_model_props: bool, top: bool) -> None:
    # Fields are looked up by name so every message type that has them (nodes, graphs,
    # value infos, tensors, functions, the model) is covered without listing the types.
    fields = msg.DESCRIPTOR.fields_by_name
    if "doc_string" in fields and msg.HasField("doc_string"):
        msg.ClearField("doc_string")
    if "metadata_props" in fields and not (top and keep_model_props):
        msg.ClearField("metadata_props")
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            for item in value:
                _strip(item, keep_model_props=keep_model_props, top=False)
        else:
            _strip(value, keep_model_props=keep_model_props, top=False)


def strip_local_info(model: onnx.ModelProto, *, keep_model_props: bool = False) -> None:
    """Remove, in place, every ``doc_string`` and every ``metadata_props`` in the model.

    The exporter records stack traces (with local absolute paths), FX node dumps and module
    names in node metadata; none of it is needed to run the model, and shipping it would leak
    the build machine's file layout. With ``keep_model_props`` the model-level
    ``metadata_props`` (where Lethe keeps its own keys) stay.
    """
    _strip(model, keep_model_props=keep_model_props, top=True)


def check_model(model: onnx.ModelProto) -> None:
    """``onnx.checker`` with ``full_check`` (shape inference included); typed error on failure."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxCheckError(f"the ONNX model fails onnx.checker: {exc}") from exc


def input_spec(model: onnx.ModelProto) -> tuple[str, tuple[int | str, ...]]:
    """Name and shape (ints, or the symbolic name of a dynamic axis) of the only graph input."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise OnnxCheckError(f"expected a model with one input, got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    return inputs[0].name, shape


def check_images(
    x: Any, chw: tuple[int, ...], *, what: str, error: type[ExportInputError] = ExportInputError
) -> npt.NDArray[np.float32]:
    """``x`` as a C-contiguous float32 ``[N, C, H, W]`` array matching ``chw``, or a typed error.

    Accepts numpy arrays and torch tensors (duck-typed, so this module needs no torch).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise error(
            f"{what} must be a numpy array (or torch tensor) of float32 images [N, C, H, W], "
            f"got {type(x).__name__}"
        )
    if x.dtype != np.float32:
        raise error(
            f"{what} must be float32 (preprocessed like the model's input), got {x.dtype}; "
            "use the model's Preprocess (lethe.data) to turn uint8 images into float32"
        )
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(chw):
        raise error(
            f"{what} must have shape [N, {', '.join(map(str, chw))}] to match the model "
            f"input, got {list(x.shape)}"
        )
    if len(x) == 0:
        raise error(f"{what} is empty: give at least one image")
    if not np.isfinite(x).all():
        raise error(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(x)


def ort_session(model: onnx.ModelProto | bytes, *, threads: int | None = None) -> Any:
    """A CPU onnxruntime session for a model (proto or serialised bytes)."""
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else model.SerializeToString()
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        raise OnnxCheckError(f"onnxruntime cannot load the model: {exc}") from exc


def run_session(
    session: Any, x: npt.NDArray[np.float32], *, batch_size: int = 64
) -> npt.NDArray[np.float32]:
    """Outputs of the session's first output for ``x``, in batches."""
    name = session.get_inputs()[0].name
    outs = [
        np.asarray(session.run(None, {name: x[i : i + batch_size]})[0], dtype=np.float32)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs)
