"""The exports' second output ``features``: the auditor's probe without torch (DESIGN §4, §7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import timm
import torch
from onnx import numpy_helper

from lethe.export import BaseExport, export_base, export_filtered, patch, reexport
from lethe.export._base import add_features_output, classifier_head, torch_export
from lethe.filters import fold
from lethe.metrics import TorchBackend
from lethe_audit.metrics import FEATURES_OUTPUT, ImageSet, OnnxBackend, evaluate
from tests._helpers import random_bank

from ._helpers import TrapNet

# A tolerance for the probe AUC re-measured on ONNX features: they differ from torch's by
# float rounding (~1e-6), which can swap two hold-out scores at most.
PROBE_AUC_TOLERANCE = 0.005


def _vit() -> torch.nn.Module:
    return timm.create_model("test_vit", num_classes=10, in_chans=1, img_size=16, patch_size=4)


@pytest.mark.parametrize(("make", "shape"), [(TrapNet, (1, 12, 12)), (_vit, (1, 16, 16))])
def test_features_output_equals_torch_features_and_keeps_logits_first(
    make: Any, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    model = make().eval()
    base = export_base(model, input_shape=shape)
    assert base.features_name == FEATURES_OUTPUT
    bank = random_bank(model, seed=1)
    folded = fold(model, bank, (2, 7))
    x = torch.randn(12, *shape, generator=torch.Generator().manual_seed(3)).numpy()
    torch_b = TorchBackend(folded)
    for proto in (patch(base, bank.scales((2, 7))), reexport(folded, input_shape=shape)):
        assert [o.name for o in proto.graph.output] == ["logits", FEATURES_OUTPUT]
        onnx_b = OnnxBackend(proto)
        assert onnx_b.feature_source == f"graph output {FEATURES_OUTPUT!r}"
        assert np.abs(onnx_b.features(x) - torch_b.features(x)).max() <= 1e-5
        assert np.abs(onnx_b.logits(x) - torch_b.logits(x)).max() <= 1e-5


def test_features_output_touches_no_initializer() -> None:
    """Patching by name still holds: the extra output only adds an Identity node."""
    model = TrapNet()
    plain = torch_export(model, input_shape=(1, 12, 12), features_output=False)
    with_features = torch_export(model, input_shape=(1, 12, 12))
    assert [o.name for o in plain.graph.output] == ["logits"]

    def inits(p: onnx.ModelProto) -> dict[str, bytes]:
        return {i.name: numpy_helper.to_array(i).tobytes() for i in p.graph.initializer}

    assert inits(plain) == inits(with_features)
    added = [n for n in with_features.graph.node if n.name == "lethe_features"]
    assert len(added) == 1 and added[0].op_type == "Identity"
    assert len(with_features.graph.node) == len(plain.graph.node) + 1
    assert classifier_head(model) == "fc"
    # A weight no node applies: nothing is added.
    assert not add_features_output(plain, "no.such.weight")
    assert [o.name for o in plain.graph.output] == ["logits"]


def test_saved_base_export_records_and_reloads_its_features(tmp_path: Path) -> None:
    model = TrapNet()
    path = tmp_path / "base.onnx"
    export_base(model, input_shape=(1, 12, 12), path=path)
    loaded = BaseExport.load(path, model=model)
    assert loaded.features_name == FEATURES_OUTPUT
    io = json.loads({p.key: p.value for p in loaded.model.metadata_props}["lethe.base.io"])
    assert io["features"] == FEATURES_OUTPUT


def _without_features(proto: onnx.ModelProto) -> onnx.ModelProto:
    """An export as Lethe wrote them before the second output existed (the optimiser may have
    named the head's input ``features``: only the graph output goes)."""
    old = onnx.ModelProto()
    old.CopyFrom(proto)
    keep = [o for o in old.graph.output if o.name != FEATURES_OUTPUT]
    del old.graph.output[:]
    old.graph.output.extend(keep)
    return old


def test_old_exports_without_the_output_fall_back_or_say_why(digits_export: Any) -> None:
    d = digits_export
    old = _without_features(patch(d.base, d.bank.scales([3])))
    found = OnnxBackend(old)
    assert "found in the graph" in found.feature_source  # the Gemm head's input
    off = OnnxBackend(old, features=None)
    data = ImageSet(d.x_test, d.test.y, 10)
    result = evaluate(off, data, forget=[3], seed=0, progress=False)
    assert result.probe is None
    assert dict(result.skipped)["probe"] == (
        "the ONNX model provides no penultimate features: features were turned off"
    )


def test_auditor_onnx_probe_matches_torch_on_digits(digits_export: Any) -> None:
    d = digits_export
    res = export_filtered(d.model, d.bank, [3], parity_inputs=d.x_test[:64], base=d.base)
    assert [o.name for o in res.model.graph.output] == ["logits", FEATURES_OUTPUT]
    data = ImageSet(d.x_test, d.test.y, 10)
    kw: dict[str, Any] = {"forget": [3], "seed": 0, "progress": False}
    by_torch = evaluate(TorchBackend(res.folded), data, base=TorchBackend(d.model), **kw)
    onnx_b = OnnxBackend(res.model.SerializeToString())
    by_onnx = evaluate(onnx_b, data, **kw)
    assert onnx_b.feature_source == f"graph output {FEATURES_OUTPUT!r}"
    assert by_torch.probe is not None and by_onnx.probe is not None
    assert abs(by_onnx.probe.auc - by_torch.probe.auc) <= PROBE_AUC_TOLERANCE
    assert by_onnx.probe.feature_dim == by_torch.probe.feature_dim
    # Same split and hold-out as the torch measurement, so the numbers are comparable.
    assert by_onnx.probe.test_samples == by_torch.probe.test_samples
    assert by_onnx.accuracy.forget_accuracy == by_torch.accuracy.forget_accuracy
