"""Issue 16: every ordinary checkpoint form loads; a pickle with code in it is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.byo.conftest import OUTSIDE_SPEC, Outside, save_safetensors


def _same(model: torch.nn.Module, sd: dict[str, Any]) -> bool:
    got = model.state_dict()
    return set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.mark.parametrize(
    "form",
    ["safetensors", "module-safetensors", "torch", "model", "state_dict", "model_state_dict",
     "module-wrapped", "compiled"],
)  # fmt: skip
def test_checkpoint_forms_load(outside: Outside, tmp_path: Path, form: str) -> None:
    from lethe.models import load_weights

    sd = outside.state_dict
    path = tmp_path / "w.bin"
    if form == "safetensors":
        save_safetensors(sd, path)
    elif form == "module-safetensors":
        save_safetensors({f"module.{k}": v for k, v in sd.items()}, path)
    elif form == "torch":
        torch.save(sd, path)
    elif form == "module-wrapped":
        torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in sd.items()}}, path)
    elif form == "compiled":
        torch.save({f"_orig_mod.{k}": v for k, v in sd.items()}, path)
    else:
        torch.save({form: sd, "epoch": 7, "optimizer": {"lr": 0.1}}, path)
    model, spec, lethe_ckpt = load_weights(path, OUTSIDE_SPEC)
    assert not lethe_ckpt and spec.arch == "resnet18" and _same(model, sd)


def test_lethe_checkpoint_keeps_its_spec(outside: Outside, tmp_path: Path) -> None:
    from lethe.models import ModelSpec, create_model, load_weights, save_checkpoint

    spec = ModelSpec(**OUTSIDE_SPEC)  # type: ignore[arg-type]
    m = create_model(spec)
    m.load_state_dict(outside.state_dict)
    path = save_checkpoint(m, spec, tmp_path / "lethe.safetensors")
    model, got, lethe_ckpt = load_weights(path)
    assert lethe_ckpt and got == spec and _same(model, outside.state_dict)


class _Evil:
    def __reduce__(self) -> Any:
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(outside: Outside, tmp_path: Path) -> None:
    from lethe.models import CheckpointFormatError, ModelSpec, create_model, load_weights

    whole = tmp_path / "whole.pt"
    torch.save(create_model(ModelSpec(**OUTSIDE_SPEC)), whole)  # type: ignore[arg-type]
    with pytest.raises(CheckpointFormatError, match="never unpickles code") as err:
        load_weights(whole, OUTSIDE_SPEC)
    assert "state_dict()" in str(err.value)
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, evil)
    with pytest.raises(CheckpointFormatError, match="refused"):
        load_weights(evil, OUTSIDE_SPEC)


def test_wrong_formats_say_what_they_are(tmp_path: Path) -> None:
    from lethe.models import CheckpointFormatError, load_weights

    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.zeros(3))
    with pytest.raises(CheckpointFormatError, match="npz"):
        load_weights(npz, OUTSIDE_SPEC)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch")
    with pytest.raises(CheckpointFormatError, match="ONNX model"):
        load_weights(onnx, OUTSIDE_SPEC, caller="cli")
    junk = tmp_path / "j.txt"
    junk.write_text('{"a": 1}')
    with pytest.raises(CheckpointFormatError, match=r"safetensors\.torch\.save_file"):
        load_weights(junk, OUTSIDE_SPEC)
    bare = tmp_path / "nospec.pt"
    torch.save({"fc.weight": torch.zeros(6, 4)}, bare)
    with pytest.raises(Exception, match=r"6 outputs.*--arch, --num-classes and --input-size"):
        load_weights(bare, caller="cli")


def test_shape_mismatch_names_the_flag(outside: Outside, tmp_path: Path) -> None:
    from lethe.errors import ModelRegistrationError
    from lethe.models import load_weights

    path = save_safetensors(outside.state_dict, tmp_path / "w.safetensors")
    with pytest.raises(ModelRegistrationError, match="--num-classes 10"):
        load_weights(path, {**OUTSIDE_SPEC, "num_classes": 6}, caller="cli")
    with pytest.raises(ModelRegistrationError, match=r"spec\['num_classes'\] 10"):
        load_weights(path, {**OUTSIDE_SPEC, "num_classes": 6})


def test_device_names_are_checked() -> None:
    from lethe.errors import ConfigError
    from lethe.models import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")
