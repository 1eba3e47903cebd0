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
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lethe._io import fsync_dir
from lethe.errors import AlreadyErasedError, ApplyError, NothingToApplyError
from lethe.workflow._apply import (
    METHOD_NAME,
    PARITY_SAMPLES,
    _published_link,
    _reconcile,
    _record,
    _swap_link,
    _thresholds,
    _verdict,
    apply_result,
)
from lethe.workflow._lock import apply_lock, check_lock
from lethe.workflow._reference import REFERENCE_SEEDS, require_reference
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import ApplyResult, DepthReference
from lethe_audit.statements import ModelRef, OnnxRef, PolicyVerdict, UnlearningAttestation, rfc3339
from lethe_audit.store import ApplyRow, ModelRow, RequestRow

if TYPE_CHECKING:
    from lethe.workflow._project import Lethe

__all__ = ["run_erase"]

Step = Callable[[str], None]


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
    export: Any
    report: Any
    metrics: dict[str, Any]
    failures: list[str]
    base_digest: str


def _plan(lt: Lethe, name: str) -> _Plan:
    with lt._read() as s:
        mrow = s.get(ModelRow, name)
        assert mrow is not None
        if mrow.current_apply_id is None:
            raise NothingToApplyError(
                f"nothing is published for model {name!r}: run `lethe apply {name}` first"
            )
        start = s.get(ApplyRow, mrow.current_apply_id)
        assert start is not None
        if start.phase == "erase":
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
    reference = require_reference(lt, name)
    return _Plan(name, start, rows, forget, reference, utcnow(), base_onnx)


def run_erase(
    lt: Lethe,
    model: str | None,
    *,
    progress: bool,
    policy: Any,
    config: Any = None,
    fault: Step | None = None,
) -> ApplyResult:
    """Erase the published phase-1 model of ``model``; see the module docstring."""
    from lethe_audit.metrics import Policy

    step = fault or (lambda _s: None)
    name = lt.model(model).name
    pol = policy if policy is not None else Policy.from_mapping(lt.settings.policy)
    with apply_lock(lt.engine, lt.model_dir(name), name) as lock_conn:
        _reconcile(lt, name)
        plan = _plan(lt, name)
        step("erase_start")
        out = _erase_and_measure(lt, plan, pol, config, progress, step)
        # Commits go through the lock's connection (PostgreSQL): an erase that lost its lock
        # can never commit (see lethe.workflow._lock).
        if out.failures:
            return _record_failure(lt, plan, out, pol, step, lock_conn)
        check_lock(lock_conn)
        return _publish(lt, plan, out, pol, step, lock_conn)


def _erase_config(lt: Lethe, config: Any) -> Any:
    from lethe.filters import EraseConfig

    if config is None:
        return EraseConfig(**dict(lt.settings.erase))
    if isinstance(config, dict):
        return EraseConfig(**{**dict(lt.settings.erase), **config})
    return config


def _erase_and_measure(
    lt: Lethe, plan: _Plan, pol: Any, config: Any, progress: bool, step: Step
) -> _Outcome:
    from lethe import model_digest
    from lethe.data import to_dataset
    from lethe.filters import erase
    from lethe.models import load_checkpoint
    from lethe.workflow._erase_export import export_erased

    if plan.start.artifact_dir is None:
        raise ApplyError(f"apply {plan.start.id} has no artefacts to erase")
    masked, spec = load_checkpoint(lt._abs(plan.start.artifact_dir) / "model.safetensors")
    if model_digest(masked) != plan.start.folded_digest:
        raise ApplyError(
            f"the published model of apply {plan.start.id} does not match its logged digest; "
            "restore the project's models/ folder from a backup"
        )
    if lt.model(plan.name).train_data_digest is None:
        raise ApplyError(f"model {plan.name!r} has no training data: erase re-trains on it")
    base_model, _ = lt.load_model(plan.name)
    train_arr = lt.data(plan.name, split="train")
    cfg = _erase_config(lt, config)
    erased, report = erase(
        masked, to_dataset(train_arr, spec.preprocess), plan.forget, config=cfg, progress=progress
    )
    erased = erased.cpu().eval()
    step("erase_trained")
    eval_arr = lt.data(plan.name, split="eval")
    eval_x = spec.preprocess.numpy(eval_arr.x)
    export = export_erased(
        erased,
        base_model,
        base_onnx=lt._abs(plan.base_onnx) if plan.base_onnx else None,
        forget=plan.forget,
        parity_inputs=eval_x[:PARITY_SAMPLES],
        input_shape=(spec.in_chans, *spec.input_size),
    )
    metrics, failures = _measure(
        lt, plan, pol, (erased, base_model, export), spec, (eval_x, eval_arr.y), progress
    )
    step("erase_verified")
    return _Outcome(
        apply_id="apply-" + secrets.token_hex(8),
        export=export,
        report=report,
        metrics=metrics,
        failures=failures,
        base_digest=model_digest(base_model),
    )


