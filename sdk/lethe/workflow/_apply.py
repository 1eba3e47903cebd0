"""Phase 1, *mask*: compose every approved and applied request of a model, fold, verify, log,
publish.

The steps of :func:`run_mask`, each its own function: plan (which requests), fold and measure
(export, metrics, verdict), then either record the failure (a failing policy publishes nothing,
logs a ``failed`` attestation and marks the new requests failed with the reasons) or write the
artefacts, commit, and swap the ``published`` symlink (see :mod:`lethe.workflow._publish` for
the crash-safety rules).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from lethe.errors import ApplyError, NothingToApplyError
from lethe.workflow._lock import apply_lock, check_lock
from lethe.workflow._principal import Principal, apply_event
from lethe.workflow._publish import (
    METHOD_NAME,
    PARITY_SAMPLES,
    ApplyContext,
    apply_result,
    committed,
    lethe_version,
    logged_steps,
    new_apply_id,
    not_committed,
    read_result,
    reconcile,
    request_record,
    state_bytes,
    swap_link,
)
from lethe.workflow._space import write_new_dir
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import ApplyResult
from lethe.workflow._versions import inherited_rows, mark_applied, pending_rows
from lethe_audit.errors import StoreError
from lethe_audit.log import AppendResult
from lethe_audit.statements import (
    ApplyOutcome,
    EventType,
    LifecycleEvent,
    MethodRef,
    ModelRef,
    OnnxRef,
    RequestStatus,
    UnlearningAttestation,
    rfc3339,
)
from lethe_audit.store import ApplyRow, RequestRow

if TYPE_CHECKING:
    from torch import nn

    from lethe.export import FilteredExport
    from lethe.filters import FilterBank
    from lethe.models import ModelSpec
    from lethe_audit.metrics import MetricsResult, Policy, Verdict

__all__ = ["figure_files", "run_mask"]

Step = Callable[[str], None]
_log = logging.getLogger("lethe.workflow")
_COVERED = (RequestStatus.APPROVED, RequestStatus.APPLIED, RequestStatus.SUPERSEDED)
_FIGURES_BYTES = 4 << 20  # generous room for the two figures and the folder's metadata


@dataclass(frozen=True)
class _Plan:
    """What a mask apply covers: every approved and applied request, and their classes."""

    name: str
    rows: list[RequestRow]
    new: list[RequestRow]
    snapshot: dict[str, str]
    forget: tuple[int, ...]
    base_onnx: str | None
    started: datetime
    #: Standing requests of the models this one supersedes (model versions): always folded
    #: in, covered for this model by this apply; ``pending`` are those not covered yet.
    inherited: tuple[RequestRow, ...] = ()
    pending: tuple[RequestRow, ...] = ()

    @property
    def covered(self) -> list[RequestRow]:
        """Every request the attestation records: this model's and the inherited ones."""
        return [*self.rows, *self.inherited]


@dataclass(frozen=True)
class _Measured:
    """The folded model, its export, and what the policy said about its metrics."""

    model: nn.Module
    spec: ModelSpec
    bank: FilterBank
    export: FilteredExport
    result: MetricsResult
    verdict: Verdict


