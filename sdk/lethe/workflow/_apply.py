"""Apply: compose every approved and applied request of a model, fold, verify, log, publish.

Crash safety (DESIGN §5): the new artefacts are written (fsynced) into a fresh
``models/<name>/applies/<apply id>/`` folder *before* the one database transaction that appends
the signed attestation, moves the requests and points the model at the new apply. Until that
commit nothing refers to the folder; after it, everything does. The ``published`` symlink (what
edge distribution reads) is swapped atomically after the commit and repaired from the database
by the next apply if a crash fell in between. A failing policy publishes nothing, logs a
``failed`` attestation and marks the new requests failed with the reasons.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from lethe._io import fsync_dir
from lethe.errors import (
    ApplyError,
    ApplyLockLostError,
    NothingToApplyError,
    PublishedLinkError,
)
from lethe.workflow._lock import LOST_LOCK, apply_lock, check_lock
from lethe.workflow._space import write_new_dir
from lethe.workflow._time import now as utcnow
from lethe.workflow._time import utc
from lethe.workflow._types import ApplyResult
from lethe_audit.errors import StoreError
from lethe_audit.log import AppendResult
from lethe_audit.statements import (
    LifecycleEvent,
    MethodRef,
    ModelRef,
    OnnxRef,
    PolicyVerdict,
    RequestRecord,
    UnlearningAttestation,
    rfc3339,
)
from lethe_audit.store import ApplyRow, ModelRow, RequestRow, is_transient, retry_transient

if TYPE_CHECKING:
    from lethe.workflow._project import Lethe

__all__ = ["METHOD_NAME", "apply_result", "figure_files", "published_paths", "run_apply"]

METHOD_NAME = "weight-filtering"
_COVERED = ("approved", "applied", "superseded")
PARITY_SAMPLES = 32
_FIGURES_BYTES = 4 << 20  # generous room for the two figures and the folder's metadata


def _state_bytes(model: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in model.state_dict().values()))


def _record(row: RequestRow) -> RequestRecord:
    assert row.decided_at is not None
    return RequestRecord(
        id=row.id,
        subject_commitment=row.subject_commitment,
        classes=tuple(json.loads(row.classes)),
        legal_basis=row.legal_basis,
        received_at=rfc3339(utc(row.received_at)),
        due_at=rfc3339(utc(row.due_at)),
        approved_at=rfc3339(utc(row.decided_at)),
    )


def _thresholds(policy: Any) -> dict[str, float]:
    return {
        k: v
        for k, v in policy.to_dict().items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _published_link(lt: Lethe, name: str) -> Path:
    return lt.model_dir(name) / "published"


def _swap_link(link: Path, target: str) -> None:
    copied = _set_aside_copy(link, target) if link.is_dir() and not link.is_symlink() else None
    tmp = link.with_name(f".published.{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)
    if copied is not None:
        shutil.rmtree(copied, ignore_errors=True)


def _set_aside_copy(link: Path, target: str) -> Path:
    """``published`` is a real folder: the project was copied with symlinks followed (``cp -rL``,
    some backup tools). The database names the published apply, so when that apply's own folder
    exists the copy is redundant: move it aside (removed once the symlink is back)."""
    if not (link.parent / target).is_dir():
        raise PublishedLinkError(
            f"{link} is a folder, not the symlink Lethe keeps (was the project copied with "
            f"symlinks followed, e.g. `cp -rL`?), and {link.parent / target}, the apply the "
            f"database says is published, is missing: restore that folder from {link} "
            f"(`mv {link} {link.parent / target}`) and run `lethe apply` again"
        )
    aside = link.with_name(f".published.copy-{secrets.token_hex(4)}")
    os.rename(link, aside)
    return aside


def _reconcile(lt: Lethe, name: str) -> None:
    """Make the filesystem agree with the database (the source of truth) after a crash."""
    mdir = lt.model_dir(name)
    with lt._read() as s:
        row = s.get(ModelRow, name)
        assert row is not None
        current = row.current_apply_id
        known = {
            a.id for a in s.execute(select(ApplyRow).where(ApplyRow.model_name == name)).scalars()
        }
    applies = mdir / "applies"
    if applies.is_dir():
        for d in applies.iterdir():
            # Written by an apply that never committed: nothing refers to it.
            if d.is_dir() and d.name not in known:
                shutil.rmtree(d, ignore_errors=True)
    link = _published_link(lt, name)
    for stale in mdir.glob(".published.*"):
        if stale.is_dir() and not stale.is_symlink():  # a copy set aside by _swap_link
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if current is None:
        return
    target = f"applies/{current}"
    if not link.is_symlink() or os.readlink(link) != target:
        _swap_link(link, target)


def published_paths(lt: Lethe, name: str) -> dict[str, Path] | None:
    with lt._read() as s:
        row = s.get(ModelRow, name)
        assert row is not None
        current = row.current_apply_id
    if current is None:
        return None
    d = lt.model_dir(name) / "applies" / current
    return {"dir": d, "checkpoint": d / "model.safetensors", "onnx": d / "model.onnx"}


def apply_result(lt: Lethe, row: ApplyRow, *, checkpoint: str | None = None) -> ApplyResult:
    paths: tuple[str | None, str | None] = (None, None)
    if row.artifact_dir:
        d = lt._abs(row.artifact_dir)
        paths = (str(d / "model.safetensors"), str(d / "model.onnx"))
    cp = checkpoint if checkpoint is not None else lt.log.checkpoint()
    return ApplyResult.from_row(row, checkpoint=cp, paths=paths)


def _read_result(lt: Lethe, apply_id: str) -> ApplyResult:
    def run() -> ApplyResult:
        with lt._read() as s:
            arow = s.get(ApplyRow, apply_id)
            assert arow is not None
            return apply_result(lt, arow)

    return retry_transient(run, what=f"reading apply {apply_id}")


def _committed(lt: Lethe, apply_id: str, error: StoreError) -> bool:
    """Whether the apply's transaction committed although its COMMIT reported ``error`` (the
    connection can die after the server committed, before the client heard of it)."""

    def run() -> bool:
        with lt._read() as s:
            return s.get(ApplyRow, apply_id) is not None

    try:
        return retry_transient(run, what="checking whether the apply committed")
    except StoreError as e2:
        raise StoreError(
            f"{error}; whether apply {apply_id} committed is unknown ({e2}): run `lethe apply` "
            "again once the database is reachable (it repairs the files either way)"
        ) from error


def _not_committed(error: StoreError, lock_conn: Connection | None) -> Exception:
    if lock_conn is not None and is_transient(error):
        return ApplyLockLostError(f"{LOST_LOCK} ({error})")
    return StoreError(
        f"{error}; the apply stopped before its commit: nothing was published, run "
        "`lethe apply` again"
    )


def run_apply(
    lt: Lethe,
    model: str | None,
    *,
    relearn: bool,
    progress: bool,
    policy: Any,
    fault: Callable[[str], None] | None,
) -> ApplyResult:
    from lethe.metrics import TorchBackend
    from lethe_audit.metrics import ImageSet, OnnxBackend, Policy, RelearnConfig, evaluate

    step = fault or (lambda _s: None)
    name = lt.model(model).name
    pol = policy if policy is not None else Policy.from_mapping(lt.settings.policy)
    with apply_lock(lt.engine, lt.model_dir(name), name) as lock_conn:
        _reconcile(lt, name)
        with lt._read() as s:
            mrow = s.get(ModelRow, name)
            assert mrow is not None
            rows = list(
                s.execute(
                    select(RequestRow)
                    .where(RequestRow.model_name == name, RequestRow.status.in_(_COVERED))
                    .order_by(RequestRow.received_at, RequestRow.id)
                ).scalars()
            )
            base_onnx = mrow.base_onnx_path
        new = [r for r in rows if r.status == "approved"]
        if not new:
            raise NothingToApplyError(f"no approved request waits for model {name!r}")
        snapshot = {r.id: r.status for r in rows}
        forget = tuple(sorted({c for r in rows for c in json.loads(r.classes)}))
        started = utcnow()
        step("start")

        model_t, spec = lt.load_model(name)
        bank = lt.load_bank(name)
        bank.check_compatible(model_t)
        eval_arr = lt.data(name, split="eval")
        info = lt.model(name)
        train_arr = lt.data(name, split="train") if info.train_data_digest else None
        pre = spec.preprocess
        eval_x = pre.numpy(eval_arr.x)
        eval_set = ImageSet(eval_x, eval_arr.y, spec.num_classes)
        train_set = (
            ImageSet(pre.numpy(train_arr.x), train_arr.y, spec.num_classes)
            if train_arr is not None
            else None
        )
        step("before_fold")

        from lethe.errors import ParityError
        from lethe.export import BaseExport, ExportConfig, export_filtered

        base = BaseExport.load(lt._abs(base_onnx), model=model_t) if base_onnx else None
        failures: list[str] = []
        try:
            export = export_filtered(
                model_t,
                bank,
                forget,
                parity_inputs=eval_x[:PARITY_SAMPLES],  # a gross check; evaluate() measures all
                base=base,
                input_shape=(spec.in_chans, *spec.input_size),
                # The policy judges parity below; here only a gross breach stops the export.
                config=ExportConfig(parity_threshold=1e3),
            )
        except ParityError as exc:
            raise ApplyError(f"the exported model does not match the folded model: {exc}") from exc
        folded = export.folded
        step("after_fold")

        result = evaluate(
            TorchBackend(folded),
            eval_set,
            forget=forget,
            base=TorchBackend(model_t),
            train_set=train_set,
            parity_reference=OnnxBackend(export.model.SerializeToString()),
            relearn=RelearnConfig() if relearn and train_set is not None else None,
            seed=0,
            progress=progress,
        )
        verdict = pol.evaluate(result)
        failures = list(verdict.reasons)
        metrics = result.to_dict()
        step("verified")

        attempt = _Attempt(
            apply_id="apply-" + secrets.token_hex(8),
            model=name,
            started=started,
            forget=forget,
            model_ref=ModelRef(name, f"sha256:{info.base_digest}", export.folded_digest),
            bank_digest=bank.digest,
            method=MethodRef(METHOD_NAME, _version(), dict(bank.train_config)),
            metrics=metrics,
            policy=pol,
        )
        apply_id = attempt.apply_id
        if failures:
            return _record_failure(lt, attempt, new, failures, step, lock_conn)

        from lethe.export import model_metadata, save_model, sign_model
        from lethe.models import save_checkpoint
        from lethe_audit.model import content_hash

        checkpoint_before = lt.log.checkpoint()
        meta = model_metadata(
            export, model_name=name, checkpoint=checkpoint_before, requests=[r.id for r in rows]
        )
        signed = sign_model(export.model, meta, list(lt.log.signers))
        check_lock(lock_conn)  # stop early if the lock is already gone
        adir = lt.model_dir(name) / "applies" / apply_id

        def write(d: Path) -> tuple[str, dict[str, str]]:
            save_checkpoint(folded, spec, d / "model.safetensors", extra={"apply_id": apply_id})
            _, sha = save_model(signed, d / "model.onnx")
            return sha, _write_figures(bank, d, apply_id)

        needed = signed.ByteSize() + _state_bytes(folded) + _FIGURES_BYTES
        onnx_sha, figures = write_new_dir(adir, needed, write)
        step("artifacts_written")

        applied_at = utcnow()
        onnx_ref = OnnxRef(sha256=onnx_sha, content_hash=content_hash(signed))
        attestation = attempt.attestation(rows, at=applied_at, failures=[], onnx=onnx_ref)
        res = _commit_applied(
            lt,
            lock_conn,
            attempt=attempt,
            rows=rows,
            snapshot=snapshot,
            attestation=attestation,
            applied_at=applied_at,
            figures=figures,
            onnx_ref=onnx_ref,
            adir=adir,
            step=step,
        )
        step("committed")
        try:
            _swap_link(_published_link(lt, name), f"applies/{apply_id}")
        except OSError as e:  # committed: the apply stands; the next apply repairs the link
            warnings.warn(
                f"{apply_id} is committed, but {_published_link(lt, name)} could not be pointed "
                f"at it ({e}); the next `lethe apply` repairs it",
                stacklevel=2,
            )
        step("published")
        if res is None:  # committed, but the acknowledgement was lost: read what was committed
            res = _read_result(lt, apply_id)
        return _with_new(res, [r.id for r in new])


def _commit_applied(
    lt: Lethe,
    lock_conn: Connection | None,
    *,
    attempt: _Attempt,
    rows: list[RequestRow],
    snapshot: dict[str, str],
    attestation: UnlearningAttestation,
    applied_at: datetime,
    figures: dict[str, str],
    onnx_ref: OnnxRef,
    adir: Path,
    step: Callable[[str], None],
) -> ApplyResult | None:
    """The one transaction of a successful apply, on the apply lock's connection (so an apply
    that lost its lock cannot commit). Returns what was committed, built before the commit
    (None if the commit went through but its acknowledgement was lost); when it did not
    commit, the apply's folder is removed and the error says nothing was published."""
    apply_id = attempt.apply_id
    res: ApplyResult | None = None
    body_done = False  # after this, only the COMMIT itself can fail
    try:
        with lt._write(bind=lock_conn) as s:
            stmt = select(RequestRow).where(RequestRow.id.in_(list(snapshot)))
            if lt.engine.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            locked = {r.id: r for r in s.execute(stmt).scalars()}
            changed = [rid for rid, st in snapshot.items() if locked[rid].status != st]
            if changed:
                raise ApplyError(
                    f"requests {changed} changed state while applying; nothing was "
                    "published, run `lethe apply` again"
                )
            statement = attestation.to_statement(onnx_name=f"{attempt.model}.onnx")
            entry = lt.log.append(statement, session=s)
            step("logged")
            last = lt.log.append(
                LifecycleEvent(
                    "apply.figures",
                    rfc3339(applied_at),
                    details={
                        "apply_id": apply_id,
                        "model": attempt.model,
                        "log_index": entry.index,
                        "attachments": figures,
                    },
                ),
                session=s,
            )
            last = _move_requests(lt, s, locked, snapshot, apply_id, applied_at, entry) or last
            new_row = attempt.row(
                rows,
                log_index=entry.index,
                failures=[],
                onnx=onnx_ref,
                artifact_dir=lt._rel(adir),
            )
            s.add(new_row)
            mrow2 = s.get(ModelRow, attempt.model)
            assert mrow2 is not None
            mrow2.current_apply_id = apply_id
            s.flush()
            # What was committed, built before the commit: no read-back after it.
            res = apply_result(lt, new_row, checkpoint=last.checkpoint)
            step("before_commit")
            body_done = True
    except StoreError as e:
        if not body_done or not _committed(lt, apply_id, e):
            shutil.rmtree(adir, ignore_errors=True)  # nothing refers to this apply's files
            raise _not_committed(e, lock_conn) from e
    except BaseException:
        if not body_done:
            shutil.rmtree(adir, ignore_errors=True)
        raise
    return res


