"""Phase 2 of a deletion, *erase*: turn the published (masked) model into one whose weights no
longer hold the forgotten classes, measure its depth, and publish it as a new apply.

The rules of phase 1 (:mod:`lethe.workflow._apply`) hold: one apply lock per model; artefacts
are written (fsynced) into a fresh ``applies/<id>/`` folder before the one database
transaction that appends the signed ``phase: erase`` attestation, points the requests and the
model at the new apply and sets ``erased_at``; the ``published`` symlink is swapped after the
commit and repaired by the next apply or erase after a crash. A failing policy (depth
included) publishes nothing and logs a ``failed`` attestation; the phase-1 model stays
published and the requests stay "masked, not yet erased". Erasing an already erased model is
a no-op that says so (:class:`~lethe.errors.AlreadyErasedError`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from lethe._io import fsync_dir
from lethe.errors import AlreadyErasedError, ApplyError, NothingToApplyError
from lethe.workflow._lock import apply_lock, check_lock
from lethe.workflow._principal import Principal, apply_event
from lethe.workflow._publish import (
    METHOD_NAME,
    PARITY_SAMPLES,
    ApplyContext,
    lethe_version,
    logged_steps,
    new_apply_id,
    read_result,
    reconcile,
    request_record,
    swap_link,
)
from lethe.workflow._reference import REFERENCE_SEEDS
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import ApplyResult, DepthReference
from lethe.workflow._versions import mark_applied
from lethe_audit.statements import (
    ApplyOutcome,
    MethodRef,
    ModelRef,
    OnnxRef,
    Phase,
    UnlearningAttestation,
    rfc3339,
)
from lethe_audit.store import ApplyRow, ModelRow, RequestRow

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lethe.export import FilteredExport
    from lethe.filters import EraseConfig, EraseReport, FilterBank
    from lethe.models import ModelSpec
    from lethe_audit.metrics import Policy, Verdict

__all__ = ["run_erase"]

Step = Callable[[str], None]
_log = logging.getLogger("lethe.workflow")


@dataclass
class _Plan:
    """What an erase starts from: the published phase-1 apply and the requests it covers."""

    name: str
    start: ApplyRow
    requests: list[RequestRow]
    forget: tuple[int, ...]
    reference: DepthReference
    started: datetime
    base_onnx: str | None


@dataclass
class _Outcome:
    """What phase 2 produced and measured."""

    apply_id: str
    export: FilteredExport
    report: EraseReport
    metrics: dict[str, Any]
    verdict: Verdict
    base_digest: str
    principal: Principal | None = None  # the authenticated operator (``lethe serve``)

    @property
    def outcome(self) -> ApplyOutcome:
        return ApplyOutcome.APPLIED if self.verdict.passed else ApplyOutcome.FAILED

    def log_principal(self, ctx: ApplyContext, s: Any, plan: _Plan, index: int) -> None:
        """Log who ran this erase (``apply.principal``), in the transaction of ``s``."""
        if self.principal is not None:
            event = apply_event(
                self.principal, apply_id=self.apply_id, model=plan.name,
                phase=Phase.ERASE.value, log_index=index, at=utcnow(),
            )  # fmt: skip
            ctx.log.append(event, session=s)


def _plan(ctx: ApplyContext, name: str) -> _Plan:
    store = ctx.store
    with store.read() as s:
        mrow = store.model_row(s, name)
        if mrow.current_apply_id is None:
            raise NothingToApplyError(
                f"nothing is published for model {name!r}: run `lethe apply {name}` first"
            )
        start = store.apply_row(s, mrow.current_apply_id)
        if start.phase == Phase.ERASE:
            raise AlreadyErasedError(
                f"model {name!r} is already erased: the published apply {start.id} is the erase "
                f"of apply {start.starts_from}; nothing to do"
            )
        ids = json.loads(start.request_ids)
        rows = list(s.execute(select(RequestRow).where(RequestRow.id.in_(ids))).scalars())
        s.expunge_all()
        base_onnx = mrow.base_onnx_path
    rows.sort(key=lambda r: ids.index(r.id))
    forget = tuple(json.loads(start.forgotten_classes))
    reference = ctx.references.require(name)
    return _Plan(name, start, rows, forget, reference, utcnow(), base_onnx)


def run_erase(
    ctx: ApplyContext,
    name: str,
    *,
    progress: bool,
    policy: Policy,
    config: EraseConfig | dict[str, Any] | None = None,
    fault: Step | None = None,
    device: str | None = None,
    principal: Principal | None = None,
) -> ApplyResult:
    """Erase the published phase-1 model of ``name``; see the module docstring. ``principal``
    (the operator's token) is recorded on the erase and logged with it."""
    step = logged_steps("erase", name, fault)
    with apply_lock(ctx.store.engine, ctx.store.model_dir(name), name) as lock_conn:
        reconcile(ctx.store, name)
        plan = _plan(ctx, name)
        step("erase_start")
        out = _erase_and_measure(ctx, plan, policy, config, progress, step, device)
        out = dataclasses.replace(out, principal=principal)
        _log.info(
            "erase %s: policy %s", name,
            "passed" if out.verdict.passed else "failed: " + "; ".join(out.verdict.reasons),
        )  # fmt: skip
        # Commits go through the lock's connection (PostgreSQL): an erase that lost its lock
        # can never commit (see lethe.workflow._lock).
        if not out.verdict.passed:
            return _record_failure(ctx, plan, out, step, lock_conn)
        check_lock(lock_conn)
        return _publish(ctx, plan, out, step, lock_conn)


def _erase_config(ctx: ApplyContext, config: EraseConfig | dict[str, Any] | None) -> EraseConfig:
    from lethe.filters import EraseConfig

    table = dict(ctx.store.settings.erase)
    if config is None:
        return EraseConfig(**table)
    if isinstance(config, dict):
        return EraseConfig(**{**table, **config})
    return config


def _erase_and_measure(
    ctx: ApplyContext,
    plan: _Plan,
    pol: Policy,
    config: EraseConfig | dict[str, Any] | None,
    progress: bool,
    step: Step,
    device: str | None = None,
) -> _Outcome:
    from lethe import model_digest
    from lethe.data import to_dataset
    from lethe.filters import erase
    from lethe.models import load_checkpoint, resolve_device
    from lethe.workflow._erase_export import export_erased

    if plan.start.artifact_dir is None:
        raise ApplyError(f"apply {plan.start.id} has no artefacts to erase")
    masked, spec = load_checkpoint(ctx.store.abs(plan.start.artifact_dir) / "model.safetensors")
    if model_digest(masked) != plan.start.folded_digest:
        raise ApplyError(
            f"the published model of apply {plan.start.id} does not match its logged digest; "
            "restore the project's models/ folder from a backup"
        )
    models = ctx.models
    if models.model(plan.name).train_data_digest is None:
        raise ApplyError(f"model {plan.name!r} has no training data: erase re-trains on it")
    base_model, _ = models.load_model(plan.name)
    train_arr = models.data(plan.name, split="train")
    cfg = _erase_config(ctx, config)
    dev = resolve_device(device)
    erased, report = erase(
        masked.to(dev),
        to_dataset(train_arr, spec.preprocess),
        plan.forget,
        config=cfg,
        progress=progress,
    )
    erased = erased.cpu().eval()
    step("erase_trained")
    eval_arr = models.data(plan.name, split="eval")
    eval_x = spec.preprocess.numpy(eval_arr.x)
    export = export_erased(
        erased,
        base_model,
        base_onnx=ctx.store.abs(plan.base_onnx) if plan.base_onnx else None,
        forget=plan.forget,
        parity_inputs=eval_x[:PARITY_SAMPLES],
        input_shape=(spec.in_chans, *spec.input_size),
    )
    metrics, verdict = _measure(
        ctx, plan, pol, (erased, base_model, export), spec, (eval_x, eval_arr.y), progress, dev
    )
    step("erase_verified")
    return _Outcome(
        apply_id=new_apply_id(),
        export=export,
        report=report,
        metrics=metrics,
        verdict=verdict,
        base_digest=model_digest(base_model),
    )


def _measure(
    ctx: ApplyContext,
    plan: _Plan,
    pol: Policy,
    models: tuple[nn.Module, nn.Module, FilteredExport],
    spec: ModelSpec,
    eval_xy: tuple[Any, Any],
    progress: bool,
    device: torch.device | None = None,
) -> tuple[dict[str, Any], Verdict]:
    """Metrics of the erased model (relearn over the reference's seeds, probe, ONNX parity),
    its depth against the reference, and the erase-phase policy verdict."""
    from lethe.metrics import TorchBackend
    from lethe_audit.metrics import ImageSet, OnnxBackend, RelearnConfig, depth_metric, evaluate

    erased, base_model, export = models
    eval_x, eval_y = eval_xy
    train_arr = ctx.models.data(plan.name, split="train")
    seeds = max(REFERENCE_SEEDS, len(plan.reference.info.seeds))
    result = evaluate(
        TorchBackend(erased, device=device),
        ImageSet(eval_x, eval_y, spec.num_classes),
        forget=plan.forget,
        base=TorchBackend(base_model, device=device),
        train_set=ImageSet(spec.preprocess.numpy(train_arr.x), train_arr.y, spec.num_classes),
        parity_reference=OnnxBackend(export.model.SerializeToString()),
        relearn=RelearnConfig(seeds=seeds),
        seed=0,
        progress=progress,
    )
    result = dataclasses.replace(result, depth=depth_metric(result, plan.reference.info))
    return result.to_dict(), pol.evaluate(result, phase=Phase.ERASE)


def _attestation(
    ctx: ApplyContext, plan: _Plan, out: _Outcome, *, at: datetime, onnx: OnnxRef | None
) -> UnlearningAttestation:
    from lethe.workflow._preflight import recorded_preprocessing

    bank = ctx.models.load_bank(plan.name)
    report = out.report
    return UnlearningAttestation(
        outcome=out.outcome,
        requests=tuple(request_record(r) for r in plan.requests),
        forgotten_classes=plan.forget,
        applied_at=rfc3339(at),
        model=ModelRef(plan.name, f"sha256:{out.base_digest}", out.export.folded_digest),
        filter_bank_digest=f"sha256:{plan.start.bank_digest}",
        method=_method(bank),
        metrics=out.metrics,
        policy=out.verdict.to_policy_verdict(),
        onnx=onnx,
        preprocessing=recorded_preprocessing(ctx.models.model(plan.name).spec),
        phase=Phase.ERASE,
        erase={
            "method": report.method,
            "config": dict(report.config),
            "seconds": float(report.seconds),
            "retain_samples": int(report.retain_samples),
        },
        starts_from={"apply_id": plan.start.id, "model_sha256": plan.start.folded_digest},
    )


def _method(bank: FilterBank) -> MethodRef:
    """The phase-1 method (the filters the masked model was folded with); the erase recipe is
    the attestation's ``erase`` field."""
    return MethodRef(METHOD_NAME, lethe_version(), dict(bank.train_config))


def _row(
    plan: _Plan,
    out: _Outcome,
    *,
    log_index: int,
    onnx: OnnxRef | None,
    artifact_dir: str | None,
) -> ApplyRow:
    return ApplyRow(
        id=out.apply_id,
        model_name=plan.name,
        outcome=out.outcome.value,
        started_at=plan.started,
        finished_at=utcnow(),
        forgotten_classes=json.dumps(list(plan.forget)),
        request_ids=json.dumps([r.id for r in plan.requests]),
        folded_digest=out.export.folded_digest.removeprefix("sha256:"),
        bank_digest=plan.start.bank_digest,
        onnx_sha256=onnx.sha256 if onnx else None,
        onnx_content_hash=onnx.content_hash if onnx else None,
        artifact_dir=artifact_dir,
        metrics=json.dumps(out.metrics, sort_keys=True),
        verdict=json.dumps(out.verdict.to_dict()),
        log_index=log_index,
        phase=Phase.ERASE.value,
        starts_from=plan.start.id,
        applied_by=out.principal.name if out.principal else None,
        applied_by_role=out.principal.role if out.principal else None,
    )


def _record_failure(
    ctx: ApplyContext, plan: _Plan, out: _Outcome, step: Step, lock_conn: Connection | None
) -> ApplyResult:
    attestation = _attestation(ctx, plan, out, at=utcnow(), onnx=None)
    with ctx.store.write(bind=lock_conn) as s:
        entry = ctx.log.append(attestation.to_statement(), session=s)
        out.log_principal(ctx, s, plan, entry.index)
        s.add(_row(plan, out, log_index=entry.index, onnx=None, artifact_dir=None))
    step("erase_failure_logged")
    return read_result(ctx, out.apply_id)


def _write_artifacts(ctx: ApplyContext, plan: _Plan, out: _Outcome) -> tuple[Path, OnnxRef]:
    from lethe.export import model_metadata, save_model, sign_model
    from lethe.models import save_checkpoint
    from lethe_audit.model import content_hash

    _, spec = ctx.models.load_model(plan.name)
    meta = model_metadata(
        out.export,
        model_name=plan.name,
        checkpoint=ctx.log.checkpoint(),
        requests=[r.id for r in plan.requests],
        preprocessing=spec.preprocess.to_dict(),
    )
    signed = sign_model(out.export.model, meta, list(ctx.log.signers))
    adir = ctx.store.apply_dir(plan.name, out.apply_id)
    adir.mkdir(parents=True)
    extra = {"apply_id": out.apply_id, "phase": Phase.ERASE.value, "starts_from": plan.start.id}
    save_checkpoint(out.export.folded, spec.explicit(), adir / "model.safetensors", extra=extra)
    _, onnx_sha = save_model(signed, adir / "model.onnx")
    fsync_dir(adir)
    return adir, OnnxRef(sha256=onnx_sha, content_hash=content_hash(signed))


def _publish(
    ctx: ApplyContext, plan: _Plan, out: _Outcome, step: Step, lock_conn: Connection | None
) -> ApplyResult:
    adir, onnx_ref = _write_artifacts(ctx, plan, out)
    step("erase_artifacts_written")
    try:
        _commit(ctx, plan, out, step, lock_conn, adir, onnx_ref)
    except BaseException:
        with ctx.store.read() as s:
            committed = s.get(ApplyRow, out.apply_id) is not None
        if not committed:  # nothing refers to the folder: remove it (else the next run would)
            shutil.rmtree(adir, ignore_errors=True)
        raise
    step("erase_committed")
    swap_link(ctx.store.published_link(plan.name), f"applies/{out.apply_id}")
    step("erase_published")
    return read_result(ctx, out.apply_id)


def _commit(
    ctx: ApplyContext,
    plan: _Plan,
    out: _Outcome,
    step: Step,
    lock_conn: Connection | None,
    adir: Path,
    onnx_ref: OnnxRef,
) -> None:
    """The one transaction of a successful erase."""
    store = ctx.store
    erased_at = utcnow()
    attestation = _attestation(ctx, plan, out, at=erased_at, onnx=onnx_ref)
    with store.write(bind=lock_conn) as s:
        mrow = store.locked(s, select(ModelRow).where(ModelRow.name == plan.name))
        if mrow is None or mrow.current_apply_id != plan.start.id:
            raise ApplyError(
                f"model {plan.name!r} was published by another apply while erasing; nothing "
                "was published, run `lethe erase` again"
            )
        entry = ctx.log.append(attestation.to_statement(onnx_name=f"{plan.name}.onnx"), session=s)
        step("erase_logged")
        out.log_principal(ctx, s, plan, entry.index)
        for r in plan.requests:
            row = store.existing_request(s, r.id)
            if row.model_name != plan.name:  # inherited (model versions): covered, not moved
                mark_applied(s, plan.name, [row], apply_id=out.apply_id, log_index=entry.index)
                continue
            row.apply_id = out.apply_id
            row.erased_at = erased_at
        s.add(_row(plan, out, log_index=entry.index, onnx=onnx_ref, artifact_dir=store.rel(adir)))
        mrow.current_apply_id = out.apply_id
        s.flush()
        step("erase_before_commit")
