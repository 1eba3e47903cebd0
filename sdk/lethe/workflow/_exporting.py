"""Shipping the published model (fp32 or int8) and describing log entries for admins."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lethe.errors import ApplyError

if TYPE_CHECKING:
    from lethe.workflow._project import Lethe

__all__ = ["describe_entries", "export_eval_data", "export_published"]

CALIBRATION_SAMPLES = 256


def export_published(
    lt: Lethe,
    name: str | None,
    out: str | Path,
    *,
    quantize: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the model's published ONNX file to ``out`` after verifying its signature.

    ``quantize="int8"``: a static QDQ int8 copy calibrated on real retain training images,
    measured like the fp32 model (forget/retain accuracy against the unfiltered model) and
    checked by the project's policy *before* it is signed and written: quantization must not
    bring a forgotten class back. The export is logged (``model.exported``).
    """
    import onnx

    from lethe._io import atomic_write_bytes
    from lethe_audit.model import verify_model

    info = lt.model(name)
    paths = lt.published(info.name)
    if paths is None or info.current_apply_id is None:
        raise ApplyError(f"nothing is published for {info.name!r} yet: run `lethe apply` first")
    src = paths["onnx"]
    verify_model(src, lt.verifiers())
    target = Path(out)
    if quantize is None:
        data = src.read_bytes()
        atomic_write_bytes(target, data)
        digest = hashlib.sha256(data).hexdigest()
        result: dict[str, Any] = {
            "path": str(target),
            "sha256": digest,
            "variant": "fp32",
            "apply_id": info.current_apply_id,
        }
        _log_export(lt, info.name, result)
        return result
    if quantize != "int8":
        raise ApplyError(f"unknown quantization {quantize!r}; only int8 is supported")

    from lethe.export import quantize_int8, save_model, sign_model
    from lethe_audit.metrics import ImageSet, OnnxBackend, Policy, evaluate
    from lethe_audit.model import content_hash, read_model

    signed = read_model(src)
    meta = signed.metadata()
    forget = list(meta.forgotten_classes)
    _, spec = lt.load_model(info.name)
    pre = spec.preprocess
    try:
        calib_src = lt.data(info.name, split="train")
    except Exception:
        calib_src = lt.data(info.name, split="eval")
    retain = calib_src.of_classes(forget, keep=False)
    calib = pre.numpy(retain.x[:CALIBRATION_SAMPLES])
    fp32 = onnx.load_from_string(src.read_bytes())
    int8 = quantize_int8(fp32, calib, progress=progress)
    eval_arr = lt.data(info.name, split="eval")
    eval_set = ImageSet(pre.numpy(eval_arr.x), eval_arr.y, spec.num_classes)
    base_model, _ = lt.load_model(info.name)
    from lethe.metrics import TorchBackend

    result_m = evaluate(
        OnnxBackend(int8.SerializeToString()),
        eval_set,
        forget=forget,
        base=TorchBackend(base_model),
        seed=0,
        progress=progress,
    )
    policy = Policy.from_mapping({**lt.settings.policy, "max_parity": "off"})
    verdict = policy.evaluate(result_m)
    acc = result_m.accuracy
    summary = {
        "forget_accuracy": acc.forget_accuracy,
        "retain_accuracy": acc.retain_accuracy,
        "base_retain_accuracy": acc.base_retain_accuracy,
        "passed": verdict.passed,
        "reasons": list(verdict.reasons),
    }
    if not verdict.passed:
        from lethe.errors import PolicyFailedError

        raise PolicyFailedError(
            "the int8 model fails the policy (" + "; ".join(verdict.reasons) + "); not exported",
            reasons=tuple(verdict.reasons),
        )
    from dataclasses import replace

    md = replace(meta, variant="int8")
    out_model = sign_model(int8, md, list(lt.log.signers))
    path, digest = save_model(out_model, target)
    result = {
        "path": str(path),
        "sha256": digest,
        "variant": "int8",
        "apply_id": info.current_apply_id,
        "content_hash": content_hash(out_model),
        "metrics": summary,
        "fp32_bytes": src.stat().st_size,
        "int8_bytes": path.stat().st_size,
    }
    _log_export(lt, info.name, result)
    return result


def _log_export(lt: Lethe, name: str, result: dict[str, Any]) -> None:
    from lethe_audit.statements import LifecycleEvent, rfc3339

    details = {
        "model": name,
        "variant": result["variant"],
        "sha256": result["sha256"],
        "apply_id": result["apply_id"],
    }
    if "metrics" in result:
        m = result["metrics"]
        details.update(forget_accuracy=m["forget_accuracy"], retain_accuracy=m["retain_accuracy"])
    lt.log.append(
        LifecycleEvent("model.exported", rfc3339(datetime.now(timezone.utc)), details=details)
    )


def describe_entries(lt: Lethe, *, start: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """One line of facts per log entry (no personal data is in the log to begin with)."""
    from lethe_audit.statements import Envelope, Statement

    rows: list[dict[str, Any]] = []
    for index, raw in lt.log.iter_entries(start, start + limit):
        st = Statement.from_envelope(Envelope.from_json(raw))
        p = st.predicate
        if st.predicate_type.endswith(":event:v1"):
            kind = p["event"]
            parts = [p.get("request_id") or ""]
            details = p.get("details") or {}
            if "classes" in details:
                parts.append(f"classes={details['classes']}")
            if "model" in details:
                parts.append(f"model={details['model']}")
            summary = " ".join(x for x in parts if x)
        else:
            kind = f"unlearning.{p['outcome']}"
            summary = (
                f"model={p['model']['name']} phase={p.get('phase', 'mask')} "
                f"classes={p['forgotten_classes']} requests={len(p['requests'])}"
            )
        rows.append(
            {
                "index": index,
                "predicate_type": st.predicate_type,
                "kind": kind,
                "summary": summary,
                "at": p.get("at") or p.get("applied_at"),
            }
        )
    return rows


def export_eval_data(lt: Lethe, name: str | None, out: str | Path) -> dict[str, Any]:
    """Write the model's evaluation set as the auditor consumes it: ``x`` float32, preprocessed
    NCHW (exactly the model input), ``y`` int64 labels; no class names (they can be personal
    data). Its digest equals the ``dataset_digest`` of the logged metrics."""
    import io

    import numpy as np

    from lethe._io import atomic_write_bytes
    from lethe_audit.metrics import ImageSet

    info = lt.model(name)
    _, spec = lt.load_model(info.name)
    arr = lt.data(info.name, split="eval")
    x = spec.preprocess.numpy(arr.x).astype(np.float32)
    y = arr.y.astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    path = atomic_write_bytes(out, buf.getvalue())
    digest = ImageSet(x, y, spec.num_classes).digest
    return {
        "path": str(path),
        "samples": len(y),
        "dataset_digest": digest,
        "input_shape": list(x.shape[1:]),
    }
