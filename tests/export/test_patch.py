"""Base export, patching by name, re-export fallback and parity (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import timm
import torch
from onnx import numpy_helper
from torch import nn

from lethe import model_digest
from lethe.errors import (
    ExportError,
    ExportInputError,
    ExportMappingError,
    ParityError,
    PatchError,
)
from lethe.export import (
    BaseExport,
    ExportConfig,
    check_parity,
    export_base,
    export_filtered,
    patch,
    reexport,
)
from lethe.export._base import _prove, torch_export
from lethe.export._proto import ort_session, run_session
from lethe.filters import fold
from lethe.models import predict
from tests._helpers import random_bank

from ._helpers import TrapNet, find_local_paths

ARCHS: dict[str, Any] = {
    "trap": (TrapNet, (1, 12, 12)),
    "vit": (
        lambda: timm.create_model(
            "test_vit", num_classes=10, in_chans=1, img_size=16, patch_size=4
        ),
        (1, 16, 16),
    ),
    "convnext": (
        lambda: timm.create_model("test_convnext", num_classes=10, in_chans=1),
        (1, 32, 32),
    ),
}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A model, a random filter bank, its base export and the re-export of the folded model."""
    make, shape = ARCHS[request.param]
    torch.manual_seed(0)
    model = make().eval()
    bank = random_bank(model, seed=1)
    base = export_base(model, input_shape=shape)
    forget = (2, 7)
    folded = fold(model, bank, forget)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(2))
    return {
        "name": request.param,
        "model": model,
        "bank": bank,
        "base": base,
        "forget": forget,
        "folded": folded,
        "reexported": reexport(folded, input_shape=shape),
        "x": x.numpy(),
    }


