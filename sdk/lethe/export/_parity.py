"""onnxruntime vs torch parity on real inputs (DESIGN §4: ONNX parity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from lethe.errors import ConfigError, ParityError
from lethe.export._proto import check_images, input_spec, ort_session, run_session
from lethe.models import predict

__all__ = ["DEFAULT_PARITY_THRESHOLD", "ParityReport", "check_parity"]

#: Default bound on max |Δlogit| between the folded torch model and its ONNX export (fp32).
DEFAULT_PARITY_THRESHOLD = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """How closely the ONNX model's logits follow the torch model's on the given inputs."""

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    samples: int
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "samples": self.samples,
            "threshold": self.threshold,
        }


def check_parity(
    onnx_model: onnx.ModelProto | bytes,
    torch_model: nn.Module,
    inputs: Any,
    *,
    threshold: float = DEFAULT_PARITY_THRESHOLD,
    batch_size: int = 64,
) -> ParityReport:
    """Run both models on ``inputs`` (float32 ``[N, C, H, W]``) and compare logits.

    Raises :class:`~lethe.errors.ParityError` when max |Δlogit| exceeds ``threshold`` (or an
    output is not finite, or the shapes differ); otherwise returns the measurements.
    """
    if not (threshold >= 0 and np.isfinite(threshold)):
        raise ConfigError(f"the parity threshold must be a finite number >= 0, got {threshold}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    proto = onnx.load_model_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx_model
    _, shape = input_spec(proto)
    chw = tuple(int(d) for d in shape[1:] if isinstance(d, int))
    if len(chw) != len(shape) - 1:
        raise ConfigError(f"the ONNX input has symbolic non-batch dimensions {shape}")
    x = check_images(inputs, chw, what="parity inputs")
    got = run_session(ort_session(proto), x, batch_size=batch_size)
    want = predict(torch_model, torch.from_numpy(x), batch_size=batch_size).numpy()
    if got.shape != want.shape:
        raise ParityError(
            f"the ONNX model outputs shape {list(got.shape)}, the torch model {list(want.shape)}",
            max_abs_diff=float("inf"),
            threshold=threshold,
        )
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if not np.isfinite(diff).all():
        raise ParityError(
            "the ONNX or torch model produced NaN/inf logits",
            max_abs_diff=float("inf"),
            threshold=threshold,
        )
    report = ParityReport(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        argmax_agreement=float((got.argmax(1) == want.argmax(1)).mean()),
        samples=len(x),
        threshold=float(threshold),
    )
    if report.max_abs_diff > threshold:
        raise ParityError(
            f"ONNX parity breach: max |Δlogit| = {report.max_abs_diff:.3g} > {threshold:.3g} "
            f"over {report.samples} inputs. The export does not compute what the folded torch "
            "model computes; do not ship it (try lethe.export.reexport and report a bug).",
            max_abs_diff=report.max_abs_diff,
            threshold=threshold,
        )
    return report
