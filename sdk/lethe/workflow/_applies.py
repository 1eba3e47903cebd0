"""The apply service: the two phases of a deletion and what they published.

``apply`` runs phase 1 (*mask*, :mod:`lethe.workflow._apply`) and by default phase 2 (*erase*,
:mod:`lethe.workflow._erase`) on what phase 1 published; receipts and published paths are read
from the applies' rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lethe.errors import ApplyError, ReceiptUnavailableError
from lethe.workflow._apply import figure_files, run_mask
from lethe.workflow._erase import run_erase
from lethe.workflow._models import ModelService
from lethe.workflow._principal import Principal
from lethe.workflow._publish import ApplyContext, apply_result, published_paths
from lethe.workflow._reference import ReferenceService
from lethe.workflow._store import ProjectStore, idempotent
from lethe.workflow._types import ApplyResult
from lethe.workflow._versions import AttestedWithout, VersionService, require_none_pending
from lethe_audit.log import AuditLog
from lethe_audit.statements import Phase, RequestStatus
from lethe_audit.store import ApplyRow

if TYPE_CHECKING:
    from lethe.filters import EraseConfig
    from lethe_audit.metrics import Policy

__all__ = ["PHASES", "ApplyService"]

#: ``both``: mask then erase (the default); ``mask``: the fast deadline path only.
PHASES = ("both", "mask")

Fault = Callable[[str], None]


class ApplyService:
    """Applies (both phases), their results, receipts and published artefacts."""

    def __init__(
        self,
        store: ProjectStore,
        log: AuditLog,
        models: ModelService,
        references: ReferenceService,
    ) -> None:
        self._store = store
        self._log = log
        self._models = models
        self._ctx = ApplyContext(store, log, models, references)
        #: Inherited deletions of model versions, attestations, rollbacks.
        self.versions = VersionService(self._ctx)

    def _policy(self, policy: Policy | None) -> Policy:
        from lethe_audit.metrics import Policy

        return policy if policy is not None else Policy.from_mapping(self._store.settings.policy)

    def apply(
        self,
        model: str | None = None,
        *,
        phase: str = "both",
        relearn: bool = True,
        progress: bool = True,
        policy: Policy | None = None,
        erase_config: EraseConfig | Mapping[str, Any] | None = None,
        device: str | None = None,
        fault: Fault | None = None,
        principal: Principal | None = None,
    ) -> ApplyResult:
        """Apply every approved request of ``model`` (with all earlier applied ones).

        Phase 1 (*mask*): compose, fold, verify, log, export, publish, in seconds. Then, with
        ``phase="both"`` (the default), phase 2 (*erase*, see :meth:`erase`) on what phase 1
        published; its result is ``result.erase``. ``phase="mask"`` runs the fast path only:
        the deletion is then "masked, not yet erased" until :meth:`erase` runs.

        With ``both`` the model's depth reference (:meth:`ReferenceService.train`) must exist
        *before* anything runs (so a missing one never leaves a half-done deletion behind):
        :class:`~lethe.errors.MissingReferenceError` names the command that makes it. A failed
        policy is a result with ``passed == False`` (logged, nothing published), not an
        exception; a failed phase 1 is returned as is (nothing to erase). The metrics (and
        phase 2's training) run on ``device`` (``cpu``, ``cuda``, ``cuda:N``; default: CUDA
        when present); folding and the ONNX export stay on the CPU. ``principal`` (``lethe
        serve`` passes the operator's token) is recorded on the apply (``applied_by``) and
        logged as an ``apply.principal`` event in the apply's own transaction (also for the
        erase phase). ``fault`` is a test hook called at each crash point.
        """
        if phase not in PHASES:
            raise ApplyError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        name = self._models.model(model).name
        if phase == "both":
            self._ctx.references.require(name)
        pol = self._policy(policy)
        mask = run_mask(
            self._ctx,
            name,
            relearn=relearn,
            progress=progress,
            policy=pol,
            fault=fault,
            device=device,
            principal=principal,
        )
        if phase == Phase.MASK or not mask.passed:
            return mask
        erased = self.erase(
            name, progress=progress, policy=pol, config=erase_config, device=device, fault=fault,
            principal=principal,
        )  # fmt: skip
        return dataclasses.replace(mask, erase=erased)

    def erase(
        self,
        model: str | None = None,
        *,
        progress: bool = True,
        policy: Policy | None = None,
        config: EraseConfig | Mapping[str, Any] | None = None,
        device: str | None = None,
        fault: Fault | None = None,
        principal: Principal | None = None,
    ) -> ApplyResult:
        """Phase 2 of the published deletion: re-train the masked model's weights so they no
        longer hold the forgotten classes (``lethe.filters.erase`` with ``config``, an
        ``EraseConfig`` or a dict over the ``[erase]`` settings), measure depth against the
        model's reference, and publish it as a new apply of the same requests (``phase:
        erase``). Raises :class:`~lethe.errors.AlreadyErasedError` when the published model is
        already erased, :class:`~lethe.errors.MissingReferenceError` without a reference,
        :class:`~lethe.errors.InheritedDeletionsPendingError` while a deletion of the model it
        supersedes is not applied to it."""
        name = self._models.model(model).name
        require_none_pending(self._store, name, what="erase")
        cfg = dict(config) if isinstance(config, Mapping) else config
        return run_erase(
            self._ctx,
            name,
            progress=progress,
            policy=self._policy(policy),
            config=cfg,
            fault=fault,
            device=device,
            principal=principal,
        )

    def attest_without(
        self,
        model: str | None,
        classes: Iterable[int | str],
        *,
        reason: str,
        policy: Policy | None = None,
        device: str | None = None,
    ) -> AttestedWithout:
        """Attest that ``model`` (a newer version) was trained without ``classes`` of its
        pending inherited deletions, giving ``reason`` (one line, written to the signed log: no
        personal data). Lethe measures it first: the base model's forget accuracy on those
        classes (eval data, on ``device``) must already meet ``policy`` (default: the
        project's) ``max_forget_accuracy``, else :class:`~lethe.errors.TrainedWithoutRefusedError`
        and nothing is logged. Accepted, the requests whose classes are all attested are covered
        for ``model`` (``model.attested_without`` event)."""
        return self.versions.attest_without(
            model, classes, reason=reason, policy=self._policy(policy), device=device
        )

    @idempotent
    def applies(self, model: str | None = None) -> list[ApplyResult]:
        """Every apply attempt (of ``model``, or all), oldest first."""
        with self._store.read() as s:
            stmt = select(ApplyRow).order_by(ApplyRow.started_at)
            if model is not None:
                stmt = stmt.where(ApplyRow.model_name == self._store.model_row(s, model).name)
            rows = list(s.execute(stmt).scalars())
        return [apply_result(self._store, self._log, r) for r in rows]

    @idempotent
    def receipt(self, request_id: str) -> str:
        """The request's receipt: a C2SP tlog-proof carrying the signed attestation of the
        latest apply that covers it, verifiable offline with the log's public key
        (:class:`~lethe.errors.ReceiptUnavailableError` before it is applied)."""
        with self._store.read() as s:
            row = self._store.request_row(s, request_id)
            if not RequestStatus(row.status).is_done or row.apply_id is None:
                raise ReceiptUnavailableError(
                    f"request {request_id} is {row.status}: a receipt exists once it is applied"
                )
            index = self._store.apply_row(s, row.apply_id).log_index
        return self._log.receipt(index)

    @idempotent
    def published(self, model: str | None = None) -> dict[str, Path] | None:
        """Paths of the published folded checkpoint and ONNX model (None before any apply)."""
        return published_paths(self._store, self._models.model(model).name)

    def figure_files(self) -> list[Path]:
        """Figure files of every successful apply (attachments for the auditor bundle)."""
        return figure_files(self._ctx)
