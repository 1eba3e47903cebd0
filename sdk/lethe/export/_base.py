"""Export once per base model, and prove the export can be patched by name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from lethe._digest import model_digest
from lethe._io import atomic_write_bytes
from lethe.errors import ConfigError, ExportError, ExportMappingError
from lethe.export._proto import strip_local_info
from lethe_audit.metrics import FEATURES_OUTPUT

__all__ = [
    "BASE_FORMAT",
    "FEATURES_OUTPUT",
    "PREPROCESSING_KEY",
    "BaseExport",
    "add_features_output",
    "classifier_head",
    "export_base",
    "patchable_layers",
    "torch_export",
]

#: Value of the ``lethe.base.format`` metadata key of a saved base export.
BASE_FORMAT = "lethe.onnx-base/v1"
_K_FORMAT = "lethe.base.format"
_K_DIGEST = "lethe.base.digest"
_K_LAYERS = "lethe.base.layers"
_K_IO = "lethe.base.io"
#: Metadata key holding how to feed the model (``lethe.data.Preprocess.to_dict`` as JSON).
PREPROCESSING_KEY = "lethe.preprocessing"


def patchable_layers(model: nn.Module) -> dict[str, int]:
    """Every conv and linear layer of ``model`` with its number of output channels."""
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and isinstance(
            getattr(m, "weight", None), torch.Tensor
        ):
            out[name] = int(m.weight.shape[0])
    return out


def _tensor_names(layer: str, model: nn.Module) -> list[str]:
    m = model.get_submodule(layer)
    names = [f"{layer}.weight"]
    if isinstance(getattr(m, "bias", None), torch.Tensor):
        names.append(f"{layer}.bias")
    return names


def _shared_tensors(model: nn.Module) -> set[str]:
    """Names of parameters that share storage with another name (tied weights)."""
    by_ptr: dict[tuple[int, int], list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_ptr.setdefault((p.untyped_storage().data_ptr(), int(p.storage_offset())), []).append(
            name
        )
    return {n for names in by_ptr.values() if len(names) > 1 for n in names}


def classifier_head(model: nn.Module) -> str | None:
    """Dotted name of the classifier head: ``model.get_classifier()`` when the model has one
    (timm), else the last ``nn.Linear``; ``None`` when there is neither. The same module whose
    input :class:`lethe.metrics.TorchBackend` takes as penultimate features."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        found = get()
        if isinstance(found, nn.Module) and not isinstance(found, nn.Identity):
            for name, m in model.named_modules():
                if m is found and name:
                    return str(name)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]
    return linears[-1] if linears else None


def add_features_output(
    proto: onnx.ModelProto, head_weight: str, *, name: str = FEATURES_OUTPUT
) -> bool:
    """Append graph output ``name``: the data input of the node applying ``head_weight``.

    The head is a ``Gemm`` (or ``MatMul``, possibly behind a ``Transpose``) consuming the
    initializer ``head_weight``; its other input is the penultimate feature tensor. An
    ``Identity`` node copies it to ``name``, so the logits stay the first output, unchanged,
    and no initializer is touched (patching by name still holds). Returns False, changing
    nothing, when no such node is found.
    """
    graph = proto.graph
    if any(o.name == name for o in graph.output):
        return True
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for value in node.input:
            consumers.setdefault(value, []).append(node)
    weight_values = {head_weight}
    for node in consumers.get(head_weight, []):
        if node.op_type == "Transpose":
            weight_values.update(node.output)
    heads = [
        (node, value)
        for value in weight_values
        for node in consumers.get(value, [])
        if node.op_type in ("Gemm", "MatMul") and len(node.input) >= 2
    ]
    if len(heads) != 1:
        return False
    node, value = heads[0]
    data = [v for v in node.input[:2] if v != value]
    if len(data) != 1 or not data[0]:
        return False
    graph.node.append(onnx.helper.make_node("Identity", [data[0]], [name], name="lethe_features"))
    logits_dims = graph.output[0].type.tensor_type.shape.dim if graph.output else []
    batch = logits_dims[0].dim_param if logits_dims and logits_dims[0].dim_param else None
    graph.output.append(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [batch, None])
    )
    return True


def torch_export(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    input_name: str = "input",
    output_name: str = "logits",
    features_output: bool = True,
) -> onnx.ModelProto:
    """The raw dynamo export (``optimize=False``, no external data, dynamic batch axis).

    With ``features_output`` the graph gets a second output ``features``
    (:func:`add_features_output` on :func:`classifier_head`), when the head can be found.
    """
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros((2, *input_shape), dtype=torch.float32, device=device)
    was_training = model.training
    model.eval()
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            optimize=False,
            external_data=False,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    except Exception as exc:  # the exporter raises many untyped errors
        raise ExportError(
            f"torch.onnx.export (dynamo) failed for {type(model).__name__}: {exc}. "
            "Check that the model runs on a float32 input of shape "
            f"[N, {', '.join(map(str, input_shape))}]."
        ) from exc
    finally:
        model.train(was_training)
    if program is None:  # only for the legacy exporter; typed for mypy
        raise ExportError("torch.onnx.export returned no program")
    proto: onnx.ModelProto = program.model_proto
    head = classifier_head(model) if features_output else None
    if head is not None:
        add_features_output(proto, f"{head}.weight")
    return proto


