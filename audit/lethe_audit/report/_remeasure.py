"""Re-measuring an attested model with onnxruntime and comparing with the logged metrics."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lethe_audit.errors import FormatError, LetheAuditError, ReportError
from lethe_audit.note import Verifier

#: Accuracies that differ by less than this are equal (they are ratios of sample counts).
EQUAL = 1e-9
#: A probe AUC re-measured on the ONNX model's features agrees with the logged (torch) one
#: within this: the features differ by float rounding (~1e-6), which can swap close scores.
PROBE_AUC_TOLERANCE = 0.005


def load_eval_data(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``x`` (float32, preprocessed, exactly the model's input) and ``y`` (int labels)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if not {"x", "y"} <= names:
                raise ReportError(
                    f"{path.name} must hold arrays 'x' (float32 model inputs) and 'y' (int "
                    f"labels); it holds {sorted(names)}"
                )
            x, y = npz["x"], npz["y"]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ReportError(f"cannot read evaluation data {path.name}: {e}") from None
    if x.dtype != np.float32:
        raise ReportError(
            f"{path.name}: x is {x.dtype}, expected float32 preprocessed inputs (write it with "
            "`lethe export eval-data`)"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ReportError(f"{path.name}: y must hold integer labels, got {y.dtype}")
    return x, y


def _target(
    applies: Sequence[dict[str, Any]], sha256: str, content: str, name: str | None
) -> tuple[dict[str, Any] | None, bool]:
    """The applied attestation of this model file, or the latest one of its model name."""
    applied = [a for a in applies if a["outcome"] == "applied"]
    for a in reversed(applied):
        onnx = a.get("onnx") or {}
        if onnx.get("sha256") == sha256 or onnx.get("content_hash") == content:
            return a, True
    same = [a for a in applied if name is None or a["model"]["name"] == name]
    return (same[-1] if same else None), False


def remeasure(
    model_path: Path,
    eval_path: Path,
    applies: Sequence[dict[str, Any]],
    verifiers: Sequence[Verifier],
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Verify the model's signature, run it on the evaluation data, compare with the log."""
    from lethe_audit.metrics import ImageSet, OnnxBackend, evaluate

    model_info, target = _model_info(model_path, applies, verifiers)
    x, y = load_eval_data(eval_path)
    logged, num_classes, forget = _logged(target, y)
    data = ImageSet(x, y, num_classes)
    backend = OnnxBackend(model_path)
    seed = int(logged["seed"]) if logged is not None and "seed" in logged else 0
    result = evaluate(backend, data, forget=forget, seed=seed, progress=progress)
    acc = result.accuracy
    eval_info = {
        "name": eval_path.name,
        "samples": len(data),
        "num_classes": num_classes,
        "dataset_digest": data.digest,
        "logged_dataset_digest": logged.get("dataset_digest") if logged else None,
        "digest_matches": bool(logged and logged["dataset_digest"] == data.digest),
    }
    logged_rows = {r["metric"]: r for r in logged["rows"]} if logged else {}
    rows = [
        _compare(logged_rows, "forget_accuracy", "Forget accuracy", acc.forget_accuracy,
                 acc.forget_samples),
        _compare(logged_rows, "retain_accuracy", "Retain accuracy", acc.retain_accuracy,
                 acc.retain_samples),
    ]  # fmt: skip
    per_class = _per_class(acc, logged, num_classes, forget)
    checks = _checks(target, acc.forget_accuracy, acc.retain_accuracy, logged_rows)
    probe = _probe(result, backend.feature_source, logged_rows, logged)
    checks += _depth_checks(target, probe)
    compared = [r["equal"] for r in rows + per_class if r["equal"] is not None]
    if probe["agrees"] is not None:
        compared.append(probe["agrees"])
    return {
        "model": model_info,
        "eval_data": eval_info,
        "backend": result.backend,
        "rows": rows,
        "per_class": per_class,
        "checks": checks,
        "probe": probe,
        "passed": all(c["passed"] for c in checks) if checks else None,
        "agrees": bool(compared) and all(compared),
        "extra": {
            "zrf": None if result.zrf is None else result.zrf.zrf,
            "zrf_random_model": None if result.zrf is None else result.zrf.random_model,
            "probe_auc": None if result.probe is None else result.probe.auc,
        },
        "warnings": list(result.warnings),
    }