@dataclass(frozen=True)
class _Attempt:
    """What an apply attempt decided, turned into its attestation and its database row."""

    apply_id: str
    model: str
    started: datetime
    forget: tuple[int, ...]
    model_ref: ModelRef
    bank_digest: str
    method: MethodRef
    metrics: dict[str, Any]
    verdict: Verdict
    preprocessing: dict[str, Any] | None = None  # how the measured model was fed
    principal: Principal | None = None  # the authenticated operator (``lethe serve``)

    @property
    def outcome(self) -> ApplyOutcome:
        return ApplyOutcome.APPLIED if self.verdict.passed else ApplyOutcome.FAILED

    def attestation(
        self, requests: list[RequestRow], *, at: datetime, onnx: OnnxRef | None
    ) -> UnlearningAttestation:
        return UnlearningAttestation(
            outcome=self.outcome,
            requests=tuple(request_record(r) for r in requests),
            forgotten_classes=self.forget,
            applied_at=rfc3339(at),
            model=self.model_ref,
            filter_bank_digest=f"sha256:{self.bank_digest}",
            method=self.method,
            metrics=self.metrics,
            policy=self.verdict.to_policy_verdict(),
            onnx=onnx,
            preprocessing=self.preprocessing,
        )

    def row(
        self,
        requests: list[RequestRow],
        *,
        log_index: int,
        onnx: OnnxRef | None,
        artifact_dir: str | None,
    ) -> ApplyRow:
        return ApplyRow(
            id=self.apply_id,
            model_name=self.model,
            outcome=self.outcome.value,
            started_at=self.started,
            finished_at=utcnow(),
            forgotten_classes=json.dumps(list(self.forget)),
            request_ids=json.dumps([r.id for r in requests]),
            folded_digest=(self.model_ref.folded_digest or "").removeprefix("sha256:"),
            bank_digest=self.bank_digest,
            onnx_sha256=onnx.sha256 if onnx else None,
            onnx_content_hash=onnx.content_hash if onnx else None,
            artifact_dir=artifact_dir,
            metrics=json.dumps(self.metrics, sort_keys=True),
            verdict=json.dumps(self.verdict.to_dict()),
            log_index=log_index,
            applied_by=self.principal.name if self.principal else None,
            applied_by_role=self.principal.role if self.principal else None,
        )

    def log_principal(self, ctx: ApplyContext, s: Session, index: int) -> AppendResult | None:
        """Log who ran this apply (``apply.principal``), in the transaction of ``s``."""
        if self.principal is None:
            return None
        event = apply_event(
            self.principal, apply_id=self.apply_id, model=self.model, phase="mask",
            log_index=index, at=utcnow(),
        )  # fmt: skip
        return ctx.log.append(event, session=s)


def run_mask(
    ctx: ApplyContext,
    name: str,
    *,
    relearn: bool,
    progress: bool,
    policy: Policy,
    fault: Step | None,
    device: str | None = None,
    principal: Principal | None = None,
) -> ApplyResult:
    """Phase 1 of the approved requests of model ``name`` (see the module docstring);
    ``principal`` (the operator's token) is recorded on the apply and logged with it."""
    step = logged_steps("apply", name, fault)
    with apply_lock(ctx.store.engine, ctx.store.model_dir(name), name) as lock_conn:
        reconcile(ctx.store, name)
        plan = _plan(ctx, name)
        _log.info(
            "apply %s: %d request(s) (%d new, %d inherited pending), forgetting classes %s",
            name, len(plan.covered), len(plan.new), len(plan.pending), list(plan.forget),
        )  # fmt: skip
        step("start")
        measured = _fold_and_measure(
            ctx, plan, policy, relearn=relearn, progress=progress, step=step, device=device
        )
        attempt = replace(_attempt(ctx, plan, measured), principal=principal)
        if not measured.verdict.passed:
            return _record_failure(ctx, attempt, [*plan.new, *plan.pending], step, lock_conn)
        return _publish(ctx, plan, measured, attempt, step, lock_conn)


def _plan(ctx: ApplyContext, name: str) -> _Plan:
    with ctx.store.read() as s:
        base_onnx = ctx.store.model_row(s, name).base_onnx_path
        rows = list(
            s.execute(
                select(RequestRow)
                .where(RequestRow.model_name == name, RequestRow.status.in_(_COVERED))
                .order_by(RequestRow.received_at, RequestRow.id)
            ).scalars()
        )
        inherited = inherited_rows(ctx.store, s, name)
        pending = pending_rows(ctx.store, s, name)
    new = [r for r in rows if r.status == RequestStatus.APPROVED]
    if not new and not pending:
        raise NothingToApplyError(f"no approved request waits for model {name!r}")
    return _Plan(
        name=name,
        rows=rows,
        new=new,
        snapshot={r.id: r.status for r in rows},
        forget=tuple(sorted({c for r in (*rows, *inherited) for c in json.loads(r.classes)})),
        base_onnx=base_onnx,
        started=utcnow(),
        inherited=tuple(inherited),
        pending=tuple(pending),
    )