def _run(proto: onnx.ModelProto, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return run_session(ort_session(proto), x)


def test_base_export_maps_every_conv_and_linear(arch: dict[str, Any]) -> None:
    model, base = arch["model"], arch["base"]
    layers = {
        n: m.weight.shape[0]
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    assert dict(base.layers) == layers
    inits = {i.name: numpy_helper.to_array(i) for i in base.model.graph.initializer}
    sd = model.state_dict()
    for tensor, init_name in base.initializers.items():
        assert init_name == tensor
        assert np.array_equal(inits[init_name], sd[tensor].numpy())
    # Every weight and every bias present in torch is mapped.
    expected = {f"{n}.{p}" for n in layers for p in ("weight", "bias") if f"{n}.{p}" in sd}
    assert set(base.initializers) == expected
    assert base.base_digest == "sha256:" + model_digest(model)


def test_patch_equals_reexport_equals_folded_torch(arch: dict[str, Any]) -> None:
    patched = patch(arch["base"], arch["bank"].scales(arch["forget"]))
    x = arch["x"]
    p, r = _run(patched, x), _run(arch["reexported"], x)
    t = predict(arch["folded"], torch.from_numpy(x)).numpy()
    assert np.abs(p - r).max() <= 1e-5
    assert np.abs(p - t).max() <= 1e-5
    # The filter really changed the outputs (the comparison is not vacuous).
    unfiltered = predict(arch["model"], torch.from_numpy(x)).numpy()
    assert np.abs(p - unfiltered).max() > 1e-3


def test_patched_initializers_equal_folded_weights(arch: dict[str, Any]) -> None:
    unoptimised = patch(arch["base"], arch["bank"].scales(arch["forget"]), optimize=False)
    inits = {i.name: numpy_helper.to_array(i) for i in unoptimised.graph.initializer}
    sd = arch["folded"].state_dict()
    for tensor in arch["base"].initializers:
        assert np.array_equal(inits[tensor], sd[tensor].numpy()), tensor


def test_optimised_graph_runs_dynamic_batch(arch: dict[str, Any]) -> None:
    patched = patch(arch["base"], arch["bank"].scales(arch["forget"]))
    sess = ort_session(patched)
    x = arch["x"]
    one = sess.run(None, {"input": x[:1]})[0]
    seven = sess.run(None, {"input": x[:7]})[0]
    assert one.shape == (1, 10) and seven.shape == (7, 10)
    assert np.abs(one - seven[:1]).max() <= 1e-5
    assert [o.name for o in sess.get_outputs()] == ["logits", "features"]
    # The optimiser ran: far fewer nodes than the raw export.
    assert len(patched.graph.node) < len(arch["base"].model.graph.node)


def test_default_optimised_export_falls_into_the_traps() -> None:
    """Why export_base uses optimize=False: the optimised export cannot be patched by name."""
    model = TrapNet()
    program = torch.onnx.export(
        model,
        (torch.zeros(2, 1, 12, 12),),
        dynamo=True,
        optimize=True,
        external_data=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    assert program is not None
    layers = {n: [f"{n}.weight", f"{n}.bias"] for n in ("c1", "c2", "c3", "fc1", "fc2", "fc")}
    with pytest.raises(ExportMappingError, match="cannot be patched by name"):
        _prove(program.model_proto, model.state_dict(), layers, set(layers))
    # The unoptimised export of the same model passes.
    raw = torch_export(model, input_shape=(1, 12, 12))
    assert len(_prove(raw, model.state_dict(), layers, set(layers))) == 12


def test_no_local_information_in_exported_files(arch: dict[str, Any], tmp_path: Path) -> None:
    patched = patch(arch["base"], arch["bank"].scales(arch["forget"]))
    for proto in (arch["base"].model, patched, arch["reexported"]):
        data = proto.SerializeToString()
        assert find_local_paths(data) == []
        stack = [proto]
        while stack:
            msg = stack.pop()
            for fd, value in msg.ListFields():
                if fd.name == "metadata_props" and msg is not proto:
                    raise AssertionError(f"metadata_props left in a {type(msg).__name__}")
                if fd.name == "doc_string":
                    raise AssertionError(f"doc_string left in a {type(msg).__name__}")
                if fd.message_type is not None:
                    stack.extend(value if fd.is_repeated else [value])
    # Only the base keeps model-level props (its own proof), never the shipped model.
    assert not patched.metadata_props and not arch["reexported"].metadata_props


def test_digits_export_filtered_patches_and_checks_parity(digits_export: Any) -> None:
    d = digits_export
    res = export_filtered(d.model, d.bank, [3], parity_inputs=d.x_test[:128], base=d.base)
    assert res.method == "patch"
    assert res.forget == (3,)
    assert res.parity.max_abs_diff <= 1e-4 and res.parity.samples == 128
    assert res.parity.argmax_agreement == 1.0
    assert res.folded_digest == "sha256:" + model_digest(res.folded)
    assert res.base_digest == d.base.base_digest
    assert find_local_paths(res.model.SerializeToString()) == []


def test_export_filtered_falls_back_to_reexport(digits_export: Any) -> None:
    d = digits_export
    res = export_filtered(
        d.model, d.bank, [1, 4], parity_inputs=d.x_test[:32], input_shape=(1, 32, 32)
    )
    assert res.method == "reexport"
    patched = patch(d.base, d.bank.scales([1, 4]))
    assert np.abs(_run(patched, d.x_test[:64]) - _run(res.model, d.x_test[:64])).max() <= 1e-5


def test_stale_base_is_refused_without_fallback(digits_export: Any) -> None:
    d = digits_export
    other = TrapNet()
    stale = export_base(other, input_shape=(1, 12, 12))
    with pytest.raises(ExportMappingError, match="base export was made from model"):
        export_filtered(
            d.model,
            d.bank,
            [3],
            parity_inputs=d.x_test[:8],
            base=stale,
            config=ExportConfig(allow_reexport=False),
        )


def test_parity_breach_fails(digits_export: Any) -> None:
    d = digits_export
    patched = patch(d.base, d.bank.scales([3]))
    # Compared with the *unfiltered* model the forgotten class's logits differ a lot.
    with pytest.raises(ParityError) as err:
        check_parity(patched, d.model, d.x_test[:64])
    assert err.value.max_abs_diff > 1e-4 and err.value.threshold == 1e-4
    report = check_parity(patched, fold(d.model, d.bank, [3]), d.x_test[:64], threshold=1e-4)
    assert report.max_abs_diff <= 1e-4


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda x: x.astype(np.float64), "float32"),
        (lambda x: x[:, :, :16, :16], r"shape \[N, 1, 32, 32\]"),
        (lambda x: x[0], r"shape \[N, 1, 32, 32\]"),
        (lambda x: (x * 0 + 1).astype(np.uint8), "float32"),
        (lambda x: x[:0], "empty"),
        (lambda x: np.full_like(x, np.nan), "NaN"),
        (lambda x: x.tolist(), "numpy array"),
    ],
)
def test_parity_inputs_are_validated(digits_export: Any, bad: Any, match: str) -> None:
    d = digits_export
    with pytest.raises(ExportInputError, match=match):
        check_parity(d.base.model, d.model, bad(d.x_test[:4]))


