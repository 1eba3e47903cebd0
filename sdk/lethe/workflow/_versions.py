"""Model versions that keep their deletions (DESIGN §5), and rolling back a bad apply.

A model registered with ``supersedes=OLD`` inherits every standing deletion of ``OLD``
(approved, applied and superseded requests, and what ``OLD`` itself inherited): each is
*pending* for the new model until an apply of the new model folds and verifies its classes
(``wf_coverage`` row ``applied``) or the user attests that the new model was trained without
them and Lethe measures that it does not recognise them (``attested``). A model with a pending
inherited deletion is not published: its erase, export and rollback are refused
(:class:`~lethe.errors.InheritedDeletionsPendingError`), and its apply always includes the
inherited classes. The request keeps its own status for the model it was filed for.

The log records the succession (``model.superseded``, naming both base digests and the
inherited requests), every attestation (``model.attested_without``, with the measured forget
accuracy) and every rollback (``apply.rolled_back``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lethe.errors import (
    ClassMismatchError,
    InconsistentStateError,
    InheritedDeletionsPendingError,
    ModelRegistrationError,
    NothingToApplyError,
    RequestError,
    RollbackError,
    TrainedWithoutRefusedError,
)
from lethe.workflow._lock import apply_lock
from lethe.workflow._publish import ApplyContext, read_result, reconcile, swap_link
from lethe.workflow._store import ProjectStore, idempotent
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import ApplyResult
from lethe_audit.statements import (
    ApplyOutcome,
    EventType,
    LifecycleEvent,
    Phase,
    RequestStatus,
    rfc3339,
)
from lethe_audit.store import ApplyRow, CoverageRow, ModelRow, RequestRow

if TYPE_CHECKING:
    from lethe_audit.metrics import Policy

__all__ = [
    "AttestedWithout",
    "InheritedDeletion",
    "VersionService",
    "check_class_prefix",
    "check_supersedes",
    "inherited_rows",
    "mark_applied",
    "pending_rows",
    "require_none_pending",
    "superseded_event",
]

#: The requests of a model that stand (their classes stay forgotten in every later version).
_STANDING = (RequestStatus.APPROVED, RequestStatus.APPLIED, RequestStatus.SUPERSEDED)
_MAX_REASON = 500


@dataclass(frozen=True)
class InheritedDeletion:
    """A standing deletion of an older version as a newer model version covers it."""

    request_id: str
    from_model: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    #: ``pending`` (not yet applied to this model), ``applied`` or ``attested``.
    status: str
    apply_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "from_model": self.from_model,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "status": self.status,
            "apply_id": self.apply_id,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AttestedWithout:
    """An accepted attestation: the classes, the requests it covers, what was measured."""

    model: str
    classes: tuple[int, ...]
    request_ids: tuple[str, ...]
    forget_accuracy: float
    per_class: dict[str, float]
    threshold: float
    log_index: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "classes": list(self.classes),
            "request_ids": list(self.request_ids),
            "forget_accuracy": self.forget_accuracy,
            "per_class": dict(self.per_class),
            "max_forget_accuracy": self.threshold,
            "log_index": self.log_index,
        }


# -- reading (inside a caller's session) --------------------------------------------------------


def ancestors(store: ProjectStore, s: Session, name: str) -> list[ModelRow]:
    """The models ``name`` supersedes, nearest first."""
    out: list[ModelRow] = []
    seen = {name}
    row = store.model_row(s, name)
    while row.supersedes is not None:
        if row.supersedes in seen:
            raise InconsistentStateError(
                f"model {name!r}: its chain of superseded models loops at {row.supersedes!r}; "
                "the database was edited: restore it from a backup"
            )
        seen.add(row.supersedes)
        row = store.model_row(s, row.supersedes)
        out.append(row)
    return out


def inherited_rows(store: ProjectStore, s: Session, name: str) -> list[RequestRow]:
    """Every standing request of the models ``name`` supersedes (directly or not)."""
    names = [r.name for r in ancestors(store, s, name)]
    if not names:
        return []
    stmt = (
        select(RequestRow)
        .where(RequestRow.model_name.in_(names), RequestRow.status.in_(_STANDING))
        .order_by(RequestRow.received_at, RequestRow.id)
    )
    return list(s.execute(stmt).scalars())


def _coverage(s: Session, name: str) -> dict[str, CoverageRow]:
    stmt = select(CoverageRow).where(CoverageRow.model_name == name)
    return {c.request_id: c for c in s.execute(stmt).scalars()}


def pending_rows(store: ProjectStore, s: Session, name: str) -> list[RequestRow]:
    """The inherited requests neither applied to ``name`` nor attested absent from it."""
    covered = _coverage(s, name)
    return [r for r in inherited_rows(store, s, name) if r.id not in covered]


def require_none_pending(store: ProjectStore, name: str, *, what: str) -> None:
    """Refuse to publish ``name`` (``what``: erase it, export it, ...) while an inherited
    deletion is pending for it."""

    def run() -> list[RequestRow]:
        with store.read() as s:
            return pending_rows(store, s, name)

    pending = store.retry(run, what="reading the inherited deletions")
    if pending:
        raise InheritedDeletionsPendingError(_pending_message(name, pending, what))


def _pending_message(name: str, pending: Sequence[RequestRow], what: str) -> str:
    ids = ", ".join(r.id for r in pending[:5]) + (" ..." if len(pending) > 5 else "")
    classes = sorted({c for r in pending for c in json.loads(r.classes)})
    return (
        f"cannot {what} model {name!r}: {len(pending)} deletion(s) of the model it supersedes "
        f"are not applied to it yet ({ids}; classes {classes}). Apply them (`lethe apply "
        f"{name}`: its apply includes them) or, if {name!r} was trained without those "
        f"classes, attest it (`lethe model attest-without {name} --classes ... --reason ...`)"
    )


def mark_applied(
    s: Session, name: str, rows: Iterable[RequestRow], *, apply_id: str, log_index: int
) -> None:
    """Inherited ``rows`` are applied to model ``name`` by ``apply_id`` (in its transaction)."""
    now = utcnow()
    for r in rows:
        cov = s.get(CoverageRow, (r.id, name))
        if cov is None:
            cov = CoverageRow(request_id=r.id, model_name=name)
            s.add(cov)
        cov.status, cov.apply_id, cov.reason = "applied", apply_id, None
        cov.log_index, cov.updated_at = log_index, now


# -- registering a successor --------------------------------------------------------------------


def check_supersedes(
    store: ProjectStore, s: Session, new: str, old: str, *, lock: bool = False
) -> ModelRow:
    """The model ``new`` may supersede: ``old`` exists, is not ``new`` and has no successor.
    ``lock`` (the registering transaction): ``old``'s row stays locked until the commit, so two
    concurrent registrations cannot both become its successor."""
    row = store.model_row(s, old, lock=lock)
    if row.name == new:
        raise ModelRegistrationError(f"model {new!r} cannot supersede itself")
    taken = s.execute(
        select(ModelRow.name).where(ModelRow.supersedes == row.name)
    ).scalar_one_or_none()
    if taken is not None:
        raise ModelRegistrationError(
            f"model {row.name!r} is already superseded by {taken!r}: supersede {taken!r} "
            f"instead (its deletions include those of {row.name!r})"
        )
    return row


def check_class_prefix(old: ModelRow, class_names: Sequence[str]) -> None:
    """A successor keeps the class ids of its predecessor (it may add classes after them), so
    the inherited requests' class ids mean the same classes in both models."""
    before = tuple(json.loads(old.class_names))
    if tuple(class_names[: len(before)]) != before:
        raise ClassMismatchError(
            f"a model superseding {old.name!r} must keep its classes in the same order (it may "
            f"add classes after them): {old.name!r} has {list(before)}, the new model "
            f"{list(class_names)}"
        )