def features_output_of(proto: onnx.ModelProto) -> str | None:
    """``features`` when the model has that second output, else ``None``."""
    names = [o.name for o in proto.graph.output]
    return FEATURES_OUTPUT if FEATURES_OUTPUT in names[1:] else None


def _prove(
    proto: onnx.ModelProto,
    tensors: Mapping[str, torch.Tensor],
    layers: Mapping[str, list[str]],
    required: set[str],
) -> dict[str, str]:
    """Check each layer's tensors are initializers under their torch names with equal values.

    Returns the tensor-name -> initializer-name map of every layer that passed; raises if a
    required layer did not.
    """
    inits = {i.name: i for i in proto.graph.initializer}
    graph_inputs = {i.name for i in proto.graph.input}
    mapping: dict[str, str] = {}
    problems: dict[str, str] = {}
    for layer, names in layers.items():
        layer_map: dict[str, str] = {}
        for name in names:
            init = inits.get(name)
            if init is None:
                problems[layer] = f"{name} is not an initializer of the exported graph"
                break
            if name in graph_inputs:
                problems[layer] = f"{name} is also a graph input (a runtime could override it)"
                break
            expected = tensors[name].detach().to("cpu").contiguous().numpy()
            got = numpy_helper.to_array(init)
            if got.dtype != expected.dtype or not np.array_equal(got, expected):
                problems[layer] = f"initializer {name} does not equal the torch tensor"
                break
            layer_map[name] = init.name
        else:
            mapping.update(layer_map)
    bad = sorted(set(problems) & required)
    if bad:
        details = "; ".join(problems[b] for b in bad[:5])
        raise ExportMappingError(
            f"{len(bad)} layer(s) cannot be patched by name in the ONNX export ({details}). "
            "Export with optimize=False (lethe.export.export_base does), or restrict the "
            "layers with targets=bank.target_names."
        )
    return mapping


