"""Helpers shared by the export tests (models with exporter traps, banks, measurements)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn


class TrapNet(nn.Module):
    """A small CNN built to fall into the optimised exporter's traps.

    ``c1`` is a conv *with* bias followed by BatchNorm (the optimiser fuses BN into it under
    the conv's own names); ``c2``/``c3`` have identical weights and biases and ``fc1``/``fc2``
    identical (zero) biases (the optimiser de-duplicates equal tensors, so scaling one
    by name would scale both).
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(1, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=True)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1, bias=True)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            self.c3.weight.copy_(self.c2.weight)
            self.c3.bias.copy_(self.c2.bias)
            self.fc1.bias.zero_()
            self.fc2.bias.zero_()
            # Non-trivial BatchNorm statistics, so a fused BN really changes the conv weights.
            self.bn1.running_mean.uniform_(-0.5, 0.5)
            self.bn1.running_var.uniform_(0.5, 2.0)
            self.bn1.weight.uniform_(0.5, 1.5)
            self.bn1.bias.uniform_(-0.2, 0.2)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.c1(x)))
        x = torch.relu(self.c2(x)) + torch.relu(self.c3(torch.relu(self.c2(x))))
        x = x.mean((2, 3))
        return self.fc(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    def get_classifier(self) -> nn.Module:
        return self.fc


def onnx_class_accuracy(
    model: onnx.ModelProto, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], forget: list[int]
) -> tuple[float, float]:
    """(forget accuracy, retain accuracy) of an ONNX model with onnxruntime.

    Stand-in until ``lethe_audit.metrics`` (computed there on onnxruntime) is merged.
    """
    from lethe.export._proto import ort_session, run_session

    pred = run_session(ort_session(model), x).argmax(1)
    f = np.isin(y, forget)
    return float((pred[f] == y[f]).mean()), float((pred[~f] == y[~f]).mean())


def local_path_markers() -> list[bytes]:
    """Byte strings that would betray the build machine's file layout."""
    import lethe

    repo = Path(lethe.__file__).resolve().parents[2]
    markers = {str(repo), str(Path.home()), sys.prefix, "/tmp", "/home", "/root", "site-packages"}
    markers.add("/work/")
    return sorted(m.encode() for m in markers if len(m) > 1)


def find_local_paths(data: bytes) -> list[str]:
    return [m.decode() for m in local_path_markers() if m in data]
