"""The apply service: the two phases of a deletion and what they published.

``apply`` runs phase 1 (*mask*, :mod:`lethe.workflow._apply`) and by default phase 2 (*erase*,
:mod:`lethe.workflow._erase`) on what phase 1 published; receipts and published paths are read
from the applies' rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lethe.errors import ApplyError, ReceiptUnavailableError
from lethe.workflow._apply import figure_files, run_mask
from lethe.workflow._erase import run_erase
from lethe.workflow._models import ModelService
from lethe.workflow._publish import ApplyContext, apply_result, published_paths
from lethe.workflow._reference import ReferenceService
from lethe.workflow._store import ProjectStore, idempotent
from lethe.workflow._types import ApplyResult
from lethe_audit.log import AuditLog
from lethe_audit.statements import RequestStatus
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
    ) -> ApplyResult:
        """Phase 1, then (``phase="both"``) phase 2 on what phase 1 published.

        With ``both`` the model's depth reference must exist *before* anything runs (so a missing
        one never leaves a half-done deletion behind): :class:`~lethe.errors.MissingReferenceError`
        names the command that makes it. A failed phase 1 is returned as is (nothing to erase).
        The result is phase 1's, with the erase phase's result in ``.erase``.
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
        )
        if phase == "mask" or not mask.passed:
            return mask
        erased = self.erase(
            name, progress=progress, policy=pol, config=erase_config, device=device, fault=fault
        )
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
    ) -> ApplyResult:
        """Phase 2 of the published deletion (see :meth:`lethe.Lethe.erase`)."""
        name = self._models.model(model).name
        cfg = dict(config) if isinstance(config, Mapping) else config
        return run_erase(
            self._ctx,
            name,
            progress=progress,
            policy=self._policy(policy),
            config=cfg,
            fault=fault,
            device=device,
        )

    @idempotent
    def applies(self, model: str | None = None) -> list[ApplyResult]:
        with self._store.read() as s:
            stmt = select(ApplyRow).order_by(ApplyRow.started_at)
            if model is not None:
                stmt = stmt.where(ApplyRow.model_name == self._store.model_row(s, model).name)
            rows = list(s.execute(stmt).scalars())
        return [apply_result(self._store, self._log, r) for r in rows]

    @idempotent
    def receipt(self, request_id: str) -> str:
        """The C2SP tlog-proof of the latest apply that covers the request."""
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
