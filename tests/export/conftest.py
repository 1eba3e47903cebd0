"""Fixtures for the ONNX export tests: one base export of the digits model per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from torch import nn

from lethe.data import ImageArrays
from lethe.export import BaseExport, export_base
from lethe.filters import FilterBank


@dataclass(frozen=True)
class DigitsExport:
    model: nn.Module
    bank: FilterBank
    base: BaseExport
    train: ImageArrays
    test: ImageArrays
    x_train: np.ndarray[Any, Any]
    x_test: np.ndarray[Any, Any]


@pytest.fixture(scope="session")
def digits_export(digits: Any, tmp_path_factory: pytest.TempPathFactory) -> DigitsExport:
    """The trained digits resnet18, its bank, its saved base export and preprocessed data."""
    model, spec, bank = digits.load()
    train, test = digits.data()
    path = tmp_path_factory.mktemp("onnx-base") / "base.onnx"
    base = export_base(model, input_shape=(1, 32, 32), path=path, targets=bank.target_names)
    pre = spec.preprocess
    return DigitsExport(model, bank, base, train, test, pre.numpy(train.x), pre.numpy(test.x))
