"""The export service: shipping the published model (fp32 or int8), the auditor's evaluation
set and bundle, and describing log entries for admins."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lethe.errors import ApplyError, ModelRegistrationError
from lethe.workflow._applies import ApplyService
from lethe.workflow._keys import KeyService
from lethe.workflow._models import ModelService
from lethe.workflow._store import ProjectStore
from lethe.workflow._types import (
    CalibrationSource,
    EvalDataExport,
    LogEntry,
    ModelExport,
    ModelInfo,
)
from lethe.workflow._versions import require_none_pending
from lethe_audit.log import AuditLog
from lethe_audit.statements import VARIANT_V1, EventType, LifecycleEvent, rfc3339

if TYPE_CHECKING:
    import onnx

    from lethe.models import ModelSpec
    from lethe_audit.keys import OpenSSFKey
    from lethe_audit.model import ModelMetadata

__all__ = ["CALIBRATION_SAMPLES", "ExportService"]

CALIBRATION_SAMPLES = 256
_log = logging.getLogger("lethe.workflow")


class _Calibration(NamedTuple):
    """How many retain images calibrated an int8 copy, and from which stored split."""

    samples: int
    source: CalibrationSource


class ExportService:
    """Exports of a project: the published ONNX model, evaluation data, bundles, log lines."""

    def __init__(
        self,
        store: ProjectStore,
        log: AuditLog,
        keys: KeyService,
        models: ModelService,
        applies: ApplyService,
    ) -> None:
        self._store = store
        self._log = log
        self._keys = keys
        self._models = models
        self._applies = applies

    # -- the published model ----------------------------------------------------------------

    def export_onnx(
        self,
        model: str | None,
        out: str | Path,
        *,
        quantize: str | None = None,
        progress: bool = False,
    ) -> ModelExport:
        """Write the model's published ONNX file to ``out`` after verifying its signature.

        ``quantize="int8"``: a static QDQ int8 copy calibrated on real retain training images,
        measured like the fp32 model (forget/retain accuracy against the unfiltered model) and
        checked by the project's policy *before* it is signed and written
        (:class:`~lethe.errors.PolicyError` otherwise). A model registered without training
        data is calibrated on its evaluation images, the ones that then score it: a WARNING
        record on the ``lethe.workflow`` logger says so, and the result's and the variant
        attestation's ``calibration_source`` is ``"eval"`` (``"train"`` otherwise). Each
        quantization step is an INFO record there. Logged (``model.exported``)."""
        from lethe._io import atomic_write_bytes
        from lethe_audit.model import verify_model

        if quantize not in (None, "int8"):
            raise ApplyError(f"unknown quantization {quantize!r}; only int8 is supported")
        require_none_pending(self._store, self._models.model(model).name, what="export")
        info, src = self._published_onnx(model)
        verify_model(src, self._keys.ring.verifiers())
        if quantize is None:
            data = src.read_bytes()
            atomic_write_bytes(Path(out), data)
            digest = hashlib.sha256(data).hexdigest()
            result = ModelExport(str(out), digest, "fp32", _current(info))
        else:
            result = self._export_int8(info, src, Path(out), progress=progress)
        sig = self._sign_openssf(Path(result.path))
        result = replace(result, openssf_signature=str(sig))
        self._log_export(info.name, result)
        return result

    def openssf_key(self) -> OpenSSFKey:
        """The project's OpenSSF P-256 key, created and its public half registered in the log
        (a ``key.registered`` event) the first time: at ``lethe init``, or at the first export
        of an older project. A marker file beside the key records the registration."""
        from lethe_audit.keys import ensure_openssf_key, openssf_key_event

        settings = self._store.settings
        key, _ = ensure_openssf_key(settings.keys, passphrase=settings.key_passphrase)
        marker = key.private_path.with_name(key.private_path.name + ".logged")
        if not marker.exists() or marker.read_text("ascii").split()[:1] != [key.key_id]:
            index = self._log.append(openssf_key_event(key)).index
            marker.write_text(f"{key.key_id} {index}\n", "ascii")
        return key

    def _sign_openssf(self, path: Path) -> Path:
        """The OpenSSF Model Signing signature of an exported file (``<file>.sig``)."""
        from lethe_audit.model import sign_openssf

        passphrase = self._store.settings.key_passphrase
        return sign_openssf(path, self.openssf_key().private_path, passphrase=passphrase)

    def _published_onnx(self, model: str | None) -> tuple[ModelInfo, Path]:
        info = self._models.model(model)
        paths = self._applies.published(info.name)
        if paths is None or info.current_apply_id is None:
            raise ApplyError(f"nothing is published for {info.name!r} yet: run `lethe apply` first")
        return info, paths["onnx"]

    def _export_int8(self, info: ModelInfo, src: Path, out: Path, *, progress: bool) -> ModelExport:
        """A static QDQ int8 copy calibrated on real retain training images, measured like the
        fp32 model and checked by the project's policy *before* it is signed and written."""
        from lethe.export import quantize_int8, save_model, sign_model
        from lethe_audit.model import content_hash, read_model

        meta = read_model(src).metadata()
        forget = list(meta.forgotten_classes)
        _, spec = self._models.load_model(info.name)
        calib, calib_source = self._calibration_images(info.name, spec, forget)
        import onnx

        fp32 = src.read_bytes()
        _log.info("int8 %s: calibrating on %d %s images", info.name, len(calib), calib_source)
        int8 = quantize_int8(onnx.load_from_string(fp32), calib, progress=progress)
        _log.info("int8 %s: quantized; measuring it against the unfiltered model", info.name)
        checked = self._check_int8(info.name, spec, int8, forget, progress=progress)
        summary, result, verdict = checked
        md = replace(meta, variant="int8", source_sha256=hashlib.sha256(fp32).hexdigest())
        signed = sign_model(int8, md, list(self._log.signers))
        path, digest = save_model(signed, out)
        calibration = _Calibration(len(calib), calib_source)
        index = self._log_variant(info, md, path.read_bytes(), result, verdict, calibration)
        _log.info("int8 %s: passed the policy; signed and logged as entry %d", info.name, index)
        return ModelExport(
            path=str(path),
            sha256=digest,
            variant="int8",
            apply_id=_current(info),
            content_hash=content_hash(signed),
            metrics=summary,
            fp32_bytes=src.stat().st_size,
            int8_bytes=path.stat().st_size,
            attestation_index=index,
            calibration_source=calib_source,
        )

    def _calibration_images(
        self, name: str, spec: ModelSpec, forget: list[int]
    ) -> tuple[Any, CalibrationSource]:
        """Preprocessed retain images for calibration and where they come from: the training
        data, or (a model registered without it) the evaluation data, with a warning."""
        source: CalibrationSource = "train"
        try:
            calib_src = self._models.data(name, split="train")
        except ModelRegistrationError:
            source = "eval"
            calib_src = self._models.data(name, split="eval")
            _log.warning(
                "model %r has no training data: its int8 copy is calibrated on the evaluation "
                "images that also score it (recorded as calibration_source=eval in its variant "
                "attestation); register the model with training data to calibrate on those",
                name,
            )
        retain = calib_src.of_classes(forget, keep=False)
        return spec.preprocess.numpy(retain.x[:CALIBRATION_SAMPLES]), source

    def _check_int8(
        self,
        name: str,
        spec: ModelSpec,
        int8: onnx.ModelProto,
        forget: list[int],
        *,
        progress: bool,
    ) -> tuple[dict[str, Any], Any, Any]:
        """Measure the int8 model against the unfiltered one; raise unless the policy passes.
        Returns the summary, the metrics result and the verdict."""
        from lethe.metrics import TorchBackend
        from lethe_audit.metrics import ImageSet, OnnxBackend, Policy, evaluate

        eval_arr = self._models.data(name, split="eval")
        eval_set = ImageSet(spec.preprocess.numpy(eval_arr.x), eval_arr.y, spec.num_classes)
        base_model, _ = self._models.load_model(name)
        result = evaluate(
            OnnxBackend(int8.SerializeToString()),
            eval_set,
            forget=forget,
            base=TorchBackend(base_model),
            seed=0,
            progress=progress,
        )
        policy = Policy.from_mapping({**self._store.settings.policy, "max_parity": "off"})
        verdict = policy.evaluate(result)
        if not verdict.passed:
            raise verdict.error("the int8 model fails the policy, so it was not exported")
        acc = result.accuracy
        summary = {
            "forget_accuracy": acc.forget_accuracy,
            "retain_accuracy": acc.retain_accuracy,
            "base_retain_accuracy": acc.base_retain_accuracy,
            "passed": verdict.passed,
            "reasons": list(verdict.reasons),
        }
        return summary, result, verdict

    def _log_variant(
        self,
        info: ModelInfo,
        meta: ModelMetadata,
        data: bytes,
        result: Any,
        verdict: Any,
        calibration: _Calibration,
    ) -> int:
        """The int8 file's own attestation, bound to the apply it was quantized from; returns
        its log index."""
        from lethe.export import variant_attestation

        with self._store.read() as s:
            source_index = self._store.apply_row(s, _current(info)).log_index
        quantization = {
            "format": "qdq",
            "activations": "uint8",
            "weights": "int8-per-channel",
            "calibration": "minmax",
            "calibration_samples": calibration.samples,
            "calibration_source": calibration.source,
        }
        att = variant_attestation(
            data,
            meta,
            source_index=source_index,
            quantization=quantization,
            metrics=result.to_dict(),
            policy=verdict.to_policy_verdict(),
            at=datetime.now(timezone.utc),
        )
        return self._log.append(att).index

    def _log_export(self, name: str, result: ModelExport) -> None:
        details: dict[str, Any] = {
            "model": name,
            "variant": result.variant,
            "sha256": result.sha256,
            "apply_id": result.apply_id,
        }
        if result.metrics is not None:
            m = result.metrics
            details.update(
                forget_accuracy=m["forget_accuracy"], retain_accuracy=m["retain_accuracy"]
            )
        now = rfc3339(datetime.now(timezone.utc))
        self._log.append(LifecycleEvent(EventType.MODEL_EXPORTED, now, details=details))

    # -- data, bundles, log -------------------------------------------------------------------

    def export_eval_data(self, model: str | None, out: str | Path) -> EvalDataExport:
        """Write the model's evaluation set as the auditor consumes it: ``x`` float32,
        preprocessed NCHW (exactly the model input), ``y`` int64 labels; no class names (they
        can be personal data). Its digest equals the ``dataset_digest`` of the logged metrics."""
        import io

        import numpy as np

        from lethe._io import atomic_write_bytes
        from lethe_audit.metrics import ImageSet

        info = self._models.model(model)
        _, spec = self._models.load_model(info.name)
        arr = self._models.data(info.name, split="eval")
        x = spec.preprocess.numpy(arr.x).astype(np.float32)
        y = arr.y.astype(np.int64)
        buf = io.BytesIO()
        np.savez(buf, x=x, y=y)
        path = atomic_write_bytes(out, buf.getvalue())
        digest = ImageSet(x, y, spec.num_classes).digest
        return EvalDataExport(str(path), len(y), digest, tuple(int(d) for d in x.shape[1:]))

    def export_bundle(
        self, path: str | Path, *, attachments: Sequence[str | Path] = (), figures: bool = True
    ) -> Path:
        """Write the auditor bundle (entries, checkpoints, keys) with the filter figures of
        every applied deletion (their digests are in the log) and any extra ``attachments``."""
        extra = self._applies.figure_files() if figures else []
        return self._log.export_bundle(Path(path), attachments=[*extra, *attachments])

    def verify_log(self, *, workers: int | None = None) -> None:
        """Export the log to a temporary bundle and verify it end to end (returns or raises)."""
        import tempfile

        from lethe_audit.verify import verify_bundle

        with tempfile.TemporaryDirectory() as tmp:
            bundle = self._log.export_bundle(Path(tmp) / "bundle")
            verify_bundle(
                bundle,
                list(self._keys.ring.verifiers()),
                origin=self._log.origin(),
                workers=workers,
            )

    def log_entries(self, *, start: int = 0, limit: int = 50) -> list[LogEntry]:
        """One line of facts per log entry (no personal data is in the log to begin with)."""
        from lethe_audit.statements import Envelope, Statement

        rows: list[LogEntry] = []
        for index, raw in self._log.iter_entries(start, start + limit):
            st = Statement.from_envelope(Envelope.from_json(raw))
            kind, summary = _describe(st.predicate_type, st.predicate)
            p = st.predicate
            rows.append(
                LogEntry(
                    index, st.predicate_type, kind, summary, p.get("at") or p.get("applied_at")
                )
            )
        return rows


def _describe(predicate_type: str, p: Mapping[str, Any]) -> tuple[str, str]:
    """The kind and one-line summary of a predicate."""
    if predicate_type == VARIANT_V1:
        summary = (
            f"model={p['model']['name']} variant={p['variant']} of entry {p['source']['index']} "
            f"classes={p['forgotten_classes']} requests={len(p['requests'])}"
        )
        return f"variant.{p['variant']}", summary
    if predicate_type.endswith(":event:v1"):
        parts = [p.get("request_id") or ""]
        details = p.get("details") or {}
        if "classes" in details:
            parts.append(f"classes={details['classes']}")
        if "model" in details:
            parts.append(f"model={details['model']}")
        return p["event"], " ".join(x for x in parts if x)
    summary = (
        f"model={p['model']['name']} phase={p.get('phase', 'mask')} "
        f"classes={p['forgotten_classes']} requests={len(p['requests'])}"
    )
    return f"unlearning.{p['outcome']}", summary


def _current(info: ModelInfo) -> str:
    if info.current_apply_id is None:  # checked by _published_onnx
        raise ApplyError(f"nothing is published for {info.name!r} yet: run `lethe apply` first")
    return info.current_apply_id
