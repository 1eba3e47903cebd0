"""Issue 16: every ordinary checkpoint form loads; a pickle with code in it is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.byo.conftest import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OUTSIDE_SPEC,
    Outside,
    save_safetensors,
)


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

    spec = ModelSpec(**OUTSIDE_SPEC, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # type: ignore[arg-type]
    m = create_model(spec)
    m.load_state_dict(outside.state_dict)
    path = save_checkpoint(m, spec, tmp_path / "lethe.safetensors")
    model, got, lethe_ckpt = load_weights(path)
    assert lethe_ckpt and got == spec.explicit() and _same(model, outside.state_dict)
    assert got.crop_pct == 1.0 and got.interpolation == "bilinear"  # written out, explicit


def test_save_checkpoint_has_no_silent_default(outside: Outside, tmp_path: Path) -> None:
    """An outside model converted with save_checkpoint must say its preprocessing; only a
    model Lethe trained gets Lethe's 0.5 / 0.5, and the file then says so."""
    from safetensors import safe_open

    from lethe.models import (
        ModelSpec,
        PreprocessingError,
        create_model,
        load_weights,
        save_checkpoint,
    )
    from lethe.workflow._preflight import preflight

    spec = ModelSpec(**OUTSIDE_SPEC)  # type: ignore[arg-type]
    m = create_model(spec)
    m.load_state_dict(outside.state_dict)
    with pytest.raises(PreprocessingError, match="trained_by='lethe'"):
        save_checkpoint(m, spec, tmp_path / "outside.safetensors")
    own = save_checkpoint(m, spec, tmp_path / "own.safetensors", trained_by="lethe")
    with safe_open(str(own), "pt") as f:
        assert f.metadata()["trained_by"] == "lethe"
    assert load_weights(own)[1].mean == (0.5,) * 3
    # a checkpoint an older save_checkpoint wrote: a Lethe format, no record, no trained_by
    from safetensors.torch import save_file

    with safe_open(str(own), "pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "trained_by"}
    meta["spec"] = json.dumps(spec.to_dict(), sort_keys=True)
    legacy = tmp_path / "legacy.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(legacy), meta)
    with pytest.raises(PreprocessingError, match="--mean R,G,B") as err:
        preflight(legacy, eval_data=outside.test, caller="cli")
    assert "Lethe's default, mean 0.5" in str(err.value)


def _timm_training_checkpoint(outside: Outside, tmp_path: Path, *, ema: bool) -> Path:
    """A checkpoint written by timm's own CheckpointSaver, as timm's train.py does."""
    import argparse

    from timm.utils import CheckpointSaver, ModelEmaV3

    from lethe.models import ModelSpec, create_model

    model = create_model(ModelSpec(**OUTSIDE_SPEC))  # type: ignore[arg-type]
    model.load_state_dict(outside.state_dict)
    model_ema = ModelEmaV3(model, decay=0.5) if ema else None
    if model_ema is not None:  # make the EMA differ from the raw weights
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        model_ema.update(model)
        model.load_state_dict(outside.state_dict)
    args = argparse.Namespace(model="resnet18", lr=0.1, epochs=3, mean=None, sched="cosine")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tmp_path.mkdir()
    saver = CheckpointSaver(
        model, opt, args=args, model_ema=model_ema, checkpoint_dir=str(tmp_path),
        recovery_dir=str(tmp_path), max_history=1,
    )  # fmt: skip
    saver.save_checkpoint(epoch=2, metric=91.5)
    return tmp_path / "last.pth.tar"


def test_timm_training_checkpoint_loads(outside: Outside, tmp_path: Path) -> None:
    from lethe.errors import CheckpointFormatError
    from lethe.models import load_weights

    plain = _timm_training_checkpoint(outside, tmp_path / "plain", ema=False)
    said: list[str] = []
    model, _, lethe_ckpt = load_weights(plain, OUTSIDE_SPEC, log=said.append)
    assert not lethe_ckpt and _same(model, outside.state_dict) and said == []
    with pytest.raises(CheckpointFormatError, match=r"without EMA weights.*drop --ema"):
        load_weights(plain, OUTSIDE_SPEC, ema=True, caller="cli")

    both = _timm_training_checkpoint(outside, tmp_path / "ema", ema=True)
    raw = torch.load(both, weights_only=False)
    assert "args" in raw and "state_dict_ema" in raw
    model, _, _ = load_weights(both, OUTSIDE_SPEC, log=said.append, caller="cli")
    assert _same(model, raw["state_dict_ema"]) and not _same(model, outside.state_dict)
    assert "EMA weights 'state_dict_ema' (the default" in said[0] and "--no-ema" in said[0]
    assert "epoch 2" in said[0]
    model, _, _ = load_weights(both, OUTSIDE_SPEC, ema=False, log=said.append)
    assert _same(model, outside.state_dict) and "ema=True for the EMA" in said[1]
    from lethe.workflow._preflight import preflight

    pre = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    reg = preflight(
        both, eval_data=outside.test, spec=OUTSIDE_SPEC, preprocessing=pre, ema=False
    )  # registration's measuring step, on the raw weights of timm's checkpoint
    assert reg.base_accuracy == pytest.approx(outside.real_accuracy, abs=1e-9)


class _Evil:
    def __reduce__(self) -> Any:
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(outside: Outside, tmp_path: Path) -> None:
    from lethe.models import CheckpointFormatError, ModelSpec, create_model, load_weights

    whole = tmp_path / "whole.pt"
    torch.save(create_model(ModelSpec(**OUTSIDE_SPEC)), whole)  # type: ignore[arg-type]
    with pytest.raises(CheckpointFormatError, match="never unpickles code") as err:
        load_weights(whole, OUTSIDE_SPEC)
    assert "state_dict()" in str(err.value) and "torch.nn.modules." in str(err.value)
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, evil)
    with pytest.raises(CheckpointFormatError, match="refused") as err:
        load_weights(evil, OUTSIDE_SPEC)
    assert "builtins.print" in str(err.value)


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


def test_the_cli_escapes_a_checkpoints_own_text(
    outside: Outside, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training checkpoint's ``arch`` is quoted when registration says which weights it used;
    the CLI prints it, and every progress line, with control characters escaped."""
    import logging

    from lethe.cli._models import _say, progress_lines
    from lethe.models import load_weights

    hostile = "resnet18\x1b[2J\x1b]0;owned\x07\nforged line"
    path = tmp_path / "ckpt.pth.tar"
    sd = outside.state_dict
    torch.save({"epoch": 1, "arch": hostile, "state_dict": sd, "state_dict_ema": sd}, path)
    load_weights(path, OUTSIDE_SPEC, log=_say)
    with progress_lines(True):
        logging.getLogger("lethe.test").info("step 1 of %s", hostile)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err, repr(err)
    assert err.count("\n") == 2 and err.count("resnet18") == 2, repr(err)
