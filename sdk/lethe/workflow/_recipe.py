"""The recipe that retrains a model's depth reference (torch-free, so the CLI's help can state
its defaults without importing the workflow)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["ReferenceConfig"]


@dataclass(frozen=True)
class ReferenceConfig:
    """How the depth reference is retrained (``lethe.models.fit`` arguments) and measured.

    Passed whole (``Lethe.train_reference(config=ReferenceConfig(epochs=20))``) it is the
    recipe; a mapping of some of its fields overrides the project's ``[reference]`` table,
    which overrides these defaults. ``seeds`` (>= 3) is the number of relearn repeats.
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    augment_flip: bool = False
    augment_pad: int = 0
    label_smoothing: float = 0.0
    seeds: int = 3

    def fit_options(self) -> dict[str, Any]:
        """The ``lethe.models.fit`` keyword arguments (everything but ``seeds``)."""
        d = dataclasses.asdict(self)
        d.pop("seeds")
        return d

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
