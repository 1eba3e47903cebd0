"""Issue 16 end to end: an outside model (ImageNet mean/std, torch.save wrapped, DDP prefixes)
registered through the CLI, filtered, published; the published ONNX fed as documented gives
Lethe's measured retain accuracy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.byo.conftest import IMAGENET_MEAN, IMAGENET_STD, OUTSIDE_SPEC, Outside


def _cli(project: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    from lethe.cli import main

    res = CliRunner().invoke(main, ["--project", str(project), *args, "--json"])
    return res.exit_code, json.loads(res.stdout), res.stderr


def _register_args(ckpt: Path, data: Path) -> list[str]:
    return [
        "model", "register", "shop", "--checkpoint", str(ckpt),
        "--eval-data", str(data / "eval.npz"), "--train-data", str(data / "train.npz"),
        "--arch", "resnet18", "--num-classes", "10", "--in-chans", "3", "--input-size", "8x8",
        "--small-stem", "--timm-kwargs", json.dumps(OUTSIDE_SPEC["kwargs"]),
    ]  # fmt: skip


def _save_npz(arr: Any, path: Path) -> None:
    np.savez(path, x=arr.x, y=arr.y, classes=np.asarray(arr.classes, dtype=str))


def _onnx_retain(onnx_path: Path, test: Any, forgotten: set[int]) -> float:
    import onnx
    import onnxruntime as ort

    from lethe.data import Preprocess

    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    pre = Preprocess.from_config(json.loads(meta["lethe.preprocessing"]))  # as documented
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: pre.numpy(test.x)})[0]
    keep = ~np.isin(test.y, list(forgotten))
    return float((logits.argmax(1)[keep] == test.y[keep]).mean())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_outside_model_through_the_cli(outside: Outside, tmp_path: Path) -> None:
    import torch

    from lethe.workflow import Lethe

    data = tmp_path / "data"
    data.mkdir()
    _save_npz(outside.test, data / "eval.npz")
    _save_npz(outside.train, data / "train.npz")
    ckpt = tmp_path / "ckpt.pt"
    wrapped = {f"module.{k}": v for k, v in outside.state_dict.items()}
    torch.save({"epoch": 8, "model_state_dict": wrapped}, ckpt)
    project = tmp_path / "p"
    Lethe.init(project, origin="test.example/byo").close()
    args = _register_args(ckpt, data)

    code, doc, err = _cli(project, *args)  # no preprocessing: refused, says what to pass
    assert code == 171 and "--mean R,G,B" in doc["error"]["message"], (code, doc, err)
    norm = ["--mean", ",".join(map(str, IMAGENET_MEAN)), "--std", ",".join(map(str, IMAGENET_STD))]
    code, doc, _ = _cli(project, *args, "--mean", "0.5", "--std", "0.5", "--expect-accuracy", "0.9")
    assert code == 172 and "preprocessing" in doc["error"]["message"]
    # --timm-preprocessing with explicit options: the options win, timm fills the rest
    timm = ["--timm-preprocessing", "--crop-pct", "1", "--interpolation", "bilinear"]
    code, doc, _ = _cli(project, *args[:2], "shop-timm", *args[3:], *timm, "--no-onnx")
    assert code == 0, doc
    spec = doc["model"]["spec"]
    assert (spec["crop_pct"], spec["interpolation"]) == (1.0, "bilinear")
    assert spec["mean"] == pytest.approx(list(IMAGENET_MEAN))  # from timm
    code, doc, _ = _cli(project, *args, *norm, "--device", "cpu")
    assert code == 0, doc
    assert doc["base_accuracy"] == pytest.approx(outside.real_accuracy, abs=1e-9)
    assert doc["model"]["spec"]["mean"] == pytest.approx(list(IMAGENET_MEAN))

    code, doc, _ = _cli(project, "filters", "train", "shop", "--device", "cpu", "--quiet")
    assert code == 0, doc
    report = doc["classes"]  # per-class forget / retain the filters reach: take the best class
    assert len(report) == 10 and all(r["forget_acc"] is not None for r in report)
    cls = min(range(10), key=lambda c: (report[c]["forget_acc"], -report[c]["retain_acc"]))
    with Lethe.open(project) as lt:
        r = lt.file(subject="a@example.com", classes=[cls], legal_basis="gdpr-17-1-b", model="shop")
        lt.approve(r.id, actor="dpo")
        res = lt.apply("shop", phase="mask", relearn=False, progress=False, device="cpu")
        assert res.passed, res.verdict
        pub = lt.published("shop")
        assert pub is not None
        metrics = res.metrics if isinstance(res.metrics, dict) else res.metrics.to_dict()
        retain = metrics["accuracy"]["retain_accuracy"]
        assert abs(_onnx_retain(pub["onnx"], outside.test, {cls}) - retain) <= 0.01
        _check_the_record(lt, tmp_path, outside.real_accuracy)


def _check_the_record(lt: Any, tmp_path: Path, base_accuracy: float) -> None:
    """The log and the report carry what was measured and how the model is fed."""
    from lethe_audit.report import build_report
    from lethe_audit.statements import Envelope, Statement

    events = [
        Statement.from_envelope(Envelope.from_json(raw)).predicate
        for _, raw in lt.log.iter_entries()
    ]
    (reg,) = [
        e for e in events
        if e.get("event") == "model.registered" and e["details"]["model"] == "shop"
    ]  # fmt: skip
    assert reg["details"]["base_accuracy"] == pytest.approx(base_accuracy, abs=1e-9)
    (att,) = [e for e in events if e.get("outcome") == "applied"]
    assert att["preprocessing"]["mean"] == pytest.approx(list(IMAGENET_MEAN))
    assert att["preprocessing"]["std"] == pytest.approx(list(IMAGENET_STD))
    bundle = lt.export_bundle(tmp_path / "bundle.zip")
    html = build_report(bundle, lt.verifiers(), origin=lt.log.origin()).to_html()
    assert "Model input (preprocessing)" in html and "0.485" in html


def test_register_from_an_image_folder(outside: Outside, tmp_path: Path) -> None:
    """An ImageFolder with a notebook's .ipynb_checkpoints folder: not a class."""
    from PIL import Image

    from lethe.workflow import Lethe

    root = tmp_path / "folder"
    for i, (x, y) in enumerate(zip(outside.test.x, outside.test.y, strict=True)):
        d = root / outside.test.classes[int(y)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[..., 0]).save(d / f"{i}.png")
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(outside.test.x[0, ..., 0]).save(root / ".ipynb_checkpoints" / "a.png")
    ckpt = tmp_path / "w.pt"
    torch_save(outside.state_dict, ckpt)
    project = tmp_path / "p"
    Lethe.init(project, origin="test.example/byo").close()
    args = _register_args(ckpt, tmp_path)
    args[args.index("--eval-data") + 1] = str(root)
    del args[args.index("--train-data") : args.index("--train-data") + 2]
    norm = ["--mean", ",".join(map(str, IMAGENET_MEAN)), "--std", ",".join(map(str, IMAGENET_STD))]
    code, doc, _ = _cli(project, *args, *norm, "--no-onnx")
    assert code == 0, doc
    assert doc["model"]["class_names"] == list(outside.test.classes)
    assert doc["base_accuracy"] == pytest.approx(outside.real_accuracy, abs=1e-9)


def torch_save(sd: dict[str, Any], path: Path) -> None:
    import torch

    torch.save(sd, path)
