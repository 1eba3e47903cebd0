"""The onnxruntime backend (no torch) and the seeded random ONNX model used by ZRF."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from tqdm.auto import tqdm

from lethe_audit.errors import BackendError, ModelInputError
from lethe_audit.metrics._backend import FEATURES_OUTPUT

__all__ = [
    "FEATURES_OUTPUT",
    "RANDOM_ONNX_SCHEME",
    "OnnxBackend",
    "find_head_input",
    "random_onnx_model",
]

RANDOM_ONNX_SCHEME = "onnx-fanin-uniform-v1"


_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
_NORM_OPS = {"LayerNormalization", "InstanceNormalization", "GroupNormalization"}


def _load_proto(model: str | os.PathLike[str] | bytes | onnx.ModelProto) -> onnx.ModelProto:
    try:
        if isinstance(model, onnx.ModelProto):
            proto = onnx.ModelProto()
            proto.CopyFrom(model)
            return proto
        if isinstance(model, bytes):
            return onnx.load_from_string(model)
        return onnx.load(os.fspath(model))
    except OSError as exc:
        raise BackendError(f"cannot read the ONNX model: {exc}") from exc
    except Exception as exc:  # protobuf's DecodeError has no stable import path
        raise BackendError(f"cannot parse the ONNX model: {exc}") from exc


def find_head_input(model: onnx.ModelProto) -> str | None:
    """Name of the value feeding the classifier head, or ``None`` if the graph is unusual.

    The head is the node producing the first graph output: a ``Gemm`` (its input 0), or an
    ``Add`` of a bias to a ``MatMul`` (the ``MatMul``'s input 0). That value is the penultimate
    feature vector, the same tensor a torch forward hook on the head's input sees.
    """
    graph = model.graph
    if not graph.output:
        return None
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(graph.output[0].name)
    if node is None:
        return None
    if node.op_type == "Gemm":
        return str(node.input[0])
    if node.op_type == "MatMul":
        return str(node.input[0])
    if node.op_type == "Add":
        for name in node.input:
            mm = producers.get(name)
            if mm is not None and mm.op_type == "MatMul":
                return str(mm.input[0])
    return None


def _word_seed(seed: int, name: str) -> np.random.SeedSequence:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    return np.random.SeedSequence([seed, *words])


def random_onnx_model(model: onnx.ModelProto, *, seed: int) -> tuple[onnx.ModelProto, str]:
    """A copy of ``model`` with every weight re-drawn from ``seed``; returns (model, description).

    Scheme ``onnx-fanin-uniform-v1`` (see docs/metrics.md): the weight initializer of each
    ``Conv``, ``Gemm`` and ``MatMul`` (also behind ``Transpose`` nodes) and its bias (``Conv``/
    ``Gemm`` input 2, or a 1-D initializer ``Add``-ed to the ``MatMul`` output) are drawn from
    U(−1/√fan_in, 1/√fan_in), torch's default for conv/linear layers, where fan_in is the
    contraction size. Each tensor has its own generator,
    ``numpy.random.default_rng(SeedSequence([seed, *sha256(name) as 8 little-endian uint32]))``,
    so values do not depend on graph order. ``BatchNormalization`` scale/bias/mean/var become
    1/0/0/1, ``LayerNormalization``/``InstanceNormalization``/``GroupNormalization`` scale/bias
    1/0. Every other initializer (position embeddings, class tokens, constants) is kept.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BackendError(f"seed must be a non-negative integer, got {seed!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    weights, constants = _initializer_roles(out.graph)
    if not weights:
        raise BackendError(
            "found no Conv/Gemm/MatMul weight initializers to re-draw in the ONNX model; "
            "pass an explicit random_model= to evaluate()"
        )
    _redraw(out.graph, weights, constants, seed)
    description = (
        f"{RANDOM_ONNX_SCHEME}: seed {seed}, {len(weights)} weight/bias initializers re-drawn "
        f"from U(±1/√fan_in), {len(constants)} normalisation initializers reset"
    )
    return out, description


def _resolver(graph: Any) -> Callable[[str], tuple[str, tuple[int, ...]] | None]:
    """Follow Transpose nodes back to an initializer: its name and effective shape (or None)."""
    inits = {i.name: i for i in graph.initializer}
    producers = {o: node for node in graph.node for o in node.output}

    def resolve(name: str) -> tuple[str, tuple[int, ...]] | None:
        perms: list[list[int]] = []
        while name not in inits:
            node = producers.get(name)
            if node is None or node.op_type != "Transpose" or len(node.input) != 1:
                return None
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            perms.append(perm if perm is not None else [])
            name = node.input[0]
        shape = tuple(int(d) for d in inits[name].dims)
        for perm in reversed(perms):
            shape = tuple(shape[p] for p in perm) if perm else tuple(reversed(shape))
        return name, shape

    return resolve


def _initializer_roles(graph: Any) -> tuple[dict[str, float], dict[str, float]]:
    """(initializer name -> fan_in for weights/biases, name -> fill value for normalisation)."""
    inits = {i.name: i for i in graph.initializer}
    resolve = _resolver(graph)
    weights: dict[str, float] = {}
    constants: dict[str, float] = {}
    matmul_fan_in: dict[str, float] = {}  # MatMul output -> fan_in of its weight

    def weight(name: str, fan_in: int) -> None:
        if fan_in > 0 and name not in constants:
            weights.setdefault(name, float(fan_in))

    def constant(names: Sequence[str], values: Sequence[float]) -> None:
        for name, value in zip(names, values, strict=False):
            if name in inits and name not in weights:
                constants[name] = value

    for node in graph.node:
        op, ins = node.op_type, list(node.input)
        if op == "Conv" and len(ins) > 1 and ins[1] in inits:
            fan_in = math.prod(int(d) for d in inits[ins[1]].dims[1:])
            weight(ins[1], fan_in)
            if len(ins) > 2 and ins[2] in inits:
                weight(ins[2], fan_in)
        elif op == "Gemm" and len(ins) > 1:
            resolved = resolve(ins[1])
            if resolved is not None and len(resolved[1]) == 2:
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                fan_in = resolved[1][1] if trans_b else resolved[1][0]
                weight(resolved[0], fan_in)
                if len(ins) > 2 and ins[2] in inits:
                    weight(ins[2], fan_in)
        elif op == "MatMul" and len(ins) > 1:
            resolved = resolve(ins[1])
            if resolved is not None and len(resolved[1]) >= 2:
                weight(resolved[0], resolved[1][-2])
                matmul_fan_in[node.output[0]] = float(resolved[1][-2])
        elif op == "Add" and len(ins) == 2:
            for a, b in ((ins[0], ins[1]), (ins[1], ins[0])):
                if a in matmul_fan_in and b in inits and len(inits[b].dims) == 1:
                    weight(b, int(matmul_fan_in[a]))
        elif op == "BatchNormalization":
            constant(ins[1:5], (1.0, 0.0, 0.0, 1.0))
        elif op in _NORM_OPS:
            constant(ins[1:3], (1.0, 0.0))
    return weights, constants


def _redraw(
    graph: Any, weights: Mapping[str, float], constants: Mapping[str, float], seed: int
) -> None:
    """Replace the floating-point initializers named in ``weights`` / ``constants`` in place."""
    for init in graph.initializer:
        if init.name not in weights and init.name not in constants:
            continue
        current = numpy_helper.to_array(init)
        if not np.issubdtype(current.dtype, np.floating):
            continue
        if init.name in weights:
            bound = 1.0 / math.sqrt(weights[init.name])
            rng = np.random.default_rng(_word_seed(seed, init.name))
            values = rng.uniform(-bound, bound, size=current.shape).astype(current.dtype)
        else:
            values = np.full(current.shape, constants[init.name], dtype=current.dtype)
        init.CopyFrom(numpy_helper.from_array(values, init.name))


class OnnxBackend:
    """Runs an ONNX classifier with onnxruntime (CPU by default).

    ``model`` is a path, the serialised bytes, a ``ModelProto`` or an ``InferenceSession``
    (a session cannot build the ZRF random model nor expose features that are not outputs).
    ``features`` names the value holding penultimate features: ``"auto"`` takes the graph
    output named ``features`` (:data:`FEATURES_OUTPUT`, which Lethe's exports carry), else finds
    the head's input with :func:`find_head_input` (and is unavailable if there is none: see
    :attr:`feature_source`); ``None`` turns features off. The model must have one input; its
    first output is taken as the logits.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes | onnx.ModelProto | ort.InferenceSession,
        *,
        batch_size: int = 256,
        providers: Sequence[str] | None = None,
        features: str | None = "auto",
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BackendError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        self._batch_size = batch_size
        self._proto: onnx.ModelProto | None
        self._feature_name: str | None = None
        self._feature_source = "features were turned off"
        if isinstance(model, ort.InferenceSession):
            self._proto = None
            self._session = model
            names = [o.name for o in model.get_outputs()]
            if features == "auto" and FEATURES_OUTPUT in names[1:]:
                features = FEATURES_OUTPUT
            if features not in (None, "auto"):
                if features not in names:
                    raise BackendError(
                        f"{features!r} is not an output of the session; build the backend from "
                        "the model file to expose intermediate values"
                    )
                self._feature_name = features
                self._feature_source = f"graph output {features!r}"
            elif features == "auto":
                self._feature_source = (
                    f"the session has no {FEATURES_OUTPUT!r} output (an export made before "
                    "Lethe exported penultimate features)"
                )
        else:
            self._proto = _load_proto(model)
            run_proto = self._proto
            if features is not None:
                run_proto = self._pick_features(self._proto, features)
            try:
                self._session = ort.InferenceSession(
                    run_proto.SerializeToString(), providers=self._providers
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise BackendError(f"onnxruntime cannot load the model: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(
                f"the ONNX model has {len(inputs)} inputs; metrics need a single image input"
            )
        self._input = inputs[0]
        if self._input.type not in _ORT_DTYPES:
            raise BackendError(f"unsupported ONNX input type {self._input.type}")
        self._logits_name = self._session.get_outputs()[0].name

    def _pick_features(self, proto: onnx.ModelProto, features: str) -> onnx.ModelProto:
        """Set the feature value and how it was found; returns the proto to run."""
        outputs = [o.name for o in proto.graph.output]
        if features == "auto" and FEATURES_OUTPUT in outputs[1:]:
            features = FEATURES_OUTPUT
        if features != "auto":
            self._feature_name = features
            exported = features in outputs
            self._feature_source = (
                f"graph output {features!r}" if exported else f"graph value {features!r}"
            )
            return self._with_output(proto, features)
        name = find_head_input(proto)
        if name is None:
            self._feature_source = (
                f"the model has no {FEATURES_OUTPUT!r} output (an export made before Lethe "
                "exported penultimate features) and its classifier head could not be found"
            )
            return proto
        self._feature_name = name
        self._feature_source = (
            f"the classifier head's input {name!r}, found in the graph (the model has no "
            f"{FEATURES_OUTPUT!r} output)"
        )
        return self._with_output(proto, name)

    @property
    def feature_source(self) -> str:
        """Where the penultimate features come from, or why there are none (one line)."""
        return self._feature_source

    @staticmethod
    def _with_output(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
        if any(o.name == name for o in proto.graph.output):
            return proto
        produced = {o for n in proto.graph.node for o in n.output}
        if name not in produced and name not in {i.name for i in proto.graph.input}:
            raise BackendError(f"no value named {name!r} in the ONNX graph")
        out = onnx.ModelProto()
        out.CopyFrom(proto)
        elem = onnx.TensorProto.FLOAT
        for vi in out.graph.value_info:
            if vi.name == name:
                elem = vi.type.tensor_type.elem_type
        out.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
        return out

    @property
    def kind(self) -> str:
        return "onnxruntime"

    @property
    def input_shape(self) -> tuple[int | str | None, ...]:
        """The model's declared input shape (``str``/``None`` for dynamic axes)."""
        return tuple(self._input.shape)

    def _check(self, images: npt.NDArray[Any]) -> None:
        want = _ORT_DTYPES[self._input.type]
        shape = self.input_shape
        if not isinstance(images, np.ndarray):
            raise ModelInputError("images must be a numpy array")
        shown = [d if isinstance(d, int) else "N" for d in shape]
        if images.dtype != want:
            raise ModelInputError(
                f"the ONNX model input {self._input.name!r} is {np.dtype(want).name}, got "
                f"{images.dtype}: convert the images with .astype(numpy.{np.dtype(want).name})"
            )
        if images.ndim != len(shape) or any(
            isinstance(d, int) and d != images.shape[i] for i, d in enumerate(shape) if i > 0
        ):
            raise ModelInputError(
                f"the ONNX model input {self._input.name!r} expects shape {shown}, got images of "
                f"shape {list(images.shape)}: preprocess them to the model's input size"
            )

    def _run(
        self, images: npt.NDArray[np.float32], outputs: list[str], *, progress: bool
    ) -> list[npt.NDArray[Any]]:
        self._check(images)
        n = images.shape[0]
        if n == 0:
            raise ModelInputError("no images given")
        fixed = self.input_shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else self._batch_size
        chunks: list[list[npt.NDArray[Any]]] = [[] for _ in outputs]
        with tqdm(
            total=n, disable=None if progress else True, desc="onnxruntime", unit="img", leave=False
        ) as bar:
            for start in range(0, n, step):
                batch = images[start : start + step]
                real = batch.shape[0]
                if real < step and isinstance(fixed, int):
                    pad = np.zeros((step - real, *batch.shape[1:]), dtype=batch.dtype)
                    batch = np.concatenate([batch, pad])
                try:
                    res = self._session.run(
                        outputs, {self._input.name: np.ascontiguousarray(batch)}
                    )
                except Exception as exc:  # onnxruntime raises its own untyped errors
                    raise BackendError(f"onnxruntime failed on a batch: {exc}") from exc
                for i, r in enumerate(res):
                    chunks[i].append(np.asarray(r)[:real])
                bar.update(real)
        return [np.concatenate(c) for c in chunks]

    def logits(
        self, images: npt.NDArray[np.float32], *, progress: bool = False
    ) -> npt.NDArray[np.floating]:
        """Logits (the first graph output) for every image."""
        (z,) = self._run(images, [self._logits_name], progress=progress)
        return z

    def features(
        self, images: npt.NDArray[np.float32], *, progress: bool = False
    ) -> npt.NDArray[np.floating]:
        """Penultimate features (flattened to ``[N, D]``); BackendError if none are exposed."""
        if self._feature_name is None:
            raise BackendError(
                f"the ONNX model provides no penultimate features: {self._feature_source}"
            )
        (f,) = self._run(images, [self._feature_name], progress=progress)
        return f.reshape(f.shape[0], -1)

    def random_init(self, *, seed: int) -> tuple[OnnxBackend, str]:
        """The same graph with weights re-drawn by :func:`random_onnx_model`, and how."""
        if self._proto is None:
            raise BackendError(
                "a backend built from an InferenceSession cannot build the random model; "
                "build it from the model file or bytes"
            )
        proto, description = random_onnx_model(self._proto, seed=seed)
        backend = OnnxBackend(
            proto, batch_size=self._batch_size, providers=self._providers, features=None
        )
        return backend, description
