"""The torch and onnxruntime backends on real (tiny) models trained on sklearn digits."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from lethe.metrics import TorchBackend, randomized_copy
from lethe_audit.errors import BackendError, ModelInputError
from lethe_audit.metrics import (
    ImageSet,
    MetricsResult,
    OnnxBackend,
    Policy,
    RelearnConfig,
    RelearnMetric,
    evaluate,
    find_head_input,
    random_onnx_model,
    softmax,
)

from .conftest import FORGET, Digits

LN2 = math.log(2.0)


def test_torch_and_onnxruntime_agree_on_the_exported_model(
    timm_model: nn.Module, timm_onnx: Path, digits: Digits
) -> None:
    tb, ob = TorchBackend(timm_model), OnnxBackend(timm_onnx, batch_size=100)
    x = digits.test.images
    p_torch, p_onnx = softmax(tb.logits(x)), softmax(ob.logits(x))
    assert np.abs(p_torch - p_onnx).max() <= 1e-4
    np.testing.assert_allclose(ob.features(x), tb.features(x), atol=1e-4)

    kw = {"forget": [FORGET], "train_set": digits.train, "seed": 0, "progress": False}
    r_torch = evaluate(tb, digits.test, parity_reference=ob, **kw)  # type: ignore[arg-type]
    r_onnx = evaluate(ob, digits.test, **kw)  # type: ignore[arg-type]
    assert r_torch.accuracy == r_onnx.accuracy  # every accuracy, per class, exactly
    for r in (r_torch, r_onnx):  # plain JSON types only (no numpy scalars leak through)
        assert MetricsResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r_torch.accuracy.retain_accuracy > 0.9  # the model did learn digits
    assert r_torch.parity is not None and r_torch.parity.max_abs_logit_diff <= 1e-4
    assert Policy(max_forget_accuracy=None, max_retain_drop=None).evaluate(r_torch).passed
    assert r_torch.mia is not None and r_onnx.mia is not None
    assert r_torch.mia.efficacy == pytest.approx(r_onnx.mia.efficacy, abs=0.02)
    assert r_torch.probe is not None and r_onnx.probe is not None
    assert r_torch.probe.auc == pytest.approx(r_onnx.probe.auc, abs=1e-3)
    # ZRF against each backend's own seeded random model: both in range, documented scheme.
    assert r_torch.zrf is not None and r_onnx.zrf is not None
    for z in (r_torch.zrf, r_onnx.zrf):
        assert 1 - LN2 <= z.zrf <= 1
    assert r_torch.zrf.random_model.startswith("torch-reset-parameters-v1: seed 0")
    assert r_onnx.zrf.random_model.startswith("onnx-fanin-uniform-v1: seed 0")


def test_onnx_input_is_checked(timm_onnx: Path, digits: Digits) -> None:
    ob = OnnxBackend(timm_onnx)
    assert ob.input_shape[1:] == (1, 16, 16)
    small = digits.test.images[:, :, ::2, ::2]  # 8x8 instead of 16x16
    with pytest.raises(ModelInputError, match=r"expects shape \['N', 1, 16, 16\], got images"):
        ob.logits(np.ascontiguousarray(small))
    with pytest.raises(ModelInputError, match="expects shape"):
        ob.logits(digits.test.images[:, 0])
    with pytest.raises(ModelInputError, match=r"astype\(numpy.float32\)"):
        ob.logits(digits.test.images.astype(np.float64))
    wrong = ImageSet(np.ascontiguousarray(small), digits.test.labels, 10)
    with pytest.raises(ModelInputError, match="preprocess them to the model's input size"):
        evaluate(ob, wrong, forget=[FORGET], progress=False)
    with pytest.raises(BackendError, match="cannot parse"):
        OnnxBackend(b"not an onnx model")
    with pytest.raises(BackendError, match="cannot read"):
        OnnxBackend(timm_onnx.with_name("missing.onnx"))


def test_onnx_random_model_is_seeded_and_redraws_every_weight(timm_onnx: Path) -> None:
    proto = onnx.load(str(timm_onnx))
    a, desc = random_onnx_model(proto, seed=0)
    b, _ = random_onnx_model(proto, seed=0)
    c, _ = random_onnx_model(proto, seed=1)
    orig = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    ra = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    rb = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    rc = {i.name: numpy_helper.to_array(i) for i in c.graph.initializer}
    assert set(ra) == set(orig)
    conv_or_fc = [n for n in orig if n.endswith(".weight") and orig[n].ndim >= 2] + ["fc.bias"]
    assert desc.startswith(f"onnx-fanin-uniform-v1: seed 0, {len(conv_or_fc)} weight/bias")
    for name in conv_or_fc:
        assert np.array_equal(ra[name], rb[name])
        assert not np.array_equal(ra[name], rc[name])
        assert not np.array_equal(ra[name], orig[name])
        fan_in = math.prod(orig["fc.weight" if name == "fc.bias" else name].shape[1:])
        assert np.abs(ra[name]).max() <= 1 / math.sqrt(fan_in)
        assert ra[name].dtype == orig[name].dtype and ra[name].shape == orig[name].shape
    for name in orig:
        if name.endswith("running_var") or (name.endswith(".weight") and orig[name].ndim == 1):
            assert (ra[name] == 1).all()
        if name.endswith("running_mean") or (name.endswith(".bias") and name != "fc.bias"):
            assert (ra[name] == 0).all()
    assert (
        proto.graph.initializer[0].raw_data
        == onnx.load(str(timm_onnx)).graph.initializer[0].raw_data
    )  # the input model is not modified


def test_onnx_random_model_follows_transposed_matmul_weights() -> None:
    # y = x @ W.T + b as exporters write a linear layer on 3-D input: fan_in = 5, not 3.
    w = numpy_helper.from_array(np.ones((3, 5), np.float32), "head.weight")
    b = numpy_helper.from_array(np.ones(3, np.float32), "head.bias")
    pos = numpy_helper.from_array(np.full(5, 7, np.float32), "pos_embed")
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "pos_embed"], ["xp"]),
            helper.make_node("Transpose", ["head.weight"], ["wt"], perm=[1, 0]),
            helper.make_node("MatMul", ["xp", "wt"], ["mm"]),
            helper.make_node("Add", ["mm", "head.bias"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w, b, pos],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rand, desc = random_onnx_model(model, seed=5)
    got = {i.name: numpy_helper.to_array(i) for i in rand.graph.initializer}
    assert "2 weight/bias initializers" in desc
    assert np.abs(got["head.weight"]).max() <= 1 / math.sqrt(5)
    assert np.abs(got["head.weight"]).max() > 1 / math.sqrt(5) / 2  # drawn, not shrunk
    assert not (got["head.bias"] == 1).any()
    assert (got["pos_embed"] == 7).all()  # not a conv/linear weight: kept
    assert find_head_input(model) == "xp"
    ob = OnnxBackend(model)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(ob.features(x), x + 7)
    with pytest.raises(BackendError, match="no Conv/Gemm/MatMul"):
        random_onnx_model(
            helper.make_model(
                helper.make_graph(
                    [helper.make_node("Relu", ["x"], ["y"])],
                    "g",
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                )
            ),
            seed=0,
        )


@pytest.mark.parametrize("which", ["cnn", "timm_model"])
def test_torch_random_copy_is_seeded_and_side_effect_free(
    which: str, request: pytest.FixtureRequest
) -> None:
    model: nn.Module = request.getfixturevalue(which)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    a, desc = randomized_copy(model, seed=0)
    b, _ = randomized_copy(model, seed=0)
    c, _ = randomized_copy(model, seed=1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert desc.startswith("torch-reset-parameters-v1: seed 0")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
        if v.is_floating_point():
            assert torch.equal(a.state_dict()[k], b.state_dict()[k])
            if k.endswith("weight") and v.ndim >= 2:
                assert not torch.equal(a.state_dict()[k], v)
                assert not torch.equal(a.state_dict()[k], c.state_dict()[k])
            if k.endswith("running_mean"):
                assert (a.state_dict()[k] == 0).all()


def test_torch_backend_does_not_change_the_module(cnn: nn.Module, digits: Digits) -> None:
    cnn.train()
    try:
        state = {k: v.clone() for k, v in cnn.state_dict().items()}
        tb = TorchBackend(cnn, batch_size=64)
        z1 = tb.logits(digits.test.images)
        tb.features(digits.test.images)
        assert all(m.training for m in cnn.modules())  # modes restored
        for k, v in cnn.state_dict().items():
            assert torch.equal(v, state[k])  # BatchNorm statistics not updated
        cnn.eval()
        with torch.no_grad():
            ref = cnn(torch.tensor(digits.test.images)).numpy()
        np.testing.assert_allclose(z1, ref, rtol=1e-5, atol=1e-5)
    finally:
        cnn.eval()


def test_torch_features_hook_and_timm_paths(
    cnn: nn.Module, timm_model: nn.Module, digits: Digits
) -> None:
    x = digits.test.images[:50]
    f = TorchBackend(cnn).features(x)  # plain CNN: the head's input, via a forward hook
    with torch.no_grad():
        ref = cnn[:-1](torch.tensor(x)).numpy()  # type: ignore[index]
    assert f.shape == (50, 64)
    np.testing.assert_allclose(f, ref, rtol=1e-6)
    ft = TorchBackend(timm_model).features(x)  # timm: forward_head(pre_logits=True)
    assert ft.shape == (50, timm_model.num_features)  # type: ignore[attr-defined]
    fh = TorchBackend(timm_model, head="fc").features(x)  # hook path gives the same tensor
    np.testing.assert_allclose(fh, ft, rtol=1e-6)
    with pytest.raises(BackendError, match="no submodule"):
        TorchBackend(cnn, head="classifier").features(x)


def test_torch_input_and_device_errors(cnn: nn.Module, digits: Digits) -> None:
    tb = TorchBackend(cnn)
    with pytest.raises(ModelInputError, match="float32"):
        tb.logits(digits.test.images.astype(np.float64))
    with pytest.raises(ModelInputError, match="rejected a batch"):
        tb.logits(np.zeros((2, 3, 16, 16), np.float32))
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA"):
            TorchBackend(cnn, device="cuda")
        assert TorchBackend(cnn, device="auto").device.type == "cpu"


def test_relearn_time_beside_base_and_retrained(
    cnn: nn.Module, cnn_retrained: nn.Module, digits: Digits
) -> None:
    before = {k: v.clone() for k, v in cnn_retrained.state_dict().items()}
    result = evaluate(
        TorchBackend(cnn_retrained),
        digits.test,
        forget=[FORGET],
        base=TorchBackend(cnn),
        train_set=digits.train,
        retrained=TorchBackend(cnn_retrained),
        relearn=RelearnConfig(),
        seed=0,
        progress=False,
    )
    r = result.relearn
    assert r is not None and r.base is not None and r.retrained is not None
    assert r.train_samples == 5 and r.config == RelearnConfig()
    assert r.base.steps == 0 and r.base.reached  # the unfiltered model already knows it
    assert r.model.accuracies[0] == 0.0  # never saw the class
    assert r.model.reached and r.model.steps >= 3
    assert r.model == r.retrained  # same model, same seed: the same run
    assert MetricsResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert r.model.accuracies[-1] >= 0.5 > max(r.model.accuracies[:-1])
    for k, v in cnn_retrained.state_dict().items():
        assert torch.equal(v, before[k])  # fine-tuning happened on a copy
    capped = TorchBackend(cnn_retrained).relearn(
        digits.train.images[digits.train.labels == FORGET][:5],
        digits.train.labels[digits.train.labels == FORGET][:5],
        digits.test.images[digits.test.labels == FORGET],
        digits.test.labels[digits.test.labels == FORGET],
        config=RelearnConfig(max_steps=2),
        seed=0,
    )
    assert (capped.reached, capped.steps, len(capped.accuracies)) == (False, 2, 3)


def test_relearn_over_seeds_on_the_torch_backend(cnn_retrained: nn.Module, digits: Digits) -> None:
    def measure(seeds: int, seed: int = 0) -> RelearnMetric:
        result = evaluate(
            TorchBackend(cnn_retrained),
            digits.test,
            forget=[FORGET],
            train_set=digits.train,
            relearn=RelearnConfig(seeds=seeds),
            seed=seed,
            progress=False,
        )
        assert result.relearn is not None
        return result.relearn

    r = measure(3)
    assert len(r.model_runs) == 3 and all(run.reached for run in r.model_runs)
    # Run i is the single-seed measurement with seed i (other samples, other torch seed).
    assert [measure(1, seed=i).model for i in range(3)] == list(r.model_runs)
    steps = sorted(run.steps for run in r.model_runs)
    assert r.model.steps == steps[1] and r.steps == float(steps[1])


def test_auditor_path_runs_without_torch(timm_onnx: Path, tmp_path: Path) -> None:
    """lethe_audit re-measures the exported model with torch, timm and lethe unimportable."""
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "timm", "lethe", "torchvision"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from sklearn.datasets import load_digits
        from lethe_audit.metrics import ImageSet, OnnxBackend, Policy, evaluate
        d = load_digits()
        x = (np.kron(d.images, np.ones((2, 2))) / 16.0).astype(np.float32)[:, None]
        data = ImageSet(x[:400], d.target[:400], 10)
        r = evaluate(OnnxBackend({str(timm_onnx)!r}), data, forget=[3], progress=False)
        v = Policy(max_parity=None).evaluate(r)
        assert r.zrf is not None and r.probe is not None
        assert not v.passed and v.reasons[0].startswith("forget accuracy")
        assert not any(m.split(".")[0] in ("torch", "timm", "lethe") for m in sys.modules)
        print("ok", r.accuracy.forget_accuracy)
        """
    )
    root = Path(__file__).resolve().parents[2]
    env_path = f"{root / 'audit'}"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backend_matches_cpu_and_leaves_the_module_on_cpu(
    timm_model: nn.Module, digits: Digits
) -> None:
    x = digits.test.images
    cpu = TorchBackend(timm_model)
    gpu = TorchBackend(timm_model, device="cuda")
    assert gpu.device.type == "cuda"
    assert next(timm_model.parameters()).device.type == "cpu"  # the backend used a copy
    np.testing.assert_allclose(gpu.logits(x), cpu.logits(x), atol=1e-3)
    np.testing.assert_allclose(gpu.features(x), cpu.features(x), atol=1e-3)
    # The random model is drawn on CPU whatever the device: the same weights on both.
    (rand_gpu, _), (rand_cpu, _) = gpu.random_init(seed=0), cpu.random_init(seed=0)
    for (k, a), b in zip(
        rand_gpu.module.state_dict().items(), rand_cpu.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a.cpu(), b), k
    result = evaluate(
        gpu,
        digits.test,
        forget=[FORGET],
        train_set=digits.train,
        relearn=RelearnConfig(),
        progress=False,
    )
    assert result.relearn is not None and result.relearn.model.steps == 0