@dataclass(frozen=True)
class BaseExport:
    """The unoptimised ONNX export of a base model plus the proof that it can be patched.

    ``layers`` maps every patchable layer (module name) to its output-channel count;
    ``initializers`` maps each of their torch tensor names (``<layer>.weight`` /
    ``<layer>.bias``) to the initializer holding exactly that tensor. ``features_name`` is the
    second graph output with the penultimate features (``"features"``), or ``None`` for a base
    export made without it (before Lethe exported features). Treat ``model`` as read-only:
    :func:`~lethe.export.patch` works on a copy.
    """

    model: onnx.ModelProto = field(repr=False)
    layers: Mapping[str, int]
    initializers: Mapping[str, str] = field(repr=False)
    base_digest: str
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]
    path: Path | None = None
    features_name: str | None = None
    preprocessing: Mapping[str, object] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))
        object.__setattr__(self, "initializers", MappingProxyType(dict(self.initializers)))

    def to_bytes(self) -> bytes:
        return bytes(self.model.SerializeToString())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the base export (an ONNX file with its proof in the metadata), atomically."""
        return atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, model: nn.Module | None = None) -> BaseExport:
        """Read a base export written by :meth:`save`.

        With ``model``, the proof is redone against its state dict and its digest must match
        the one recorded at export time.
        """
        p = Path(path)
        if not p.is_file():
            raise ExportError(
                f"{p}: base export not found; create it with lethe.export.export_base"
            )
        try:
            proto = onnx.load_model_from_string(p.read_bytes())
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ExportError(f"{p}: not an ONNX file ({exc})") from exc
        props = {e.key: e.value for e in proto.metadata_props}
        if props.get(_K_FORMAT) != BASE_FORMAT:
            raise ExportError(
                f"{p}: not a Lethe base export (format {props.get(_K_FORMAT)!r}); "
                "create one with lethe.export.export_base"
            )
        try:
            layers = {str(k): int(v) for k, v in json.loads(props[_K_LAYERS]).items()}
            io = json.loads(props[_K_IO])
            shape = tuple(int(v) for v in io["input_shape"])
            digest = props[_K_DIGEST]
        except (KeyError, ValueError, TypeError) as exc:
            raise ExportError(f"{p}: malformed Lethe base-export metadata ({exc})") from exc
        if len(shape) != 3:
            raise ExportError(f"{p}: malformed input shape {list(shape)}")
        inits = {i.name for i in proto.graph.initializer}
        initializers = {
            n: n for layer in layers for n in (f"{layer}.weight", f"{layer}.bias") if n in inits
        }
        missing = [layer for layer in layers if f"{layer}.weight" not in inits]
        if missing:
            raise ExportError(f"{p}: layers {missing[:5]} have no weight initializer")
        base = cls(
            model=proto,
            layers=layers,
            initializers=initializers,
            base_digest=digest,
            input_name=str(io["input"]),
            output_name=str(io["output"]),
            input_shape=(shape[0], shape[1], shape[2]),
            path=p,
            features_name=features_output_of(proto),
            preprocessing=_preprocessing_of(props, p),
        )
        if model is not None:
            base.check_model(model)
        return base

    def check_model(self, model: nn.Module) -> None:
        """Raise unless ``model`` is the base model this export was made from."""
        d = "sha256:" + model_digest(model)
        if d != self.base_digest:
            raise ExportMappingError(
                f"this base export was made from model {self.base_digest[:23]}..., not from "
                f"{d[:23]}...; export the model again with lethe.export.export_base"
            )
        tensors = model.state_dict()
        layers = {layer: _tensor_names(layer, model) for layer in self.layers}
        _prove(self.model, tensors, layers, set(self.layers))


def _preprocessing_of(props: Mapping[str, str], p: Path) -> dict[str, object] | None:
    text = props.get(PREPROCESSING_KEY)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ExportError(f"{p}: malformed {PREPROCESSING_KEY} metadata ({exc})") from exc
    if not isinstance(value, dict):
        raise ExportError(f"{p}: {PREPROCESSING_KEY} metadata is not a JSON object")
    return value


def _base_props(
    digest: str, proven: Mapping[str, int], io: str, preprocessing: Mapping[str, object] | None
) -> dict[str, str]:
    props = {
        _K_FORMAT: BASE_FORMAT,
        _K_DIGEST: digest,
        _K_LAYERS: json.dumps(proven, sort_keys=True, separators=(",", ":")),
        _K_IO: io,
    }
    if preprocessing is not None:
        props[PREPROCESSING_KEY] = json.dumps(
            dict(preprocessing), sort_keys=True, separators=(",", ":")
        )
    return props


def _io_json(
    input_name: str, output_name: str, features: str | None, chw: tuple[int, int, int]
) -> str:
    io = {"input": input_name, "output": output_name, "features": features, "input_shape": chw}
    return json.dumps(io, sort_keys=True, separators=(",", ":"))


def export_base(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    path: str | os.PathLike[str] | None = None,
    input_name: str = "input",
    output_name: str = "logits",
    targets: Iterable[str] | None = None,
    preprocessing: Mapping[str, object] | None = None,
) -> BaseExport:
    """Export ``model`` once to ONNX, prove every layer is patchable, and optionally save it.

    ``preprocessing`` (the model's ``Preprocess.to_dict()``) is stored as the
    ``lethe.preprocessing`` metadata entry: the ONNX model takes *preprocessed* float32 input,
    and this record says how to make it from pixels.

    Uses the dynamo exporter with ``optimize=False``, no external data and a dynamic batch
    axis: then each conv/linear weight and bias is an initializer under its exact torch name
    and value, which is checked here with ``np.array_equal``. (The optimised export fuses
    BatchNorm into conv weights under the original names, transposes linear weights and
    de-duplicates equal tensors: patching that graph by name would be silently wrong.)

    ``targets`` lists the layers that must be patchable (e.g. ``bank.target_names``); by
    default every conv and linear layer. A required layer that fails the proof, or whose
    weights are tied to another parameter, raises :class:`~lethe.errors.ExportMappingError`.
    """
    if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
        raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    chw = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    all_layers = patchable_layers(model)
    required = set(all_layers) if targets is None else set(targets)
    unknown = sorted(required - set(all_layers))
    if unknown:
        raise ExportMappingError(
            f"layers {unknown[:5]} are not conv/linear layers of the model; "
            "targets must name conv or linear modules"
        )
    tied = _shared_tensors(model)
    tied_targets = sorted(layer for layer in required if set(_tensor_names(layer, model)) & tied)
    if tied_targets:
        raise ExportMappingError(
            f"layers {tied_targets[:5]} share weights with other parameters; scaling them in "
            "the ONNX graph would change the other uses too. Untie the weights or exclude "
            "these layers from the filter targets."
        )
    proto = torch_export(model, input_shape=chw, input_name=input_name, output_name=output_name)
    strip_local_info(proto)
    tensors = model.state_dict()
    layers = {
        layer: _tensor_names(layer, model)
        for layer in all_layers
        if not set(_tensor_names(layer, model)) & tied
    }
    mapping = _prove(proto, tensors, layers, required)
    proven = {layer: all_layers[layer] for layer in layers if f"{layer}.weight" in mapping}
    digest = "sha256:" + model_digest(model)
    props = _base_props(
        digest,
        proven,
        _io_json(input_name, output_name, features_output_of(proto), chw),
        preprocessing,
    )
    del proto.metadata_props[:]
    for k in sorted(props):
        proto.metadata_props.add(key=k, value=props[k])
    base = BaseExport(
        model=proto,
        layers=proven,
        initializers=mapping,
        base_digest=digest,
        input_name=input_name,
        output_name=output_name,
        input_shape=chw,
        features_name=features_output_of(proto),
        preprocessing=dict(preprocessing) if preprocessing is not None else None,
    )
    if path is not None:
        base = replace(base, path=base.save(path))
    return base