def _fold_and_measure(
    ctx: ApplyContext,
    plan: _Plan,
    policy: Policy,
    *,
    relearn: bool,
    progress: bool,
    step: Step,
    device: str | None = None,
) -> _Measured:
    """Compose and fold the filters into a copy, export it, measure it, judge it."""
    from lethe.errors import ParityError
    from lethe.export import BaseExport, ExportConfig, export_filtered
    from lethe.metrics import TorchBackend
    from lethe.models import resolve_device
    from lethe_audit.metrics import ImageSet, OnnxBackend, RelearnConfig, evaluate

    models, name = ctx.models, plan.name
    model_t, spec = models.load_model(name)
    bank = models.load_bank(name)
    bank.check_compatible(model_t)
    eval_arr = models.data(name, split="eval")
    has_train = models.model(name).train_data_digest is not None
    train_arr = models.data(name, split="train") if has_train else None
    pre = spec.preprocess
    eval_x = pre.numpy(eval_arr.x)
    eval_set = ImageSet(eval_x, eval_arr.y, spec.num_classes)
    train_set = (
        ImageSet(pre.numpy(train_arr.x), train_arr.y, spec.num_classes)
        if train_arr is not None
        else None
    )
    step("before_fold")
    base_path = ctx.store.abs(plan.base_onnx) if plan.base_onnx else None
    base = BaseExport.load(base_path, model=model_t) if base_path is not None else None
    try:
        export = export_filtered(
            model_t,
            bank,
            plan.forget,
            parity_inputs=eval_x[:PARITY_SAMPLES],  # a gross check; evaluate() measures all
            base=base,
            input_shape=(spec.in_chans, *spec.input_size),
            # The policy judges parity below; here only a gross breach stops the export.
            config=ExportConfig(parity_threshold=1e3),
        )
    except ParityError as exc:
        raise ApplyError(f"the exported model does not match the folded model: {exc}") from exc
    step("after_fold")
    dev = resolve_device(device)
    result = evaluate(
        TorchBackend(export.folded, device=dev),
        eval_set,
        forget=plan.forget,
        base=TorchBackend(model_t, device=dev),
        train_set=train_set,
        parity_reference=OnnxBackend(export.model.SerializeToString()),
        relearn=RelearnConfig() if relearn and train_set is not None else None,
        seed=0,
        progress=progress,
    )
    verdict = policy.evaluate(result)
    acc = result.accuracy
    said = "passed" if verdict.passed else "failed: " + "; ".join(verdict.reasons)
    _log.info(
        "apply %s: forget acc %.4f, retain acc %.4f: policy %s",
        name, acc.forget_accuracy, acc.retain_accuracy, said,
    )  # fmt: skip
    step("verified")
    return _Measured(model_t, spec, bank, export, result, verdict)


def _attempt(ctx: ApplyContext, plan: _Plan, m: _Measured) -> _Attempt:
    info = ctx.models.model(plan.name)
    return _Attempt(
        apply_id=new_apply_id(),
        model=plan.name,
        started=plan.started,
        forget=plan.forget,
        model_ref=ModelRef(plan.name, f"sha256:{info.base_digest}", m.export.folded_digest),
        bank_digest=m.bank.digest,
        method=MethodRef(METHOD_NAME, lethe_version(), dict(m.bank.train_config)),
        metrics=m.result.to_dict(),
        verdict=m.verdict,
        preprocessing=m.spec.preprocess.to_dict(),
    )


def _publish(
    ctx: ApplyContext,
    plan: _Plan,
    m: _Measured,
    attempt: _Attempt,
    step: Step,
    lock_conn: Connection | None,
) -> ApplyResult:
    """Write the artefacts, commit, point ``published`` at them: the passed apply's result."""
    adir, onnx_ref, figures = _write_artifacts(ctx, plan, m, attempt, lock_conn)
    step("artifacts_written")
    applied_at = utcnow()
    res = _commit_applied(
        ctx,
        lock_conn,
        attempt=attempt,
        plan=plan,
        attestation=attempt.attestation(plan.covered, at=applied_at, onnx=onnx_ref),
        applied_at=applied_at,
        figures=figures,
        onnx_ref=onnx_ref,
        adir=adir,
        step=step,
    )
    step("committed")
    link = ctx.store.published_link(plan.name)
    try:
        swap_link(link, f"applies/{attempt.apply_id}")
    except OSError as e:  # committed: the apply stands; the next apply repairs the link
        warnings.warn(
            f"{attempt.apply_id} is committed, but {link} could not be pointed at it ({e}); "
            "the next `lethe apply` repairs it",
            stacklevel=3,
        )
    step("published")
    if res is None:  # committed, but the acknowledgement was lost: read what was committed
        res = read_result(ctx, attempt.apply_id)
    return replace(res, new_request_ids=tuple(r.id for r in (*plan.new, *plan.pending)))


