"""model_digest: canonical, stable across processes and save/load, sensitive to any change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from lethe import model_digest
from lethe.models import ModelSpec, create_model, load_checkpoint, save_checkpoint

SPEC = ModelSpec("resnet18", 10, 1, (16, 16))


def test_stable_across_processes_and_save_load(tmp_path: Path) -> None:
    model = create_model(SPEC, seed=5)
    d = model_digest(model)
    p = save_checkpoint(model, SPEC, tmp_path / "m.safetensors", trained_by="lethe")
    loaded, spec = load_checkpoint(p)
    assert spec == SPEC.explicit() and spec.mean == (0.5,)  # Lethe's default, written out
    assert model_digest(loaded) == d
    code = (
        "from lethe.models import load_checkpoint; from lethe import model_digest;"
        f"print(model_digest(load_checkpoint({str(p)!r})[0]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == d


def test_any_change_changes_the_digest() -> None:
    model = create_model(SPEC, seed=5)
    d = model_digest(model)
    with torch.no_grad():
        model.layer1[0].conv1.weight[0, 0, 0, 0] += 1e-7
    assert model_digest(model) != d
    model2 = create_model(SPEC, seed=5)
    model2.bn1.running_mean += 1  # buffers count too
    assert model_digest(model2) != d


def test_insertion_order_does_not_matter() -> None:
    from lethe._digest import tensors_digest

    a = {"x": torch.ones(2), "y": torch.zeros(3, dtype=torch.int64)}
    b = {"y": torch.zeros(3, dtype=torch.int64), "x": torch.ones(2)}
    assert tensors_digest(a) == tensors_digest(b)
    assert tensors_digest(a) != tensors_digest(
        {"x": torch.ones(2, dtype=torch.float64), "y": a["y"]}
    )
    assert tensors_digest({"x": torch.ones(2, 1)}) != tensors_digest({"x": torch.ones(1, 2)})
