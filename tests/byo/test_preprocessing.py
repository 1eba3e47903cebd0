"""Issue 16: preprocessing is part of the model; registration measures before it trusts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.byo.conftest import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OUTSIDE_SPEC,
    Outside,
    by_hand,
    save_safetensors,
)


def test_preprocess_crop_interpolation_range_and_record() -> None:
    import torch

    from lethe.data import Preprocess

    x = np.arange(16 * 16, dtype=np.uint8).reshape(1, 16, 16, 1)
    pre = Preprocess((1, 8, 8), (0.25,), (0.5,), "nearest", 0.5, (-1.0, 1.0))
    out = pre(x)
    # crop_pct 0.5: resize to 16x16 (no-op), centre crop 8x8, scale to [-1, 1], normalise
    t = torch.from_numpy(x).float().permute(0, 3, 1, 2)[..., 4:12, 4:12] / 255.0
    assert torch.allclose(out, ((t * 2 - 1) - 0.25) / 0.5)
    assert Preprocess.from_config(pre.to_dict()) == pre
    assert "resize to 16x16 nearest; centre-crop 8x8" in pre.describe()
    assert pre.describe().startswith("pixels/255 -> [-1, 1]; 1 channel")
    with pytest.raises(Exception, match="interpolation"):
        Preprocess((1, 8, 8), (0.5,), (0.5,), "lanczos9")


def test_image_folder_hidden_folders_are_not_classes(tmp_path: Path) -> None:
    from PIL import Image

    from lethe.data import load_image_folder

    for cls in ("cat", "dog", ".ipynb_checkpoints", "__MACOSX"):
        (tmp_path / cls).mkdir()
        Image.new("L", (4, 4)).save(tmp_path / cls / "a.png")
    Image.new("L", (4, 4)).save(tmp_path / "cat" / ".hidden.png")
    data = load_image_folder(tmp_path)
    assert data.classes == ("cat", "dog") and len(data) == 2


def test_resolution_order_and_messages() -> None:
    from lethe.models import ModelSpec, PreprocessingError, resolve_preprocessing

    spec = ModelSpec(**OUTSIDE_SPEC)  # type: ignore[arg-type]
    given, src = resolve_preprocessing(spec, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    assert src == "options" and given.mean == IMAGENET_MEAN and given.crop_pct == 1.0
    timm_spec, src = resolve_preprocessing(spec, use_timm=True)
    assert src == "timm" and timm_spec.mean == IMAGENET_MEAN
    assert timm_spec.interpolation == "bicubic" and timm_spec.crop_pct == 0.95
    # explicit options override timm's values, timm fills the rest (options > timm)
    mixed, src = resolve_preprocessing(spec, {"crop_pct": 1.0, "mean": 0.5}, use_timm=True)
    assert src == "options+timm" and mixed.crop_pct == 1.0 and mixed.mean == (0.5,) * 3
    assert mixed.std == IMAGENET_STD and mixed.interpolation == "bicubic"
    own, src = resolve_preprocessing(spec, lethe_trained=True)
    assert src == "lethe" and own.mean == (0.5,) * 3
    with pytest.raises(PreprocessingError, match="--mean R,G,B") as cli:
        resolve_preprocessing(spec, caller="cli")
    assert "--timm-preprocessing" in str(cli.value) and "0.485" in str(cli.value)
    with pytest.raises(PreprocessingError, match=r"spec\['mean'\]"):
        resolve_preprocessing(spec)
    with pytest.raises(PreprocessingError, match="recorded"):
        resolve_preprocessing(given, {"mean": (0.5, 0.5, 0.5)})


def test_outside_model_measured_right_or_refused(outside: Outside, tmp_path: Path) -> None:
    from lethe.models import PreprocessingError
    from lethe.workflow._preflight import BaseAccuracyError, preflight

    ckpt = save_safetensors(outside.state_dict, tmp_path / "outside.safetensors")
    pre = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    ok = preflight(ckpt, eval_data=outside.test, spec=OUTSIDE_SPEC, preprocessing=pre)
    assert ok.preprocessing_source == "options"
    assert ok.base_accuracy == pytest.approx(outside.real_accuracy, abs=1e-9)
    assert outside.real_accuracy > 0.9
    with pytest.raises(PreprocessingError, match="preprocessing of this resnet18"):
        preflight(ckpt, eval_data=outside.test, spec=OUTSIDE_SPEC)
    wrong = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
    with pytest.raises(BaseAccuracyError, match=r"expected 0\.900") as err:
        preflight(
            ckpt, eval_data=outside.test, spec=OUTSIDE_SPEC, preprocessing=wrong,
            expect_accuracy=0.9, caller="cli",
        )  # fmt: skip
    assert "--mean" in str(err.value) and "--force" in str(err.value)


def test_class_order_refused_then_forced(outside: Outside, tmp_path: Path) -> None:
    from lethe.workflow._preflight import BaseAccuracyError, ClassMismatchError, preflight

    ckpt = save_safetensors(outside.state_dict, tmp_path / "outside.safetensors")
    pre = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    rolled = [str((i + 1) % 10) for i in range(10)]  # head output i is not class i
    kw = {"eval_data": outside.test, "spec": OUTSIDE_SPEC, "preprocessing": pre}
    with pytest.raises(BaseAccuracyError, match="class order"):
        preflight(ckpt, class_names=rolled, **kw)  # type: ignore[arg-type]
    forced = preflight(ckpt, class_names=rolled, force=True, **kw)  # type: ignore[arg-type]
    assert forced.forced and forced.base_accuracy < 0.2
    assert forced.eval_data.classes == tuple(rolled)
    with pytest.raises(ClassMismatchError, match="9 classes"):
        preflight(ckpt, class_names=rolled[:9], **kw)  # type: ignore[arg-type]


def test_extra_folder_is_named() -> None:
    from lethe.data import ImageArrays
    from lethe.workflow._preflight import ClassMismatchError, check_classes

    y = np.r_[np.repeat(np.arange(3), 5), [3]].astype(np.int64)
    arr = ImageArrays(np.zeros((16, 4, 4, 1), np.uint8), y, ("a", "b", "c", "zz"), "shop")
    with pytest.raises(ClassMismatchError, match=r"'zz' \(1 images\)") as err:
        check_classes(arr, None, 3, None, caller="cli")
    assert "--class-names" in str(err.value)


def test_hand_and_lethe_normalisation_agree(outside: Outside) -> None:
    import torch

    from lethe.models import ModelSpec

    spec = ModelSpec(**OUTSIDE_SPEC, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # type: ignore[arg-type]
    x = outside.test.x[:32]
    assert torch.allclose(spec.preprocess(x), by_hand(x, IMAGENET_MEAN, IMAGENET_STD))