def _write_artifacts(
    ctx: ApplyContext,
    plan: _Plan,
    m: _Measured,
    attempt: _Attempt,
    lock_conn: Connection | None,
) -> tuple[Path, OnnxRef, dict[str, str]]:
    """The signed ONNX model, the folded checkpoint and the figures, in a fresh folder."""
    from lethe.export import model_metadata, save_model, sign_model
    from lethe.models import save_checkpoint
    from lethe_audit.model import content_hash

    apply_id = attempt.apply_id
    meta = model_metadata(
        m.export,
        model_name=plan.name,
        checkpoint=ctx.log.checkpoint(),
        requests=[r.id for r in plan.covered],
        preprocessing=m.spec.preprocess.to_dict(),
    )
    signed = sign_model(m.export.model, meta, list(ctx.log.signers))
    check_lock(lock_conn)  # stop early if the lock is already gone
    folded = m.export.folded

    def write(d: Path) -> tuple[str, dict[str, str]]:
        # explicit(): the preprocessing it was measured with, also for a spec registered
        # before the preprocessing was recorded
        spec = m.spec.explicit()
        save_checkpoint(folded, spec, d / "model.safetensors", extra={"apply_id": apply_id})
        _, sha = save_model(signed, d / "model.onnx")
        return sha, _write_figures(m.bank, d, apply_id)

    adir = ctx.store.apply_dir(plan.name, apply_id)
    needed = signed.ByteSize() + state_bytes(folded) + _FIGURES_BYTES
    onnx_sha, figures = write_new_dir(adir, needed, write)
    return adir, OnnxRef(sha256=onnx_sha, content_hash=content_hash(signed)), figures


def _commit_applied(
    ctx: ApplyContext,
    lock_conn: Connection | None,
    *,
    attempt: _Attempt,
    plan: _Plan,
    attestation: UnlearningAttestation,
    applied_at: datetime,
    figures: dict[str, str],
    onnx_ref: OnnxRef,
    adir: Path,
    step: Step,
) -> ApplyResult | None:
    """The one transaction of a successful apply, on the apply lock's connection (so an apply
    that lost its lock cannot commit). Returns what was committed, built before the commit
    (None if the commit went through but its acknowledgement was lost); when it did not
    commit, the apply's folder is removed and the error says nothing was published."""
    store, log, apply_id = ctx.store, ctx.log, attempt.apply_id
    res: ApplyResult | None = None
    body_done = False  # after this, only the COMMIT itself can fail
    try:
        with store.write(bind=lock_conn) as s:
            locked = _locked_unchanged(ctx, s, plan.snapshot)
            entry = log.append(
                attestation.to_statement(onnx_name=f"{attempt.model}.onnx"), session=s
            )
            step("logged")
            last = log.append(_figures_event(attempt, applied_at, entry.index, figures), session=s)
            last = attempt.log_principal(ctx, s, entry.index) or last
            last = (
                _move_requests(ctx, s, locked, plan.snapshot, apply_id, applied_at, entry) or last
            )
            new_row = attempt.row(
                plan.covered, log_index=entry.index, onnx=onnx_ref, artifact_dir=store.rel(adir)
            )
            mark_applied(s, attempt.model, plan.inherited, apply_id=apply_id, log_index=entry.index)
            s.add(new_row)
            store.model_row(s, attempt.model).current_apply_id = apply_id
            s.flush()
            # What was committed, built before the commit: no read-back after it.
            res = apply_result(store, log, new_row, checkpoint=last.checkpoint)
            step("before_commit")
            body_done = True
    except StoreError as e:
        if not body_done or not committed(store, apply_id, e):
            shutil.rmtree(adir, ignore_errors=True)  # nothing refers to this apply's files
            raise not_committed(e, lock_conn) from e
    except BaseException:
        if not body_done:
            shutil.rmtree(adir, ignore_errors=True)
        raise
    return res


def _locked_unchanged(
    ctx: ApplyContext, s: Session, snapshot: dict[str, str]
) -> dict[str, RequestRow]:
    """The covered requests, locked, unless one changed state since the apply planned."""
    stmt = select(RequestRow).where(RequestRow.id.in_(list(snapshot)))
    locked = {r.id: r for r in ctx.store.locked_all(s, stmt)}
    changed = [rid for rid, st in snapshot.items() if rid not in locked or locked[rid].status != st]
    if changed:
        raise ApplyError(
            f"requests {changed} changed state while applying; nothing was published, run "
            "`lethe apply` again"
        )
    return locked


