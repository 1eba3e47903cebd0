"""Dataset loaders on real files, and their refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from lethe.data import (
    ImageArrays,
    Preprocess,
    load_dataset,
    load_digits,
    load_idx,
    load_image_folder,
    load_mnist,
    load_npz,
    stratified_split,
)
from lethe.errors import DataError


def test_digits_is_real_and_scaled() -> None:
    d = load_digits()
    assert d.x.shape == (1797, 8, 8, 1) and d.x.dtype == np.uint8
    assert d.x.max() == 255 and d.num_classes == 10
    assert np.bincount(d.y).min() > 170
    assert len(d.digest) == 64 and d.digest == load_digits().digest


def test_stratified_split_keeps_class_shares() -> None:
    tr, te = stratified_split(load_digits(), test_fraction=0.25, seed=0)
    assert len(tr) + len(te) == 1797
    share = np.bincount(te.y) / np.bincount(load_digits().y)
    assert np.all(np.abs(share - 0.25) < 0.02)
    again, _ = stratified_split(load_digits(), test_fraction=0.25, seed=0)
    assert again.digest == tr.digest


def _write_idx(tmp: Path, n: int = 5, gz: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    img = (
        (2051).to_bytes(4, "big")
        + n.to_bytes(4, "big")
        + (4).to_bytes(4, "big")
        + (3).to_bytes(4, "big")
        + x.tobytes()
    )
    lab = (2049).to_bytes(4, "big") + n.to_bytes(4, "big") + y.tobytes()
    op = gzip.compress if gz else (lambda b: b)
    (tmp / "i").write_bytes(op(img))
    (tmp / "l").write_bytes(op(lab))
    return tmp / "i", tmp / "l"


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    i, lab = _write_idx(tmp_path, gz=gz)
    d = load_idx(i, lab)
    assert d.x.shape == (5, 4, 3, 1)


def test_idx_refusals(tmp_path: Path) -> None:
    i, lab = _write_idx(tmp_path)
    with pytest.raises(DataError, match="magic 2051"):
        load_idx(lab, lab)
    raw = gzip.decompress(i.read_bytes())
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(DataError, match="do not match"):
        load_idx(tmp_path / "short", lab)
    with pytest.raises(DataError, match="not found"):
        load_mnist(tmp_path / "nowhere")


def test_npz_nchw_and_nhwc(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 5, 7), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(6) % 3, classes=np.array(["a", "b", "c"]))
    d = load_npz(tmp_path / "a.npz")
    assert d.x.shape == (6, 5, 7, 3) and d.classes == ("a", "b", "c")
    assert np.array_equal(d.x[1, 2, 3], x[1, :, 2, 3])
    np.savez(tmp_path / "b.npz", x=x.astype(np.float32), y=np.arange(6))
    with pytest.raises(DataError, match="uint8"):
        load_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", images=x)
    with pytest.raises(DataError, match="'x' and 'y'"):
        load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 3, 4, 9]), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="labels must lie"):
        load_npz(tmp_path / "d.npz")


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for k in range(3):
            Image.fromarray(np.full((6, 5, 3), value + k, dtype=np.uint8)).save(
                tmp_path / cls / f"{k}.png"
            )
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    d = load_image_folder(tmp_path)
    assert d.classes == ("cat", "dog") and d.x.shape == (6, 6, 5, 3)
    assert list(d.y) == [0, 0, 0, 1, 1, 1] and d.x[3, 0, 0, 0] == 200
    small = load_image_folder(tmp_path, size=(4, 4), grayscale=True)
    assert small.x.shape == (6, 4, 4, 1)
    assert load_dataset(str(tmp_path)).digest == d.digest
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "cat")


def test_unknown_dataset_and_bad_arrays() -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet-22k")
    with pytest.raises(DataError, match="uint8"):
        ImageArrays(np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int64), ("a", "b"))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="one label per image"):
        ImageArrays(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(3, np.int64), ("a", "b"))


def test_preprocess_resizes_converts_and_normalises() -> None:
    d = load_digits()
    pre = Preprocess((3, 16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    t = pre(d.x[:4])
    assert t.shape == (4, 3, 16, 16) and t.dtype.is_floating_point
    assert float(t.min()) >= -2.0 - 1e-6 and float(t.max()) <= 2.0 + 1e-6
    assert bool((t[:, 0] == t[:, 1]).all())  # grey replicated
    with pytest.raises(DataError, match=r"\(C, H, W\)"):
        Preprocess((2, 8, 8), (0.5, 0.5), (0.5, 0.5))
    with pytest.raises(DataError, match="mean and std"):
        Preprocess((1, 8, 8), (0.5, 0.5), (0.5,))


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[3] / "shared/data/mnist").exists(),
    reason="shared data not present",
)
def test_shared_mnist_loads() -> None:
    d = load_mnist(split="test")
    assert d.x.shape == (10000, 28, 28, 1) and np.bincount(d.y).sum() == 10000
