"""ONNX export for edge runtimes (DESIGN §7).

Export once per base model (:func:`export_base`), then for every deletion patch the
exported weights by name (:func:`patch`) instead of re-tracing; :func:`export_filtered` does
fold + patch + parity in one call. :func:`quantize_int8` makes a static QDQ int8 copy
calibrated on real retain images. Every shipped model is optimised, stripped of local
information (stack traces, paths) and full-checked; :func:`model_metadata` +
:func:`sign_model` bind it to the audit log, :func:`sign_openssf` adds the OpenSSF Model
Signing signature beside the file, :func:`variant_attestation` logs an int8 copy (signing and
verification live in the torch-free :mod:`lethe_audit.model`, re-exported here).
"""

from lethe.export._base import BASE_FORMAT, BaseExport, export_base, patchable_layers
from lethe.export._filtered import ExportConfig, FilteredExport, export_filtered
from lethe.export._parity import DEFAULT_PARITY_THRESHOLD, ParityReport, check_parity
from lethe.export._patch import finalize, patch, reexport
from lethe.export._quantize import QuantizeConfig, quantize_int8
from lethe.export._save import save_model
from lethe.export._sign import model_metadata, variant_attestation
from lethe_audit.model import (
    ModelMetadata,
    content_hash,
    sign_model,
    sign_openssf,
    verify_model,
    verify_openssf,
)

__all__ = [
    "BASE_FORMAT",
    "DEFAULT_PARITY_THRESHOLD",
    "BaseExport",
    "ExportConfig",
    "FilteredExport",
    "ModelMetadata",
    "ParityReport",
    "QuantizeConfig",
    "check_parity",
    "content_hash",
    "export_base",
    "export_filtered",
    "finalize",
    "model_metadata",
    "patch",
    "patchable_layers",
    "quantize_int8",
    "reexport",
    "save_model",
    "sign_model",
    "sign_openssf",
    "variant_attestation",
    "verify_model",
    "verify_openssf",
]