def _figures_event(
    attempt: _Attempt, at: datetime, log_index: int, figures: dict[str, str]
) -> LifecycleEvent:
    details = {
        "apply_id": attempt.apply_id,
        "model": attempt.model,
        "log_index": log_index,
        "attachments": figures,
    }
    return LifecycleEvent(EventType.APPLY_FIGURES, rfc3339(at), details=details)


def _move_requests(
    ctx: ApplyContext,
    s: Session,
    locked: dict[str, RequestRow],
    snapshot: dict[str, str],
    apply_id: str,
    applied_at: datetime,
    entry: AppendResult,
) -> AppendResult | None:
    """Approved requests become applied, applied ones superseded (logged); the last append."""
    last: AppendResult | None = None
    for rid, st in snapshot.items():
        r = locked[rid]
        r.apply_id = apply_id
        # the new model only masks: erased again by its erase phase
        r.erased_at = None
        if st == RequestStatus.APPROVED:
            r.status = RequestStatus.APPLIED.value
            r.applied_at = applied_at
            r.failure_reason = None
        elif st == RequestStatus.APPLIED:
            r.status = RequestStatus.SUPERSEDED.value
            s.flush()
            event = LifecycleEvent(
                EventType.REQUEST_SUPERSEDED,
                rfc3339(applied_at),
                request_id=rid,
                details={"apply_log_index": entry.index},
            )
            last = ctx.log.append(event, session=s)
    return last


def _write_figures(bank: FilterBank, adir: Path, apply_id: str) -> dict[str, str]:
    """The bank's explainability figures for this apply, named for the auditor bundle; their
    digests are logged (``apply.figures``) so a report can show them as authenticated."""
    from lethe.filters import explain

    res = explain(bank, adir / "figures-tmp", layers=[], class_labels=False)
    out: dict[str, str] = {}
    for kind, src in (
        ("alpha_summary", res.summary_figure),
        ("channel_overlap", res.overlap_figure),
    ):
        dest = adir / f"{apply_id}.{kind}.png"
        os.replace(src, dest)
        out[dest.name] = "sha256:" + hashlib.sha256(dest.read_bytes()).hexdigest()
    shutil.rmtree(adir / "figures-tmp", ignore_errors=True)
    return out


def _record_failure(
    ctx: ApplyContext,
    attempt: _Attempt,
    new: list[RequestRow],
    step: Step,
    lock_conn: Connection | None = None,
) -> ApplyResult:
    """Log the ``failed`` attestation and mark the new requests failed with the reasons."""
    store, log = ctx.store, ctx.log
    attestation = attempt.attestation(new, at=utcnow(), onnx=None)
    reason = "; ".join(attempt.verdict.reasons)
    res: ApplyResult | None = None
    body_done = False
    try:
        with store.write(bind=lock_conn) as s:
            entry = log.append(attestation.to_statement(), session=s)
            last = attempt.log_principal(ctx, s, entry.index) or entry
            for r in new:
                row = store.existing_request(s, r.id)
                # an inherited request stays as it is for the model it was filed for
                if row.status != RequestStatus.APPROVED or row.model_name != attempt.model:
                    continue
                row.status = RequestStatus.FAILED.value
                row.failure_reason = reason
                row.apply_id = attempt.apply_id
            arow = attempt.row(new, log_index=entry.index, onnx=None, artifact_dir=None)
            s.add(arow)
            s.flush()
            res = apply_result(store, log, arow, checkpoint=last.checkpoint)
            body_done = True
    except StoreError as e:
        if not body_done or not committed(store, attempt.apply_id, e):
            raise not_committed(e, lock_conn) from e
    step("failure_logged")
    if res is None:
        res = read_result(ctx, attempt.apply_id)
    return replace(res, new_request_ids=tuple(r.id for r in new))


def figure_files(ctx: ApplyContext) -> list[Path]:
    """Figure files of every successful apply (attachments for the auditor bundle)."""
    with ctx.store.read() as s:
        stmt = select(ApplyRow).where(ApplyRow.outcome == ApplyOutcome.APPLIED.value)
        rows = list(s.execute(stmt).scalars())
    files: list[Path] = []
    for r in rows:
        if r.artifact_dir:
            files += sorted(ctx.store.abs(r.artifact_dir).glob(f"{r.id}.*.png"))
    return files
