"""Issue 16: long steps say what they do when stderr is not a terminal (a CI log, a pipe):
registration's ONNX export, one line per filter-training epoch, per fit epoch, per inference
pass and per relearn step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.byo.conftest import IMAGENET_MEAN, IMAGENET_STD, OUTSIDE_SPEC, Outside, save_safetensors


def _npz(arr, path: Path) -> str:  # type: ignore[no-untyped-def]
    np.savez(path, x=arr.x, y=arr.y, classes=np.asarray(arr.classes, dtype=str))
    return str(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_register_and_filters_train_print_lines_without_a_terminal(
    outside: Outside, tmp_path: Path
) -> None:
    from lethe.cli import main
    from lethe.workflow import Lethe

    ckpt = save_safetensors(outside.state_dict, tmp_path / "w.safetensors")
    project = tmp_path / "p"
    Lethe.init(project, origin="test.example/byo").close()
    runner = CliRunner()  # its stderr is not a terminal

    def cli(*args: str) -> tuple[dict, str]:  # type: ignore[type-arg]
        res = runner.invoke(main, ["--project", str(project), *args, "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout), res.stderr

    _, err = cli(
        "model", "register", "shop", "--checkpoint", str(ckpt),
        "--eval-data", _npz(outside.test, tmp_path / "eval.npz"),
        "--train-data", _npz(outside.train, tmp_path / "train.npz"),
        "--arch", "resnet18", "--num-classes", "10", "--input-size", "8x8", "--small-stem",
        "--timm-kwargs", json.dumps(OUTSIDE_SPEC["kwargs"]),
        "--mean", ",".join(map(str, IMAGENET_MEAN)), "--std", ",".join(map(str, IMAGENET_STD)),
    )  # fmt: skip
    assert "exporting the base model to ONNX" in err
    assert "preprocessing (options): pixels/255 -> [0, 1]" in err
    doc, err = cli("filters", "train", "shop", "--epochs", "2", "--device", "cpu")
    lines = [ln for ln in err.splitlines() if ln.startswith("filters epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["filters epoch 1/2", "filters epoch 2/2"]
    assert f"retain acc {doc['epochs'][-1]['retain_acc']:.3f}" in lines[-1]  # the same numbers


def test_fit_inference_and_relearn_log_a_line_per_step(
    outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from torch.utils.data import TensorDataset

    from lethe.cli._models import progress_lines
    from lethe.metrics import TorchBackend
    from lethe.models import ModelSpec, create_model, fit
    from lethe_audit.metrics import RelearnConfig

    spec = ModelSpec(**OUTSIDE_SPEC, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # type: ignore[arg-type]
    x = spec.preprocess(outside.train.x[:64])
    y = torch.from_numpy(outside.train.y[:64])
    model = create_model(spec, seed=0)
    with progress_lines(True):
        fit(model, TensorDataset(x, y), epochs=2, progress=True, desc="reference retrain")
        backend = TorchBackend(model)
        backend.logits(x.numpy(), progress=True)
        cfg = RelearnConfig(max_steps=2, threshold=1.0, lr=1e-9)  # not reached: two steps
        backend.relearn(
            x.numpy(), y.numpy(), x.numpy(), y.numpy(), config=cfg, seed=0, progress=True
        )
    err = capsys.readouterr().err
    assert "reference retrain epoch 1/2: loss " in err and "reference retrain epoch 2/2" in err
    assert "torch logits: 64 images in " in err
    assert "relearn step 1/2: accuracy " in err and "relearn step 2/2" in err