def test_patch_rejects_bad_scales_and_leaves_base_alone(digits_export: Any) -> None:
    d = digits_export
    before = d.base.model.SerializeToString()
    scales = d.bank.scales([3])
    name = next(iter(scales))
    with pytest.raises(PatchError, match="not patchable"):
        patch(d.base, {"no.such.layer": torch.ones(3)})
    with pytest.raises(PatchError, match="output channels"):
        patch(d.base, {**scales, name: torch.ones(scales[name].shape[0] + 1)})
    nan = scales[name].clone()
    nan[0] = float("nan")
    with pytest.raises(PatchError, match="NaN"):
        patch(d.base, {**scales, name: nan})
    with pytest.raises(PatchError, match="vector"):
        patch(d.base, {**scales, name: scales[name].view(1, -1)})
    assert d.base.model.SerializeToString() == before


def test_base_export_save_load_roundtrip(digits_export: Any, tmp_path: Path) -> None:
    d = digits_export
    assert d.base.path is not None and d.base.path.is_file()
    loaded = BaseExport.load(d.base.path, model=d.model)
    assert dict(loaded.layers) == dict(d.base.layers)
    assert dict(loaded.initializers) == dict(d.base.initializers)
    assert loaded.input_shape == (1, 32, 32) and loaded.input_name == "input"
    scales = d.bank.scales([5])
    a, b = patch(loaded, scales), patch(d.base, scales)
    assert a.SerializeToString() == b.SerializeToString()

    with pytest.raises(ExportMappingError, match="made from model"):
        BaseExport.load(d.base.path, model=TrapNet())

    # A tampered initializer in the saved base fails the proof when the model is given.
    proto = onnx.load_model_from_string(d.base.path.read_bytes())
    init = next(i for i in proto.graph.initializer if i.name == "layer1.0.conv1.weight")
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(proto.SerializeToString())
    with pytest.raises(ExportMappingError, match=r"layer1\.0\.conv1\.weight does not equal"):
        BaseExport.load(tampered, model=d.model)

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx at all")
    with pytest.raises(ExportError):
        BaseExport.load(junk)
    with pytest.raises(ExportError, match="not found"):
        BaseExport.load(tmp_path / "missing.onnx")
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(patch(d.base, scales).SerializeToString())
    with pytest.raises(ExportError, match="not a Lethe base export"):
        BaseExport.load(plain)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(self.a(x.flatten(1))))


def test_tied_weights_are_refused() -> None:
    with pytest.raises(ExportMappingError, match="share weights"):
        export_base(_Tied(), input_shape=(1, 2, 2))


def test_unknown_targets_are_refused() -> None:
    with pytest.raises(ExportMappingError, match="not conv/linear layers"):
        export_base(TrapNet(), input_shape=(1, 12, 12), targets=["bn1"])
