"""``lethe demo``: the whole story on the embedded defaults (digits, SQLite, local keys)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoConfig", "run_demo"]

MODEL_NAME = "digits-resnet18"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains and where it keeps the project (a fresh temporary folder unless
    ``project_dir`` is given)."""

    project_dir: Path | None = None
    arch: str = "resnet18"
    image_size: int = 32
    base_epochs: int = 10
    filter_epochs: int = 8
    forget: tuple[str, str] = ("3", "7")
    #: Epochs of the depth reference's retrain (default: ``base_epochs``, the base recipe).
    reference_epochs: int | None = None
    seed: int = 0
    relearn: bool = True
    progress: bool = True


def _say(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


def run_demo(cfg: DemoConfig, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, register, make the depth reference, file two requests from "an app", approve,
    apply both phases (mask, then erase), export, verify.

    Returns the numbers ``lethe demo --json`` prints.
    """
    import torch

    from lethe.workflow import Lethe

    t_start = time.perf_counter()
    project = (
        Path(cfg.project_dir) if cfg.project_dir else Path(tempfile.mkdtemp(prefix="lethe-demo-"))
    )
    torch.manual_seed(cfg.seed)
    _say(log, f"project: {project}")
    lt = Lethe.init(project)
    try:
        spec, test_arr, base_acc, t_filters = _prepare(lt, cfg, project, log)
        _say(log, "training the depth reference once (the model retrained without one class)...")
        recipe = {"epochs": cfg.reference_epochs or cfg.base_epochs, "lr": 2e-3, "seed": cfg.seed}
        ref = lt.train_reference(MODEL_NAME, config=recipe, progress=cfg.progress)
        r1, r2 = _file_requests(lt, cfg, log)
        _say(log, "applying: mask (compose, fold, verify, log, export, publish), then erase...")
        t0 = time.perf_counter()
        res = lt.apply(MODEL_NAME, relearn=cfg.relearn, progress=cfg.progress)
        t_apply = time.perf_counter() - t0
        out = {
            "project_dir": str(project),
            "model": MODEL_NAME,
            "arch": cfg.arch,
            "base_accuracy": base_acc,
            "requests": [r1.id, r2.id],
            **_mask_fields(res),
            **_edge_check(lt, res, spec, test_arr, r1.id),
            **_proofs(lt, project, r1.id),
            **_erase_fields(lt, res.erase, ref),
        }
        out["seconds"] = {
            "filter_training": round(t_filters, 2),
            "reference_retrain": round(ref.info.seconds, 2),
            "apply": round(t_apply, 2),
            "erase_phase": _phase_seconds(res.erase),
            "total": round(time.perf_counter() - t_start, 2),
        }
        return out
    finally:
        lt.close()


def _prepare(
    lt: Any, cfg: DemoConfig, project: Path, log: Callable[[str], None] | None
) -> tuple[Any, Any, float, float]:
    """Train the base model on digits, register it, train its filter bank."""
    import torch

    from lethe.data import load_digits, stratified_split, to_dataset
    from lethe.models import ModelSpec, accuracy, create_model, fit, save_checkpoint

    data = load_digits()
    train_arr, test_arr = stratified_split(data, test_fraction=0.25, seed=cfg.seed)
    spec = ModelSpec(
        arch=cfg.arch, num_classes=10, in_chans=1, input_size=(cfg.image_size, cfg.image_size)
    )
    _say(log, f"training a timm {cfg.arch} on digits ({len(train_arr)} images)...")
    model = create_model(spec, seed=cfg.seed)
    if torch.cuda.is_available():
        model.cuda()
    train_ds = to_dataset(train_arr, spec.preprocess)
    fit(
        model,
        train_ds,
        epochs=cfg.base_epochs,
        lr=2e-3,
        seed=cfg.seed,
        progress=cfg.progress,
        desc="base model",
    )
    base_acc = accuracy(model, to_dataset(test_arr, spec.preprocess))
    ckpt = save_checkpoint(
        model.cpu(), spec, project / "work" / "digits-resnet18.safetensors", trained_by="lethe"
    )
    _say(log, "registering the model (base ONNX export)...")
    if not any(m.name == MODEL_NAME for m in lt.models()):
        lt.register_model(MODEL_NAME, ckpt, eval_data=test_arr, train_data=train_arr)
    _say(log, "training the filter bank (every class, one round)...")
    t0 = time.perf_counter()
    config = {"epochs": cfg.filter_epochs, "seed": cfg.seed}
    lt.train_filters(MODEL_NAME, config=config, progress=cfg.progress)
    return spec, test_arr, base_acc, time.perf_counter() - t0


def _file_requests(lt: Any, cfg: DemoConfig, log: Callable[[str], None] | None) -> tuple[Any, Any]:
    """What an app does: file requests for two people, each for one class; the DPO approves."""
    r1 = lt.file(
        subject="alice@example.com",
        classes=[cfg.forget[0]],
        legal_basis="gdpr-17-1-b",
        idempotency_key="demo-app-request-1",
    )
    r2 = lt.file(
        subject="bob@example.com",
        classes=[cfg.forget[1]],
        legal_basis="gdpr-17-1-a",
        idempotency_key="demo-app-request-2",
    )
    _say(log, f"an app filed {r1.id} and {r2.id}; the DPO approves them...")
    lt.approve(r1.id, actor="dpo", reason="identity verified")
    lt.approve(r2.id, actor="dpo", reason="identity verified")
    return r1, r2


def _mask_fields(res: Any) -> dict[str, Any]:
    """Phase 1's numbers (the unprefixed fields of ``--json``)."""
    m = res.metrics.to_dict()  # the MetricsResult as the log holds it
    acc = m["accuracy"]

    def g(section: str, key: str) -> Any:
        v = m.get(section)
        return v.get(key) if isinstance(v, dict) else None

    relearn = m.get("relearn") or {}
    return {
        "forgotten_classes": list(res.forgotten_classes),
        "forget_accuracy": acc["forget_accuracy"],
        "retain_accuracy": acc["retain_accuracy"],
        "base_forget_accuracy": acc.get("base_forget_accuracy"),
        "base_retain_accuracy": acc.get("base_retain_accuracy"),
        "per_class_before": acc.get("base_per_class"),
        "per_class_after": acc.get("per_class"),
        "zrf": g("zrf", "zrf"),
        "mia_efficacy": g("mia", "efficacy"),
        "base_mia_efficacy": g("mia", "base_efficacy"),
        "probe_auc": g("probe", "auc"),
        "base_probe_auc": g("probe", "base_auc"),
        "relearn_steps": (relearn.get("model") or {}).get("steps"),
        "base_relearn_steps": (relearn.get("base") or {}).get("steps"),
        "policy_passed": res.passed,
        "policy_reasons": list(res.verdict.reasons),
        "onnx_parity": g("parity", "max_abs_logit_diff"),
        "onnx_path": res.onnx_path,
    }


def _edge_check(lt: Any, res: Any, spec: Any, test_arr: Any, request_id: str) -> dict[str, Any]:
    """Verify the published signed ONNX model (the erased one when phase 2 passed, else the
    masked one) against the request's receipt, then run it with onnxruntime."""
    import numpy as np
    import onnxruntime as ort

    from lethe_audit.model import verify_model

    erased = res.erase
    shipped = erased.onnx_path if erased is not None and erased.passed else res.onnx_path
    if shipped is None:
        return {"onnx_verified": False, "onnx_retain_accuracy": None}
    verify_model(Path(shipped), lt.verifiers(), receipt=lt.receipt(request_id))
    sess = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    x = spec.preprocess.numpy(test_arr.x)
    logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    keep = ~np.isin(test_arr.y, np.asarray(list(res.forgotten_classes)))
    acc = float((logits.argmax(1)[keep] == test_arr.y[keep]).mean())
    return {"onnx_verified": True, "onnx_retain_accuracy": acc}


def _proofs(lt: Any, project: Path, request_id: str) -> dict[str, Any]:
    """Receipt (written and verified), the whole log verified, auditor bundle and report."""
    from lethe_audit.verify import verify_receipt

    receipt_path = project / "receipts" / f"{request_id}.tlog-proof"
    receipt_path.parent.mkdir(parents=True, exist_ok=True)
    receipt_path.write_text(lt.receipt(request_id), encoding="utf-8")
    verify_receipt(receipt_path.read_bytes(), lt.verifiers())
    lt.verify_log()
    bundle = project / "audit-bundle.zip"
    if not bundle.exists():
        bundle = lt.export_bundle(bundle)
    vkey = lt.keyring.active()[0].vkey
    report_path = _maybe_report(bundle, vkey, project)
    return {
        "log_size": lt.log.size(),
        "log_verified": True,
        "receipt_path": str(receipt_path),
        "receipt_verified": True,
        "bundle_path": str(bundle),
        "report_path": str(report_path) if report_path else None,
        "vkey": vkey,
    }


def _erase_fields(lt: Any, erased: Any, ref: Any) -> dict[str, Any]:
    """The erase phase's numbers beside the depth reference's (None where not measured)."""
    m = erased.metrics.to_dict() if erased is not None else {}
    acc = m.get("accuracy") or {}
    depth = m.get("depth") or {}
    info = ref.info
    return {
        "erase_forget_accuracy": acc.get("forget_accuracy"),
        "erase_retain_accuracy": acc.get("retain_accuracy"),
        "erase_relearn_steps": depth.get("relearn_steps"),
        "reference_relearn_steps": info.relearn_steps,
        "relearn_ratio": depth.get("relearn_ratio"),
        "erase_probe_auc": depth.get("probe_auc"),
        "reference_probe_auc": info.probe_auc,
        "probe_auc_gap": depth.get("probe_auc_gap"),
        "erase_seconds": _erase_seconds(lt, erased),
        "reference_retrain_seconds": info.seconds,
        "erase_policy_passed": bool(erased is not None and erased.passed),
        "erase_onnx_path": erased.onnx_path if erased is not None else None,
    }


def _erase_seconds(lt: Any, erased: Any) -> float | None:
    """Wall time of the erase method itself (as its signed attestation records it): the cost
    to compare with the reference's retrain."""
    from lethe_audit.statements import Envelope, Statement

    if erased is None:
        return None
    ((_, raw),) = list(lt.log.iter_entries(erased.log_index, erased.log_index + 1))
    p = Statement.from_envelope(Envelope.from_json(raw)).predicate
    return float(p["erase"]["seconds"])


def _phase_seconds(erased: Any) -> float | None:
    """Wall time of all of phase 2 (erase, measure, sign, publish), from its apply record."""
    if erased is None or erased.started_at is None or erased.finished_at is None:
        return None
    seconds: float = (erased.finished_at - erased.started_at).total_seconds()
    return round(seconds, 2)


def _maybe_report(bundle: Path, vkey: str, project: Path) -> Path | None:
    """The auditor report, when the report module is available."""
    import importlib

    try:
        report = importlib.import_module("lethe_audit.report")
    except ImportError:  # the reports module is not part of this version yet
        return None
    out = project / "report.html"
    report.write_report(bundle, [vkey], out)
    return out
