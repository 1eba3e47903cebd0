"""Labelled image arrays with a canonical digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lethe_audit.errors import EvaluationSetError

__all__ = ["ImageSet", "dataset_digest"]

_DIGEST_DOMAIN = b"lethe.imageset.v1\n"


def _canonical_array(name: str, array: npt.NDArray[np.generic]) -> bytes:
    # Little-endian, C order, with dtype and shape in the header: two arrays hash equal only when
    # they hold the same numbers in the same layout (a reshaped or re-typed copy does not).
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    header = json.dumps(
        {"name": name, "dtype": little.dtype.str, "shape": list(array.shape)},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return len(header).to_bytes(8, "big") + header + np.ascontiguousarray(little).tobytes()


def dataset_digest(
    images: npt.NDArray[np.generic], labels: npt.NDArray[np.generic], num_classes: int
) -> str:
    """SHA-256 (hex) over the canonical bytes of ``images``, ``labels`` and ``num_classes``.

    The exact byte layout is specified in ``docs/metrics.md`` so that a third party can
    recompute it without Lethe.
    """
    h = hashlib.sha256(_DIGEST_DOMAIN)
    h.update(_canonical_array("images", images))
    h.update(_canonical_array("labels", labels))
    h.update(json.dumps({"num_classes": int(num_classes)}, separators=(",", ":")).encode())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Preprocessed images (float32, ``[N, ...]``, e.g. NCHW) with int64 labels in ``[0, K)``.

    The arrays are copied and made read-only at construction so that the digest recorded in a
    metrics result always describes the data it was computed on.
    """

    images: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    num_classes: int
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
            raise EvaluationSetError(f"num_classes must be an integer >= 2, got {k!r}")
        if images.dtype != np.float32:
            raise EvaluationSetError(
                f"images must be float32 (preprocessed), got {images.dtype}; "
                "convert with images.astype(numpy.float32) after preprocessing"
            )
        if images.ndim < 2:
            raise EvaluationSetError(
                f"images must have a batch axis and at least one more, got shape {images.shape}"
            )
        if labels.ndim != 1:
            raise EvaluationSetError(f"labels must be one-dimensional, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise EvaluationSetError(f"labels must be integers, got dtype {labels.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise EvaluationSetError(
                f"{images.shape[0]} images but {labels.shape[0]} labels: give one label per image"
            )
        if images.shape[0] == 0:
            raise EvaluationSetError("the image set is empty: metrics need at least one sample")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise EvaluationSetError(
                f"labels must lie in [0, {k}) for num_classes={k}, found values in [{lo}, {hi}]"
            )
        if not np.isfinite(images).all():
            raise EvaluationSetError("images contain NaN or infinity: check the preprocessing")
        images = np.array(images, dtype=np.float32, order="C", copy=True)
        labels = np.array(labels, dtype=np.int64, order="C", copy=True)
        images.setflags(write=False)
        labels.setflags(write=False)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "num_classes", int(k))
        object.__setattr__(self, "digest", dataset_digest(images, labels, int(k)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one image (without the batch axis)."""
        return tuple(int(d) for d in self.images.shape[1:])

    def class_counts(self) -> tuple[int, ...]:
        """Number of samples of each class, indexed by class id."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return tuple(int(c) for c in counts)

    def mask(self, classes: Iterable[int]) -> npt.NDArray[np.bool_]:
        """Boolean mask of the samples whose label is in ``classes``."""
        return np.isin(self.labels, np.fromiter(classes, dtype=np.int64))
