"""Static int8 quantization: format, metrics (lethe_audit.metrics on onnxruntime), errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from lethe.errors import CalibrationError, ConfigError, ExportInputError
from lethe.export import QuantizeConfig, patch, quantize_int8
from lethe_audit.errors import PolicyError
from lethe_audit.metrics import ImageSet, OnnxBackend, Policy, evaluate, random_onnx_model

from ._helpers import find_local_paths

FORGET = [3]


@pytest.fixture(scope="module")
def models(digits_export: Any) -> dict[str, Any]:
    d = digits_export
    retain = d.x_train[d.train.y != FORGET[0]]
    fp32 = patch(d.base, d.bank.scales(FORGET))
    unfiltered = patch(d.base, {})
    return {
        "fp32": fp32,
        "unfiltered": unfiltered,
        "int8": quantize_int8(fp32, retain, config=QuantizeConfig(max_samples=256), progress=False),
        # What a broken pipeline could ship: the int8 model of the *unfiltered* weights.
        "int8_unfiltered": quantize_int8(
            unfiltered, retain, config=QuantizeConfig(max_samples=256), progress=False
        ),
        "retain": retain,
    }


def _head_input(model: onnx.ModelProto) -> str:
    """The classifier head's input, looking through the Q/DQ pair int8 graphs put after it.

    (``lethe_audit.metrics.find_head_input`` stops at the DequantizeLinear of a QDQ graph.)
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers[model.graph.output[0].name]
    while node.op_type in ("DequantizeLinear", "QuantizeLinear"):
        node = producers[node.input[0]]
    assert node.op_type == "Gemm"
    return str(node.input[0])


def _evaluate(digits_export: Any, model: onnx.ModelProto, base: onnx.ModelProto) -> Any:
    d = digits_export
    # The metrics backend cannot re-draw weights inside a QDQ graph; the ZRF reference is a
    # random fp32 model of the same architecture.
    random_model, _ = random_onnx_model(base, seed=0)
    return evaluate(
        OnnxBackend(model, features=_head_input(model)),
        ImageSet(d.x_test, d.test.y, 10),
        forget=FORGET,
        base=OnnxBackend(base),
        random_model=OnnxBackend(random_model),
        seed=0,
        progress=False,
    )


def test_int8_model_is_static_qdq_per_channel(models: dict[str, Any]) -> None:
    q, fp32 = models["int8"], models["fp32"]
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    # Activations: QuantizeLinear with uint8 zero points.
    act_zp = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(z.dtype == np.uint8 for z in act_zp)
    # Weights: int8 initializers dequantized per output channel (vector scales, axis 0).
    weight_dq = [
        n
        for n in q.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].dtype == np.int8
        and inits[n.input[0]].ndim == 4
    ]
    assert weight_dq
    for n in weight_dq:
        assert inits[n.input[1]].ndim == 1 and inits[n.input[1]].shape[0] > 1
    size32, size8 = len(fp32.SerializeToString()), len(q.SerializeToString())
    assert size8 < 0.3 * size32
    assert not q.metadata_props
    assert find_local_paths(q.SerializeToString()) == []


def test_int8_metrics_pass_the_policy(digits_export: Any, models: dict[str, Any]) -> None:
    fp32 = _evaluate(digits_export, models["fp32"], models["unfiltered"])
    int8 = _evaluate(digits_export, models["int8"], models["unfiltered"])
    policy = Policy(max_parity=None)
    policy.check(fp32)
    policy.check(int8)
    assert int8.accuracy.forget_accuracy <= 0.01
    assert abs(int8.accuracy.retain_accuracy - fp32.accuracy.retain_accuracy) <= 0.02
    # The same metric set as for fp32 models is recorded.
    recorded = int8.to_dict()
    assert recorded["accuracy"]["forget_accuracy"] == int8.accuracy.forget_accuracy
    assert int8.zrf is not None and fp32.zrf is not None
    assert int8.probe is not None


def test_int8_model_where_the_class_comes_back_fails(
    digits_export: Any, models: dict[str, Any]
) -> None:
    result = _evaluate(digits_export, models["int8_unfiltered"], models["unfiltered"])
    assert result.accuracy.forget_accuracy > 0.5
    with pytest.raises(PolicyError, match="forget accuracy"):
        Policy(max_parity=None).check(result)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda x: x.astype(np.float64), "float32"),
        (lambda x: (x > 0).astype(np.uint8), "float32"),
        (lambda x: x.transpose(0, 2, 3, 1), r"\[N, 1, 32, 32\]"),
        (lambda x: x[:, :, :28, :28], r"\[N, 1, 32, 32\]"),
        (lambda x: x.reshape(len(x), -1), r"\[N, 1, 32, 32\]"),
        (lambda x: x[:0], "empty"),
        (lambda x: x.tolist(), "numpy array"),
    ],
)
def test_bad_calibration_sets_fail_clearly(models: dict[str, Any], bad: Any, match: str) -> None:
    with pytest.raises(CalibrationError, match=match) as err:
        quantize_int8(models["fp32"], bad(models["retain"][:8]), progress=False)
    assert isinstance(err.value, ExportInputError) and isinstance(err.value, ValueError)


def test_calibration_accepts_torch_tensors(models: dict[str, Any]) -> None:
    x = torch.from_numpy(models["retain"][:16])
    q = quantize_int8(models["fp32"], x, config=QuantizeConfig(per_channel=False), progress=False)
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)


def test_quantize_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="calibration_method"):
        QuantizeConfig(calibration_method="kl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size"):
        QuantizeConfig(batch_size=0)
    with pytest.raises(ConfigError, match="max_samples"):
        QuantizeConfig(max_samples=0)