def _measure(
    lt: Lethe,
    plan: _Plan,
    pol: Any,
    models: tuple[Any, Any, Any],
    spec: Any,
    eval_xy: tuple[Any, Any],
    progress: bool,
) -> tuple[dict[str, Any], list[str]]:
    """Metrics of the erased model (relearn over the reference's seeds, probe, ONNX parity),
    its depth against the reference, and the erase-phase policy verdict."""
    from lethe.metrics import TorchBackend
    from lethe_audit.metrics import ImageSet, OnnxBackend, RelearnConfig, depth_metric, evaluate
    from lethe_audit.statements import Phase

    erased, base_model, export = models
    eval_x, eval_y = eval_xy
    train_arr = lt.data(plan.name, split="train")
    seeds = max(REFERENCE_SEEDS, len(plan.reference.info.seeds))
    result = evaluate(
        TorchBackend(erased),
        ImageSet(eval_x, eval_y, spec.num_classes),
        forget=plan.forget,
        base=TorchBackend(base_model),
        train_set=ImageSet(spec.preprocess.numpy(train_arr.x), train_arr.y, spec.num_classes),
        parity_reference=OnnxBackend(export.model.SerializeToString()),
        relearn=RelearnConfig(seeds=seeds),
        seed=0,
        progress=progress,
    )
    result = dataclasses.replace(result, depth=depth_metric(result, plan.reference.info))
    verdict = pol.evaluate(result, phase=Phase.ERASE)
    return result.to_dict(), list(verdict.reasons)


def _attestation(
    lt: Lethe, plan: _Plan, out: _Outcome, pol: Any, *, at: datetime, onnx: OnnxRef | None
) -> UnlearningAttestation:
    from lethe.workflow._apply import _version
    from lethe_audit.statements import Phase

    bank = lt.load_bank(plan.name)
    report = out.report
    return UnlearningAttestation(
        outcome="failed" if out.failures else "applied",
        requests=tuple(_record(r) for r in plan.requests),
        forgotten_classes=plan.forget,
        applied_at=rfc3339(at),
        model=ModelRef(plan.name, f"sha256:{out.base_digest}", out.export.folded_digest),
        filter_bank_digest=f"sha256:{plan.start.bank_digest}",
        method=_method(bank, _version()),
        metrics=out.metrics,
        policy=PolicyVerdict(_thresholds(pol), not out.failures, tuple(out.failures)),
        onnx=onnx,
        phase=Phase.ERASE,
        erase={
            "method": report.method,
            "config": dict(report.config),
            "seconds": float(report.seconds),
            "retain_samples": int(report.retain_samples),
        },
        starts_from={"apply_id": plan.start.id, "model_sha256": plan.start.folded_digest},
    )


def _method(bank: Any, version: str) -> Any:
    """The phase-1 method (the filters the masked model was folded with); the erase recipe is
    the attestation's ``erase`` field."""
    from lethe_audit.statements import MethodRef

    return MethodRef(METHOD_NAME, version, dict(bank.train_config))


def _row(
    plan: _Plan,
    out: _Outcome,
    pol: Any,
    *,
    log_index: int,
    onnx: OnnxRef | None,
    artifact_dir: str | None,
) -> ApplyRow:
    return ApplyRow(
        id=out.apply_id,
        model_name=plan.name,
        outcome="failed" if out.failures else "applied",
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
        verdict=json.dumps(_verdict(pol, not out.failures, out.failures)),
        log_index=log_index,
        phase="erase",
        starts_from=plan.start.id,
    )