def _move_requests(
    lt: Lethe,
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
        if st == "approved":
            r.status = "applied"
            r.applied_at = applied_at
            r.failure_reason = None
        elif st == "applied":
            r.status = "superseded"
            s.flush()
            last = lt.log.append(
                LifecycleEvent(
                    "request.superseded",
                    rfc3339(applied_at),
                    request_id=rid,
                    details={"apply_log_index": entry.index},
                ),
                session=s,
            )
    return last


def _write_figures(bank: Any, adir: Path, apply_id: str) -> dict[str, str]:
    """The bank's explainability figures for this apply, named for the auditor bundle; their
    digests are logged (``apply.figures``) so a report can show them as authenticated."""
    import hashlib

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


def figure_files(lt: Lethe) -> list[Path]:
    """Figure files of every successful apply (attachments for the auditor bundle)."""
    with lt._read() as s:
        rows = list(s.execute(select(ApplyRow).where(ApplyRow.outcome == "applied")).scalars())
    files: list[Path] = []
    for r in rows:
        if r.artifact_dir:
            files += sorted(lt._abs(r.artifact_dir).glob(f"{r.id}.*.png"))
    return files


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
    policy: Any

    def attestation(
        self, requests: list[RequestRow], *, at: datetime, failures: list[str], onnx: OnnxRef | None
    ) -> UnlearningAttestation:
        return UnlearningAttestation(
            outcome="failed" if failures else "applied",
            requests=tuple(_record(r) for r in requests),
            forgotten_classes=self.forget,
            applied_at=rfc3339(at),
            model=self.model_ref,
            filter_bank_digest=f"sha256:{self.bank_digest}",
            method=self.method,
            metrics=self.metrics,
            policy=PolicyVerdict(_thresholds(self.policy), not failures, tuple(failures)),
            onnx=onnx,
        )

    def row(
        self,
        requests: list[RequestRow],
        *,
        log_index: int,
        failures: list[str],
        onnx: OnnxRef | None,
        artifact_dir: str | None,
    ) -> ApplyRow:
        return ApplyRow(
            id=self.apply_id,
            model_name=self.model,
            outcome="failed" if failures else "applied",
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
            verdict=json.dumps(_verdict(self.policy, not failures, failures)),
            log_index=log_index,
        )


def _verdict(policy: Any, passed: bool, reasons: list[str]) -> dict[str, Any]:
    return {"passed": passed, "reasons": list(reasons), "thresholds": _thresholds(policy)}


def _with_new(res: ApplyResult, new: list[str]) -> ApplyResult:
    from dataclasses import replace

    return replace(res, new_request_ids=tuple(new))


def _version() -> str:
    from lethe import __version__

    return __version__


def _record_failure(
    lt: Lethe,
    attempt: _Attempt,
    new: list[RequestRow],
    failures: list[str],
    step: Callable[[str], None],
    lock_conn: Connection | None = None,
) -> ApplyResult:
    attestation = attempt.attestation(new, at=utcnow(), failures=failures, onnx=None)
    reason = "; ".join(failures)
    res: ApplyResult | None = None
    body_done = False
    try:
        with lt._write(bind=lock_conn) as s:
            entry = lt.log.append(attestation.to_statement(), session=s)
            for r in new:
                row = s.get(RequestRow, r.id)
                assert row is not None
                if row.status != "approved":
                    continue
                row.status = "failed"
                row.failure_reason = reason
                row.apply_id = attempt.apply_id
            arow = attempt.row(
                new, log_index=entry.index, failures=failures, onnx=None, artifact_dir=None
            )
            s.add(arow)
            s.flush()
            res = apply_result(lt, arow, checkpoint=entry.checkpoint)
            body_done = True
    except StoreError as e:
        if not body_done or not _committed(lt, attempt.apply_id, e):
            raise _not_committed(e, lock_conn) from e
    step("failure_logged")
    if res is None:
        res = _read_result(lt, attempt.apply_id)
    return _with_new(res, [r.id for r in new])
