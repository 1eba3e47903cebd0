"""A damaged Lethe checkpoint is refused as one (issue 15: `register_model` must not take a
failure of the Lethe-checkpoint path for "a plain state dict"): truncated, its safetensors
header is a CheckpointFormatError; a flipped weight byte fails the stored digest (ModelError).
Neither asks for a spec as a plain state dict would, with or without a spec given, and nothing
is registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lethe.cli import main
from lethe.errors import CheckpointFormatError, ModelError
from lethe.models import ModelSpec, create_model, save_checkpoint
from lethe.workflow import Lethe

SPEC = ModelSpec("resnet18", 3, 1, (16, 16))


def _damaged(tmp_path: Path) -> dict[str, Path]:
    good = save_checkpoint(
        create_model(SPEC, seed=0), SPEC, tmp_path / "good.safetensors", trained_by="lethe"
    )
    raw = good.read_bytes()
    out = {
        "truncated": raw[: len(raw) // 2],
        "flipped": raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:],  # one weight byte
    }
    files = {}
    for name, data in out.items():
        files[name] = tmp_path / f"{name}.safetensors"
        files[name].write_bytes(data)
    return files


def _eval_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 16, 16, 1), dtype=np.uint8)
    path = tmp_path / "eval.npz"
    np.savez(path, x=x, y=np.arange(12) % 3, classes=np.asarray(["a", "b", "c"]))
    return path


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        ("truncated", CheckpointFormatError, "damaged safetensors file"),
        ("flipped", ModelError, "do not match the digest stored with them"),
    ],
)
@pytest.mark.parametrize("with_spec", [False, True])
def test_a_damaged_lethe_checkpoint_is_a_model_error(
    tmp_path: Path, damage: str, error: type[Exception], message: str, with_spec: bool
) -> None:
    files = _damaged(tmp_path)
    spec = SPEC.explicit() if with_spec else None
    with Lethe.init(tmp_path / "p", origin="test.example/damaged") as lt:
        with pytest.raises(error, match=message) as err:
            lt.register_model("m", files[damage], eval_data=_eval_data(tmp_path), spec=spec)
        assert "plain" not in str(err.value) and "state dict" not in str(err.value)
        assert lt.models() == []  # nothing registered


def test_the_cli_exits_with_the_model_errors_code(tmp_path: Path) -> None:
    files = _damaged(tmp_path)
    Lethe.init(tmp_path / "p", origin="test.example/damaged").close()
    args = ["--project", str(tmp_path / "p"), "model", "register", "m"]
    args += ["--checkpoint", str(files["truncated"]), "--eval-data", str(_eval_data(tmp_path))]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 170, res.output  # CheckpointFormatError
    assert "damaged safetensors file" in res.stderr and "Traceback" not in res.output
