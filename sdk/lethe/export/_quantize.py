"""Static int8 quantization (QDQ) calibrated on real retain images."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx

from lethe.errors import CalibrationError, ConfigError, QuantizationError
from lethe.export._proto import check_images, check_model, input_spec, strip_local_info

__all__ = ["QuantizeConfig", "quantize_int8"]

_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of :func:`quantize_int8`.

    The defaults are what measured best on CPU (DESIGN §7): QDQ format, uint8 activations,
    per-channel int8 weights, min-max calibration. ``max_samples`` caps the calibration set
    (a few hundred real retain images are plenty); ``reduce_range`` quantizes weights to 7
    bits for x86 CPUs without VNNI.
    """

    per_channel: bool = True
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    batch_size: int = 32
    max_samples: int | None = 512
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.calibration_method not in _METHODS:
            raise ConfigError(
                f"calibration_method must be one of {', '.join(_METHODS)}, "
                f"got {self.calibration_method!r}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1 or None, got {self.max_samples}")


class _DropPerTensorFallback(logging.Filter):
    # The quantizer logs one root-logger warning per 1-D weight (LayerNorm scales, ...) for
    # which the per-channel axis does not exist, then quantizes it per tensor, which is the
    # right thing; a ViT would print hundreds of these lines.
    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextmanager
def _quiet_fallback_warnings() -> Iterator[None]:
    root = logging.getLogger()
    f = _DropPerTensorFallback()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def _reader(x: npt.NDArray[np.float32], name: str, batch_size: int, progress: bool) -> Any:
    from onnxruntime.quantization import CalibrationDataReader
    from tqdm.auto import tqdm

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._start = 0
            self._bar = tqdm(
                total=len(x), desc="calibrate", disable=None if progress else True, leave=False
            )

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            if self._start >= len(x):
                self._bar.close()
                return None
            batch = x[self._start : self._start + batch_size]
            self._start += len(batch)
            self._bar.update(len(batch))
            return {name: batch}

        def rewind(self) -> None:
            self._start = 0

    return _Reader()


def quantize_int8(
    onnx_model: onnx.ModelProto,
    calibration_images: Any,
    *,
    config: QuantizeConfig | None = None,
    progress: bool = True,
) -> onnx.ModelProto:
    """A static QDQ int8 copy of ``onnx_model`` (uint8 activations, per-channel int8 weights).

    ``calibration_images`` are real retain images, preprocessed exactly like the model's input:
    float32 ``[N, C, H, W]`` (numpy or torch). Random or mismatched calibration data wrecks
    the int8 model's agreement with fp32, so a wrong type, dtype or shape raises
    :class:`~lethe.errors.CalibrationError`. The result is stripped of local information and
    full-checked; it carries no metadata (sign it like the fp32 model). Quantization must not
    bring a forgotten class back: measure the quantized model like the fp32 one.
    """
    cfg = config or QuantizeConfig()
    name, shape = input_spec(onnx_model)
    chw = tuple(d for d in shape[1:] if isinstance(d, int))
    if len(chw) != len(shape) - 1:
        raise QuantizationError(f"the model input has symbolic non-batch dimensions {shape}")
    x = check_images(calibration_images, chw, what="calibration images", error=CalibrationError)
    if cfg.max_samples is not None and len(x) > cfg.max_samples:
        # Evenly spaced rather than the first N, so a class-sorted set stays mixed.
        x = x[np.linspace(0, len(x) - 1, cfg.max_samples).round().astype(np.int64)]

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.calibration_method]
    with tempfile.TemporaryDirectory(prefix="lethe-quant-") as td, _quiet_fallback_warnings():
        src, pre, out = Path(td) / "fp32.onnx", Path(td) / "pre.onnx", Path(td) / "int8.onnx"
        src.write_bytes(onnx_model.SerializeToString())
        try:
            # ORT's recommended pre-processing (shape inference, graph optimisation); it also
            # marks the model as pre-processed, which quantize_static checks.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                _reader(x, name, cfg.batch_size, progress),
                quant_format=QuantFormat.QDQ,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                calibration_providers=["CPUExecutionProvider"],
            )
            quantized = onnx.load_model_from_string(out.read_bytes())
        except Exception as exc:  # onnxruntime's quantizer raises untyped errors
            raise QuantizationError(f"onnxruntime could not quantize the model: {exc}") from exc
    strip_local_info(quantized)
    check_model(quantized)
    return quantized
