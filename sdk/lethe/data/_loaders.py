"""Loaders for the embedded data, the benchmark datasets and users' own data."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lethe.data._arrays import ImageArrays
from lethe.errors import DataError

__all__ = [
    "default_data_dir",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_image_folder",
    "load_mnist",
    "load_npz",
]

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def default_data_dir() -> Path:
    """``$LETHE_DATA_DIR``, else the ``shared/data`` folder beside the repository."""
    env = os.environ.get("LETHE_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def load_digits() -> ImageArrays:
    """scikit-learn's bundled 8x8 digits (1,797 images, real, offline), scaled to 0-255."""
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return ImageArrays(x, d.target.astype(np.int64), DIGIT_CLASSES, "digits")


def _open(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def load_idx(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    classes: tuple[str, ...] = DIGIT_CLASSES,
    name: str = "idx",
) -> ImageArrays:
    """Read an IDX image/label pair (MNIST format, gzipped or not)."""
    img, lab = _open(Path(images)), _open(Path(labels))
    if len(img) < 16 or int.from_bytes(img[:4], "big") != 2051:
        raise DataError(f"{images}: not an IDX image file (magic 2051 expected)")
    if len(lab) < 8 or int.from_bytes(lab[:4], "big") != 2049:
        raise DataError(f"{labels}: not an IDX label file (magic 2049 expected)")
    n, h, w = (int.from_bytes(img[i : i + 4], "big") for i in (4, 8, 12))
    if int.from_bytes(lab[4:8], "big") != n or len(img) != 16 + n * h * w or len(lab) != 8 + n:
        raise DataError(f"{images}, {labels}: sizes in the headers do not match the data")
    x = np.frombuffer(img, dtype=np.uint8, offset=16).reshape(n, h, w, 1).copy()
    y = np.frombuffer(lab, dtype=np.uint8, offset=8).astype(np.int64)
    return ImageArrays(x, y, classes, name)


def _split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return "train" if split == "train" else "t10k"


def load_mnist(root: str | os.PathLike[str] | None = None, *, split: str = "train") -> ImageArrays:
    """MNIST from the four official IDX files in ``root`` (default: ``<data dir>/mnist``)."""
    base = Path(root) if root is not None else default_data_dir() / "mnist"
    p = _split_name(split)
    return load_idx(
        base / f"{p}-images-idx3-ubyte.gz",
        base / f"{p}-labels-idx1-ubyte.gz",
        name=f"mnist-{split}",
    )


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, split: str = "train"
) -> ImageArrays:
    """Fashion-MNIST from its official IDX files (default: ``<data dir>/fashion-mnist``)."""
    base = Path(root) if root is not None else default_data_dir() / "fashion-mnist"
    p = _split_name(split)
    return load_idx(
        base / f"{p}-images-idx3-ubyte.gz",
        base / f"{p}-labels-idx1-ubyte.gz",
        classes=FASHION_CLASSES,
        name=f"fashion-mnist-{split}",
    )


def load_npz(path: str | os.PathLike[str], *, name: str | None = None) -> ImageArrays:
    """A ``.npz`` with ``x`` (uint8, NHWC or NCHW), ``y`` (int) and optional ``classes``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    try:
        with np.load(p, allow_pickle=False) as d:
            if "x" not in d or "y" not in d:
                raise DataError(f"{p}: an .npz dataset needs arrays 'x' and 'y'")
            x, y = d["x"], d["y"]
            classes = tuple(str(c) for c in d["classes"]) if "classes" in d else None
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: cannot read as .npz ({exc})") from exc
    if x.dtype != np.uint8:
        raise DataError(f"{p}: 'x' must be uint8 pixels, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if classes is None:
        classes = tuple(str(i) for i in range(int(y.max()) + 1 if len(y) else 1))
    return ImageArrays(x, np.asarray(y).astype(np.int64), classes, name or p.stem)


def load_cifar10(
    root: str | os.PathLike[str] | None = None, *, split: str = "train"
) -> ImageArrays:
    """CIFAR-10 from ``cifar10_{train,test}.npz`` (default: ``<data dir>/cifar10``)."""
    _split_name(split)
    base = Path(root) if root is not None else default_data_dir() / "cifar10"
    return load_npz(base / f"cifar10_{split}.npz", name=f"cifar10-{split}")


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name == "__MACOSX"


def load_image_folder(
    path: str | os.PathLike[str], *, size: tuple[int, int] | None = None, grayscale: bool = False
) -> ImageArrays:
    """An ImageFolder tree (``root/<class>/<image>``); classes are the sorted folder names.

    Hidden folders and files (``.ipynb_checkpoints``, any dot-name, ``__MACOSX``) are never
    classes or images. Images are resized to ``size`` (H, W) when given, else they must all
    share one size.
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not _hidden(p)))
    if not classes:
        raise DataError(f"{root}: no class sub-folders found (expected root/<class>/<image>)")
    xs: list[npt.NDArray[np.uint8]] = []
    ys: list[int] = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in _IMAGE_SUFFIXES or _hidden(f):
                continue
            with Image.open(f) as raw:
                im = raw.convert("L" if grayscale else "RGB")
                if size is not None:
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
            xs.append(arr[..., None] if arr.ndim == 2 else arr)
            ys.append(label)
    if not xs:
        raise DataError(f"{root}: no images found in the class folders")
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise DataError(
            f"{root}: images have different sizes {sorted(shapes)[:4]}; resize them to one size "
            "first (in Python: lethe.data.load_image_folder(path, size=(H, W)); the CLI's "
            "--eval-data / --train-data also read those arrays saved as a .npz with x, y, classes)"
        )
    return ImageArrays(np.stack(xs), np.asarray(ys, dtype=np.int64), classes, root.name)


def load_dataset(name: str, *, split: str = "train", root: str | None = None) -> ImageArrays:
    """Load by name: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, or a path.

    A path is read as ``.npz`` if it is a file, as an ImageFolder tree if it is a folder.
    """
    key = name.lower()
    if key == "digits":
        return load_digits()
    if key == "mnist":
        return load_mnist(root, split=split)
    if key in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return load_fashion_mnist(root, split=split)
    if key in ("cifar10", "cifar-10"):
        return load_cifar10(root, split=split)
    p = Path(name)
    if p.is_file():
        return load_npz(p)
    if p.is_dir():
        return load_image_folder(p)
    raise DataError(
        f"unknown dataset {name!r}: use digits, mnist, fashion-mnist, cifar10, "
        "a .npz file or an ImageFolder directory"
    )
