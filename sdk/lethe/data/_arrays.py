"""The in-memory image dataset every loader returns."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lethe.errors import DataError

__all__ = ["ImageArrays", "stratified_split"]


@dataclass(frozen=True)
class ImageArrays:
    """Images as ``uint8`` NHWC plus ``int64`` labels and the class names.

    Loaders normalise every source to this one layout so preprocessing, digests and
    splitting are written once.
    """

    x: npt.NDArray[np.uint8]
    y: npt.NDArray[np.int64]
    classes: tuple[str, ...]
    name: str = "images"
    _digest: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise DataError(
                f"{self.name}: images must be uint8 with shape [N, H, W, C], got "
                f"{self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise DataError(
                f"{self.name}: expected one label per image ({len(self.x)}), got shape "
                f"{tuple(self.y.shape)}"
            )
        if not np.issubdtype(self.y.dtype, np.integer):
            raise DataError(f"{self.name}: labels must be integers, got {self.y.dtype}")
        if self.x.shape[-1] not in (1, 3):
            raise DataError(f"{self.name}: images need 1 or 3 channels, got {self.x.shape[-1]}")
        if len(self.classes) == 0:
            raise DataError(f"{self.name}: no class names given")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise DataError(
                f"{self.name}: labels must lie in 0..{len(self.classes) - 1} "
                f"(one per class name), got {int(self.y.min())}..{int(self.y.max())}"
            )
        object.__setattr__(self, "y", self.y.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x.shape[1]), int(self.x.shape[2])

    @property
    def channels(self) -> int:
        return int(self.x.shape[3])

    def subset(self, index: npt.ArrayLike, *, name: str | None = None) -> ImageArrays:
        """Rows selected by an index array or boolean mask."""
        idx = np.asarray(index)
        return ImageArrays(self.x[idx], self.y[idx], self.classes, name or self.name)

    def of_classes(self, classes: object, *, keep: bool = True) -> ImageArrays:
        """Samples whose label is (``keep=True``) or is not in ``classes``."""
        mask = np.isin(self.y, np.asarray(list(classes), dtype=np.int64))  # type: ignore[call-overload]
        return self.subset(mask if keep else ~mask)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) over shapes, dtypes, pixels, labels and class names."""
        if not self._digest:
            h = hashlib.sha256(b"lethe/image-arrays/v1\n")
            header = {"classes": list(self.classes), "x": list(self.x.shape), "y": len(self.y)}
            h.update(json.dumps(header, sort_keys=True).encode() + b"\n")
            h.update(np.ascontiguousarray(self.x).tobytes())
            h.update(self.y.astype("<i8").tobytes())
            self._digest.append(h.hexdigest())
        return self._digest[0]


def stratified_split(
    data: ImageArrays, *, test_fraction: float, seed: int
) -> tuple[ImageArrays, ImageArrays]:
    """Seeded split that keeps each class's share in both halves."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    test_idx: list[npt.NDArray[np.int64]] = []
    for c in range(data.num_classes):
        idx = np.flatnonzero(data.y == c)
        rng.shuffle(idx)
        test_idx.append(idx[: round(len(idx) * test_fraction)])
    test_mask = np.zeros(len(data), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    return (
        data.subset(~test_mask, name=f"{data.name}-train"),
        data.subset(test_mask, name=f"{data.name}-test"),
    )
