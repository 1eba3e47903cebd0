"""The interface every metrics backend implements (torch in ``lethe``, onnxruntime here)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from lethe_audit.metrics._result import RelearnConfig, RelearnRun

__all__ = ["FEATURES_OUTPUT", "Backend", "FeatureBackend", "RandomInitBackend", "RelearnBackend"]

FEATURES_OUTPUT = "features"
"""Name of the second graph output of Lethe's ONNX exports: the penultimate features ``[N, D]``
(the input of the classifier head), from which auditors re-measure the feature probe."""


@runtime_checkable
class Backend(Protocol):
    """A classifier that maps a float32 batch ``[N, ...]`` to logits ``[N, K]``.

    Implementations batch internally, never train or mutate the wrapped model, and show a tqdm
    progress bar when ``progress`` is true.
    """

    @property
    def kind(self) -> str:
        """Short name recorded in results, e.g. ``"torch"`` or ``"onnxruntime"``."""
        ...

    def logits(
        self, images: npt.NDArray[np.float32], *, progress: bool = False
    ) -> npt.NDArray[np.floating]:
        """Logits for every image, in input order."""
        ...


@runtime_checkable
class FeatureBackend(Backend, Protocol):
    """A backend that can also return penultimate (pre-logit) features ``[N, D]``."""

    def features(
        self, images: npt.NDArray[np.float32], *, progress: bool = False
    ) -> npt.NDArray[np.floating]:
        """Penultimate features for every image, in input order."""
        ...


@runtime_checkable
class RandomInitBackend(Backend, Protocol):
    """A backend that can build a seeded, randomly initialised model of its own architecture."""

    def random_init(self, *, seed: int) -> tuple[Backend, str]:
        """Same architecture with weights re-drawn from ``seed`` (the ZRF reference model),
        and one line saying how they were drawn (recorded in results)."""
        ...


@runtime_checkable
class RelearnBackend(Backend, Protocol):
    """A trainable backend that measures relearn time on a copy of its model."""

    def relearn(
        self,
        train_images: npt.NDArray[np.float32],
        train_labels: npt.NDArray[np.int64],
        test_images: npt.NDArray[np.float32],
        test_labels: npt.NDArray[np.int64],
        *,
        config: RelearnConfig,
        seed: int,
        progress: bool = False,
    ) -> RelearnRun:
        """Fine-tune a copy on the train samples, one step at a time, until test accuracy
        reaches ``config.threshold`` (see :class:`RelearnConfig`); the model is not changed."""
        ...