def superseded_event(
    new: ModelRow, old: ModelRow, inherited: Sequence[RequestRow], at: datetime
) -> LifecycleEvent:
    """``model.superseded``: the succession, as the auditor sees the chain."""
    details = {
        "model": new.name,
        "base_digest": f"sha256:{new.base_digest}",
        "supersedes": old.name,
        "supersedes_base_digest": f"sha256:{old.base_digest}",
        "inherited_requests": [r.id for r in inherited],
        "inherited_classes": sorted({c for r in inherited for c in json.loads(r.classes)}),
    }
    return LifecycleEvent(EventType.MODEL_SUPERSEDED, rfc3339(at), details=details)


# -- the service -------------------------------------------------------------------------------


class VersionService:
    """Inherited deletions of model versions, attestations, rollbacks."""

    def __init__(self, ctx: ApplyContext) -> None:
        self._ctx = ctx
        self._store = ctx.store

    @idempotent
    def inherited(self, model: str | None = None) -> list[InheritedDeletion]:
        """The standing deletions ``model`` inherits from the models it supersedes, each
        ``pending``, ``applied`` (to this model, by ``apply_id``) or ``attested`` (absent from
        it, with the ``reason``). Empty for a model that supersedes none."""
        store = self._store
        with store.read() as s:
            name = store.model_row(s, model).name
            covered = _coverage(s, name)
            out = []
            for r in inherited_rows(store, s, name):
                names = json.loads(store.model_row(s, r.model_name).class_names)
                ids = tuple(json.loads(r.classes))
                cov = covered.get(r.id)
                out.append(
                    InheritedDeletion(
                        request_id=r.id,
                        from_model=r.model_name,
                        classes=ids,
                        class_names=tuple(names[c] for c in ids),
                        status=cov.status if cov is not None else "pending",
                        apply_id=cov.apply_id if cov is not None else None,
                        reason=cov.reason if cov is not None else None,
                    )
                )
        return out

    def attest_without(
        self,
        model: str | None,
        classes: Iterable[int | str],
        *,
        reason: str,
        policy: Policy,
        device: str | None = None,
    ) -> AttestedWithout:
        """See :meth:`lethe.workflow._applies.ApplyService.attest_without`."""
        from lethe.workflow._requests import resolve_classes

        text = _check_reason(reason)
        store = self._store
        with store.read() as s:
            mrow = store.model_row(s, model)
            name, ids = mrow.name, resolve_classes(mrow, classes)
            covered = _attestable(name, ids, pending_rows(store, s, name))
        threshold = policy.max_forget_accuracy
        if threshold is None:
            threshold = 0.01  # the policy does not bound forget accuracy: use the default's
        acc, per_class = self._measure(name, ids, device)
        if acc > threshold or max(per_class.values()) > threshold:  # every class, not the mean
            raise TrainedWithoutRefusedError(
                f"model {name!r} still recognises classes {list(ids)}: their forget accuracy "
                f"on the eval data of it and the models it supersedes is {acc:.4f} (per class "
                f"{per_class}), above the policy's max_forget_accuracy {threshold} (overall or "
                f"for a class); nothing was logged. It was not trained without them: apply the "
                f"deletions to it (`lethe filters train {name}`, `lethe apply {name}`)"
            )
        return self._log_attestation(name, ids, covered, text, acc, per_class, threshold)

    def _measure(
        self, name: str, ids: tuple[int, ...], device: str | None
    ) -> tuple[float, dict[str, float]]:
        """Forget accuracy of the base (unfiltered) model on the eval samples of ``ids``: its
        own eval data and that of every model it supersedes (the data the deletions were
        verified on when they were applied there), so eval data registered without those
        classes, or with a few easy samples of them, cannot make the measurement vacuous."""
        import numpy as np

        from lethe.metrics import TorchBackend
        from lethe.models import resolve_device

        model, spec = self._ctx.models.load_model(name)
        backend = TorchBackend(model, device=resolve_device(device))
        with self._store.read() as s:
            sources = [name] + [r.name for r in ancestors(self._store, s, name)]
        correct, total = dict.fromkeys(ids, 0), dict.fromkeys(ids, 0)
        for source in sources:
            data = self._ctx.models.data(source, split="eval")
            mask = np.isin(data.y, np.asarray(ids))
            if not mask.any():
                continue
            logits = backend.logits(spec.preprocess.numpy(data.x[mask]))
            pred, y = np.asarray(logits).argmax(axis=1), data.y[mask]
            for c in ids:
                total[c] += int((y == c).sum())
                correct[c] += int((pred[y == c] == c).sum())
        missing = [c for c in ids if total[c] == 0]
        if missing:
            raise TrainedWithoutRefusedError(
                f"no eval data of model {name!r} or of the models it supersedes has a sample of "
                f"classes {missing}: Lethe cannot measure that the model does not recognise "
                "them; nothing was logged"
            )
        # keyed by class id: it goes into the log, which holds class ids, never class names
        per_class = {str(c): round(correct[c] / total[c], 6) for c in ids}
        return sum(correct.values()) / sum(total.values()), per_class

    def _log_attestation(
        self,
        name: str,
        ids: tuple[int, ...],
        covered: list[RequestRow],
        reason: str,
        acc: float,
        per_class: dict[str, float],
        threshold: float,
    ) -> AttestedWithout:
        store, log = self._store, self._ctx.log
        now = utcnow()
        # under the model's apply lock: an apply of it covering the same requests waits
        with (
            apply_lock(store.engine, store.model_dir(name), name) as lock_conn,
            store.write(bind=lock_conn) as s,
        ):
            mrow = store.model_row(s, name, lock=True)
            still = {r.id for r in pending_rows(store, s, name)}
            rows = [r for r in covered if r.id in still]
            if not rows:
                raise NothingToApplyError(
                    f"the deletions {[r.id for r in covered]} were covered for model {name!r} "
                    "meanwhile; nothing to attest"
                )
            details = {
                "model": name,
                "base_digest": f"sha256:{mrow.base_digest}",
                "eval_data_digest": f"sha256:{mrow.eval_data_digest}",
                "classes": list(ids),
                "requests": [r.id for r in rows],
                "forget_accuracy": acc,
                "per_class_forget_accuracy": per_class,
                "measured_on": [name] + [r.name for r in ancestors(store, s, name)],
                "max_forget_accuracy": threshold,
                "reason": reason,
            }
            event = LifecycleEvent(EventType.MODEL_ATTESTED_WITHOUT, rfc3339(now), details=details)
            index = log.append(event, session=s).index
            for r in rows:
                s.add(
                    CoverageRow(
                        request_id=r.id, model_name=name, status="attested", apply_id=None,
                        reason=reason, log_index=index, updated_at=now,
                    )
                )  # fmt: skip
        return AttestedWithout(
            name, ids, tuple(r.id for r in rows), acc, per_class, threshold, index
        )

    def rollback(self, apply_id: str) -> ApplyResult:
        """Republish an earlier successful apply ``apply_id`` of the same model, one that
        forgets at least the classes published now (:class:`~lethe.errors.RollbackError`
        otherwise), under the apply lock; logged (``apply.rolled_back``). Refused while the model
        has pending inherited deletions. The rolled-back-to apply keeps its own attestation."""
        store = self._store
        with store.read() as s:
            target = s.get(ApplyRow, apply_id)
            if target is None:
                raise RollbackError(f"no apply with id {apply_id!r} (see `lethe model show`)")
            name = target.model_name
        require_none_pending(store, name, what="roll back")
        with apply_lock(store.engine, store.model_dir(name), name) as lock_conn:
            reconcile(store, name)
            with store.write(bind=lock_conn) as s:
                mrow = store.model_row(s, name, lock=True)
                target = store.apply_row(s, apply_id)
                current = _check_rollback(store, s, mrow, target)
                if target.phase == Phase.MASK:  # the published model is masked, not yet erased
                    for r in s.execute(
                        select(RequestRow).where(
                            RequestRow.model_name == name, RequestRow.erased_at.is_not(None)
                        )
                    ).scalars():
                        r.erased_at = None
                details = {
                    "model": name,
                    "from_apply_id": current.id,
                    "from_log_index": current.log_index,
                    "to_apply_id": target.id,
                    "to_log_index": target.log_index,
                    "forgotten_classes": json.loads(target.forgotten_classes),
                }
                event = LifecycleEvent(
                    EventType.APPLY_ROLLED_BACK, rfc3339(utcnow()), details=details
                )
                self._ctx.log.append(event, session=s)
                mrow.current_apply_id = target.id
            swap_link(store.published_link(name), f"applies/{apply_id}")
        return read_result(self._ctx, apply_id)


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise RequestError("an attestation needs a reason (it is written to the signed log)")
    text = " ".join(reason.split())
    if len(text) > _MAX_REASON or not text.isprintable():
        raise RequestError(
            f"the reason must be one line of at most {_MAX_REASON} printable characters "
            "(it is written to the signed log: no personal data)"
        )
    return text