def _record_failure(
    lt: Lethe, plan: _Plan, out: _Outcome, pol: Any, step: Step, lock_conn: Any
) -> ApplyResult:
    attestation = _attestation(lt, plan, out, pol, at=utcnow(), onnx=None)
    with lt._write(bind=lock_conn) as s:
        entry = lt.log.append(attestation.to_statement(), session=s)
        s.add(_row(plan, out, pol, log_index=entry.index, onnx=None, artifact_dir=None))
    step("erase_failure_logged")
    return _result(lt, out.apply_id)


def _result(lt: Lethe, apply_id: str) -> ApplyResult:
    with lt._read() as s:
        arow = s.get(ApplyRow, apply_id)
        assert arow is not None
        return apply_result(lt, arow)


def _write_artifacts(lt: Lethe, plan: _Plan, out: _Outcome) -> tuple[Any, OnnxRef]:
    from lethe.export import model_metadata, save_model, sign_model
    from lethe.models import save_checkpoint
    from lethe_audit.model import content_hash

    _, spec = lt.load_model(plan.name)
    meta = model_metadata(
        out.export,
        model_name=plan.name,
        checkpoint=lt.log.checkpoint(),
        requests=[r.id for r in plan.requests],
    )
    signed = sign_model(out.export.model, meta, list(lt.log.signers))
    adir = lt.model_dir(plan.name) / "applies" / out.apply_id
    adir.mkdir(parents=True)
    extra = {"apply_id": out.apply_id, "phase": "erase", "starts_from": plan.start.id}
    save_checkpoint(out.export.folded, spec, adir / "model.safetensors", extra=extra)
    _, onnx_sha = save_model(signed, adir / "model.onnx")
    fsync_dir(adir)
    return adir, OnnxRef(sha256=onnx_sha, content_hash=content_hash(signed))


def _publish(
    lt: Lethe, plan: _Plan, out: _Outcome, pol: Any, step: Step, lock_conn: Any
) -> ApplyResult:
    adir, onnx_ref = _write_artifacts(lt, plan, out)
    step("erase_artifacts_written")
    try:
        _commit(lt, plan, out, pol, step, lock_conn, adir, onnx_ref)
    except BaseException:
        with lt._read() as s:
            committed = s.get(ApplyRow, out.apply_id) is not None
        if not committed:  # nothing refers to the folder: remove it (else the next run would)
            shutil.rmtree(adir, ignore_errors=True)
        raise
    step("erase_committed")
    _swap_link(_published_link(lt, plan.name), f"applies/{out.apply_id}")
    step("erase_published")
    return _result(lt, out.apply_id)


def _commit(
    lt: Lethe,
    plan: _Plan,
    out: _Outcome,
    pol: Any,
    step: Step,
    lock_conn: Any,
    adir: Any,
    onnx_ref: OnnxRef,
) -> None:
    """The one transaction of a successful erase."""
    erased_at = utcnow()
    attestation = _attestation(lt, plan, out, pol, at=erased_at, onnx=onnx_ref)
    with lt._write(bind=lock_conn) as s:
        mrow = lt._locked(s, select(ModelRow).where(ModelRow.name == plan.name))
        if mrow is None or mrow.current_apply_id != plan.start.id:
            raise ApplyError(
                f"model {plan.name!r} was published by another apply while erasing; nothing "
                "was published, run `lethe erase` again"
            )
        entry = lt.log.append(attestation.to_statement(onnx_name=f"{plan.name}.onnx"), session=s)
        step("erase_logged")
        for r in plan.requests:
            row = s.get(RequestRow, r.id)
            assert row is not None
            row.apply_id = out.apply_id
            row.erased_at = erased_at
        s.add(
            _row(plan, out, pol, log_index=entry.index, onnx=onnx_ref, artifact_dir=lt._rel(adir))
        )
        mrow.current_apply_id = out.apply_id
        s.flush()
        step("erase_before_commit")
