"""Binding an exported model to the audit log: metadata and the log key's signature."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lethe.export._filtered import FilteredExport
from lethe_audit.model import ModelMetadata
from lethe_audit.tlog import Checkpoint

__all__ = ["model_metadata", "variant_attestation"]


def model_metadata(
    export: FilteredExport,
    *,
    model_name: str,
    checkpoint: Checkpoint | str,
    requests: Iterable[str],
    variant: str = "fp32",
    source_sha256: str | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> ModelMetadata:
    """The metadata of a filtered export, ready for :func:`lethe_audit.model.sign_model`.

    ``checkpoint`` is the log's latest checkpoint *before* this apply's attestation is
    appended (a :class:`~lethe_audit.tlog.Checkpoint`, its body text, or the signed note);
    ``requests`` the ids of every request the model applies. Digests, forgotten classes and
    the Lethe version come from ``export``. ``source_sha256`` (a variant: the hex SHA-256 of
    the fp32 file it was made from) and ``preprocessing`` (how to feed the model, a JSON
    object) are optional metadata.
    """
    import base64

    from lethe import __version__
    from lethe_audit import note

    if isinstance(checkpoint, str):
        text = note.parse(checkpoint).text if "\n\n" in checkpoint else checkpoint
        checkpoint = Checkpoint.parse(text)
    return ModelMetadata(
        model_name=model_name,
        base_digest=export.base_digest,
        folded_digest=export.folded_digest,
        log_origin=checkpoint.origin,
        log_size=checkpoint.size,
        log_root=base64.b64encode(checkpoint.root).decode("ascii"),
        requests=tuple(requests),
        forgotten_classes=export.forget,
        lethe_version=__version__,
        variant=variant,
        source_sha256=source_sha256,
        preprocessing=preprocessing,
    )


def variant_attestation(
    model_bytes: bytes,
    metadata: ModelMetadata,
    *,
    source_index: int,
    quantization: Mapping[str, Any],
    metrics: Mapping[str, Any],
    policy: Any,
    at: Any,
) -> Any:
    """The ``urn:lethe:attestation:variant:v1`` statement of a signed variant file.

    ``model_bytes`` is the saved, signed variant (its SHA-256 and content hash are named);
    ``metadata`` its metadata, whose ``source_sha256`` names the fp32 file it was made from;
    ``source_index`` the log index of that fp32 model's unlearning attestation; ``metrics``
    the variant's metric results (``MetricsResult.to_dict()``), ``policy`` their verdict (a
    :class:`~lethe_audit.statements.PolicyVerdict`), ``at`` the export time (aware datetime).
    Returns a :class:`~lethe_audit.statements.VariantAttestation` (append it to the log).
    """
    import hashlib

    from lethe.errors import ExportInputError
    from lethe_audit.model import read_model
    from lethe_audit.statements import ModelRef, OnnxRef, VariantAttestation, rfc3339

    if metadata.source_sha256 is None:
        raise ExportInputError(
            "a variant's metadata must name the fp32 file it was made from (source_sha256)"
        )
    return VariantAttestation(
        variant=metadata.variant,
        exported_at=rfc3339(at),
        model=ModelRef(metadata.model_name, metadata.base_digest, metadata.folded_digest),
        source={"index": source_index, "onnx_sha256": metadata.source_sha256},
        requests=metadata.requests,
        forgotten_classes=metadata.forgotten_classes,
        onnx=OnnxRef(hashlib.sha256(model_bytes).hexdigest(), read_model(model_bytes).content_hash),
        quantization=dict(quantization),
        metrics=dict(metrics),
        policy=policy,
    )