def _model_info(
    model_path: Path, applies: Sequence[dict[str, Any]], verifiers: Sequence[Verifier]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model file's digests and signature check, and the attestation it is compared with."""
    from lethe_audit.model import read_model, verify_model

    try:
        signed = read_model(model_path)
    except FormatError as e:
        raise ReportError(f"cannot read the model {model_path.name}: {e}") from None
    meta: dict[str, Any] | None = None
    name: str | None = None
    try:
        m = signed.metadata()
        meta = m.to_dict()
        name = m.model_name
    except FormatError:
        pass
    signature: dict[str, Any]
    try:
        verify_model(signed, list(verifiers))
        signature = {
            "verified": True,
            "message": "signed by a trusted key; content and metadata match",
        }
    except LetheAuditError as e:
        signature = {"verified": False, "message": str(e), "what": getattr(e, "what", None)}
    target, matches = _target(applies, signed.sha256, signed.content_hash, name)
    info = {
        "name": model_path.name,
        "sha256": signed.sha256,
        "content_hash": signed.content_hash,
        "signature": signature,
        "metadata": meta,
        "attestation_index": None if target is None else target["index"],
        "matches_attestation": matches,
    }
    return info, target


def _logged(
    target: dict[str, Any] | None, y: np.ndarray[Any, Any]
) -> tuple[dict[str, Any] | None, int, list[int]]:
    """The target's logged metrics (``None`` unless in Lethe's format), its number of classes
    and forgotten classes."""
    if target is None:
        raise ReportError(
            "the bundle has no applied attestation to compare the model with (and the model "
            "names none)"
        )
    logged = target["metrics"]
    if logged and logged.get("structured"):
        return logged, int(logged["num_classes"]), list(logged["forget_classes"])
    num_classes = int(max(int(y.max()) + 1, max(target["forgotten_classes"], default=0) + 1))
    return None, num_classes, list(target["forgotten_classes"])


def _compare(
    logged_rows: dict[str, dict[str, Any]], metric: str, label: str, measured: float, samples: int
) -> dict[str, Any]:
    lg = logged_rows.get(metric, {}).get("after")
    diff = None if lg is None else measured - lg
    return {
        "metric": metric,
        "label": label,
        "logged": lg,
        "measured": measured,
        "difference": diff,
        "samples": samples,
        "differing_samples": None if diff is None else round(abs(diff) * samples),
        "equal": None if diff is None else abs(diff) < EQUAL,
    }


def _per_class(
    acc: Any, logged: dict[str, Any] | None, num_classes: int, forget: list[int]
) -> list[dict[str, Any]]:
    logged_pc = {r["class"]: r for r in logged["per_class"]} if logged else {}
    out = []
    for c in range(num_classes):
        measured = acc.per_class[c]
        lg = logged_pc.get(c, {}).get("after")
        diff = None if lg is None or measured is None else measured - lg
        out.append(
            {
                "class": c,
                "samples": acc.class_counts[c],
                "logged": lg,
                "measured": measured,
                "difference": diff,
                "equal": None if diff is None else abs(diff) < EQUAL,
                "forgotten": c in forget,
            }
        )
    return out


def _probe(
    result: Any,
    source: str,
    logged_rows: dict[str, dict[str, Any]],
    logged: dict[str, Any] | None,
) -> dict[str, Any]:
    """The feature probe re-measured on the ONNX model's features beside the logged one, and
    the probe AUC gap to the logged depth reference (when the attestation has one)."""
    measured = None if result.probe is None else result.probe.auc
    lg = logged_rows.get("probe_auc", {}).get("after")
    diff = None if lg is None or measured is None else measured - lg
    depth = (logged or {}).get("depth") or None
    ref_auc = None if depth is None else depth["reference"]["probe_auc"]
    gap = None if measured is None or ref_auc is None else measured - ref_auc
    return {
        "features": source,
        "skipped": None if measured is not None else dict(result.skipped).get("probe"),
        "logged": lg,
        "measured": measured,
        "difference": diff,
        "tolerance": PROBE_AUC_TOLERANCE,
        "agrees": None if diff is None else abs(diff) <= PROBE_AUC_TOLERANCE,
        "reference_auc": ref_auc,
        "logged_gap": None if depth is None else depth["probe_auc_gap"],
        "measured_gap": gap,
        "logged_relearn_ratio": None if depth is None else depth["relearn_ratio"],
    }


def _depth_checks(target: dict[str, Any] | None, probe: dict[str, Any]) -> list[dict[str, Any]]:
    """The erase phase's probe-gap threshold on the re-measured gap (relearn time needs the
    trainable model and is not re-measured)."""
    if target is None or target.get("phase") != "erase":
        return []
    limit = target["policy"].get("thresholds", {}).get("max_probe_auc_gap")
    gap = probe["measured_gap"]
    if not isinstance(limit, int | float) or gap is None:
        return []
    return [
        {
            "name": "max_probe_auc_gap",
            "label": "re-measured probe AUC − the reference's logged probe AUC",
            "op": "≤",
            "value": gap,
            "threshold": limit,
            "passed": gap <= limit + 1e-12,
        }
    ]


def _checks(
    target: dict[str, Any] | None,
    forget: float,
    retain: float,
    logged_rows: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The logged thresholds an auditor can check without the unfiltered model."""
    if target is None:
        return []
    thr = target["policy"].get("thresholds", {})
    out = []
    limit = thr.get("max_forget_accuracy")
    if isinstance(limit, int | float):
        out.append(
            {
                "name": "max_forget_accuracy",
                "label": "re-measured forget accuracy",
                "op": "≤",
                "value": forget,
                "threshold": limit,
                "passed": forget <= limit + 1e-12,
            }
        )
    limit = thr.get("max_retain_drop")
    base = logged_rows.get("retain_accuracy", {}).get("before")
    if isinstance(limit, int | float) and base is not None:
        drop = base - retain
        out.append(
            {
                "name": "max_retain_drop",
                "label": "logged base retain accuracy − re-measured retain accuracy",
                "op": "≤",
                "value": drop,
                "threshold": limit,
                "passed": drop <= limit + 1e-12,
            }
        )
    return out
