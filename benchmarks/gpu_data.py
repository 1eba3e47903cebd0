"""The data folder a lent GPU's call carries (``LETHE_DATA_DIR`` there): each dataset of the
preset as its own seeded per-class subsample, written in the format its loader reads (MNIST and
Fashion-MNIST as gzipped IDX files, CIFAR-10 as an LZMA ``.npz``), the selected images in
their original order, so that the digests a run there computes equal a local run's. A dataset
the preset uses whole is copied. The device tool carries 64 MiB a call; CIFAR-10 is 134 MB.

    python -m benchmarks.gpu_data .benchdata --preset gpu-erase --datasets mnist cifar10
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks._unlearning_setups import PRESETS, _per_class

__all__ = ["main", "write_idx", "write_npz"]


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` whose members are LZMA-compressed (smaller than ``savez_compressed``)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as z:
        for key, value in arrays.items():
            with z.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def write_idx(images: Path, labels: Path, x: np.ndarray, y: np.ndarray) -> None:
    """An IDX image / label pair (MNIST's format), gzipped: x uint8 [N, H, W(, 1)]."""
    x = x.reshape(len(x), x.shape[1], x.shape[2])
    head = struct.pack(">IIII", 2051, len(x), x.shape[1], x.shape[2])
    images.write_bytes(gzip.compress(head + np.ascontiguousarray(x, np.uint8).tobytes(), 9))
    head = struct.pack(">II", 2049, len(y))
    labels.write_bytes(gzip.compress(head + np.asarray(y, np.uint8).tobytes(), 9))


def _subsample(out: Path, name: str, preset_name: str) -> None:
    from lethe.data import load_dataset

    preset = PRESETS[preset_name]
    n_train, n_test = preset.per_class(name)
    (out / name).mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, preset.seed), ("test", n_test, preset.seed + 1)):
        sub = _per_class(load_dataset(name, split=split), n, seed)
        if name == "cifar10":
            arrays = {"x": sub.x, "y": sub.y, "classes": np.asarray(sub.classes)}
            write_npz(out / name / f"cifar10_{split}.npz", arrays)
        else:
            p = "train" if split == "train" else "t10k"
            d = out / name
            images, labels = d / f"{p}-images-idx3-ubyte.gz", d / f"{p}-labels-idx1-ubyte.gz"
            write_idx(images, labels, sub.x, sub.y)
        print(f"{name} {split}: {len(sub.y)} images, digest {sub.digest}")


def main(argv: Sequence[str] | None = None) -> None:
    from lethe.data import default_data_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--preset", default="gpu-erase", choices=sorted(PRESETS))
    ap.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    a = ap.parse_args(argv)
    for name in a.datasets:
        if PRESETS[a.preset].per_class(name) != (None, None) or name == "cifar10":
            _subsample(a.out, name, a.preset)
        else:
            shutil.copytree(default_data_dir() / name, a.out / name, dirs_exist_ok=True)
    size = sum(p.stat().st_size for p in a.out.rglob("*") if p.is_file())
    print(f"{a.out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