def _attestable(name: str, ids: tuple[int, ...], pending: list[RequestRow]) -> list[RequestRow]:
    """The pending inherited requests whose classes ``ids`` cover completely."""
    if not pending:
        raise NothingToApplyError(f"no inherited deletion is pending for model {name!r}")
    wanted = set(ids)
    pending_classes = {c for r in pending for c in json.loads(r.classes)}
    extra = sorted(wanted - pending_classes)
    if extra:
        raise RequestError(
            f"classes {extra} are not forgotten by a pending inherited deletion of model "
            f"{name!r} (pending classes: {sorted(pending_classes)})"
        )
    covered = [r for r in pending if set(json.loads(r.classes)) <= wanted]
    if not covered:
        raise RequestError(
            f"attest every class of a pending deletion: e.g. request {pending[0].id} forgets "
            f"classes {json.loads(pending[0].classes)}"
        )
    return covered


def _check_rollback(store: ProjectStore, s: Session, mrow: ModelRow, target: ApplyRow) -> ApplyRow:
    """The published apply a rollback to ``target`` replaces, if the rollback is allowed: an
    earlier successful apply of the same model, its files there, forgetting at least as much."""
    if target.outcome != ApplyOutcome.APPLIED or not target.artifact_dir:
        raise RollbackError(f"apply {target.id} failed its policy: it published nothing")
    if mrow.current_apply_id is None:
        raise RollbackError(f"nothing is published for model {mrow.name!r}")
    if mrow.current_apply_id == target.id:
        raise RollbackError(f"apply {target.id} is what model {mrow.name!r} publishes now")
    current = store.apply_row(s, mrow.current_apply_id)
    if target.finished_at >= current.finished_at:
        raise RollbackError(
            f"apply {target.id} is not earlier than the published {current.id}: a rollback "
            "republishes an earlier apply"
        )
    have = set(json.loads(target.forgotten_classes))
    need = set(json.loads(current.forgotten_classes))
    if not need <= have:
        raise RollbackError(
            f"apply {target.id} forgets classes {sorted(have)}, the published {current.id} "
            f"forgets {sorted(need)}: rolling back would bring classes {sorted(need - have)} "
            "back. Roll back only to an apply that forgets at least as much"
        )
    onnx = store.abs(target.artifact_dir) / "model.onnx"
    if not onnx.is_file():
        raise RollbackError(f"apply {target.id}'s files are gone ({onnx} is missing)")
    return current
