"""The app- and admin-facing entry object: one Lethe project (database, keys, models).

:class:`Lethe` is a thin facade: it opens the :class:`~lethe.workflow.ProjectStore` and the
signed :class:`~lethe_audit.log.AuditLog`, builds the services on them (models, requests,
references, applies, exports; also public as :attr:`Lethe.services`) and forwards each public
method to one of them. The behaviour and its documentation live in the services.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lethe.errors import ProjectError
from lethe.workflow._applies import ApplyService
from lethe.workflow._exporting import ExportService
from lethe.workflow._init import create_project
from lethe.workflow._models import ModelService
from lethe.workflow._principal import Principal
from lethe.workflow._reference import ReferenceService
from lethe.workflow._requests import RequestService
from lethe.workflow._settings import Settings
from lethe.workflow._store import ProjectStore
from lethe.workflow._types import (
    ApplyResult,
    DeletionRequest,
    DepthReference,
    EvalDataExport,
    LogEntry,
    ModelExport,
    ModelInfo,
)
from lethe_audit.keys import KeyRing
from lethe_audit.log import AuditLog

if TYPE_CHECKING:  # torch-loading modules: only the commands that need them import them
    from sqlalchemy.engine import Engine
    from torch import nn

    from lethe.data import ImageArrays
    from lethe.filters import EraseConfig, FilterBank, TrainConfig
    from lethe.models import ModelSpec
    from lethe.workflow._versions import AttestedWithout, InheritedDeletion
    from lethe_audit.metrics import Policy
    from lethe_audit.note import Verifier

__all__ = ["Lethe", "Services"]


@dataclass(frozen=True)
class Services:
    """The services one :class:`Lethe` forwards to, all on the same store and log."""

    models: ModelService
    requests: RequestService
    references: ReferenceService
    applies: ApplyService
    exports: ExportService


class Lethe:
    """A Lethe project: the database (SQLite file or PostgreSQL), the log's signing keys, the
    registered models and their published artefacts.

    Open an existing project with :meth:`open` (arguments > ``LETHE_*`` environment variables >
    ``lethe.toml`` > defaults) or create one with :meth:`init`. Apps file and read requests;
    admins approve, reject, shred and apply. Every state change is written to the signed log in
    the same database transaction.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store = ProjectStore(settings)
        if not (settings.keys / "keyring.json").exists():
            self._store.close()
            raise ProjectError(
                f"no log keys in {settings.keys}: run `lethe init` (or `lethe keys generate`)"
            )
        self._ring = KeyRing.open(settings.keys)
        signers = self._ring.signers(passphrase=settings.key_passphrase)
        self._log = AuditLog(self._store.engine, signers=signers)
        self._models = ModelService(self._store, self._log)
        self._requests = RequestService(self._store, self._log)
        self._references = ReferenceService(self._store, self._log, self._models)
        self._applies = ApplyService(self._store, self._log, self._models, self._references)
        self._exports = ExportService(
            self._store, self._log, self._ring, self._models, self._applies
        )

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        project_dir: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
        key_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Lethe:
        """Open an initialised project."""
        settings = Settings.load(
            project_dir, config=config, env=env, database_url=database_url, key_dir=key_dir
        )
        return cls(settings)

    @classmethod
    def init(
        cls,
        project_dir: str | os.PathLike[str],
        *,
        database_url: str | None = None,
        key_dir: str | os.PathLike[str] | None = None,
        origin: str | None = None,
        policy: dict[str, Any] | None = None,
        key_passphrase: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Lethe:
        """Create (or complete) a project (see :func:`~lethe.workflow._init.create_project`),
        then open it. Safe to run again on an existing project."""
        settings = Settings.load(
            project_dir,
            env=env,
            database_url=database_url,
            key_dir=key_dir,
            origin=origin,
            policy=policy,
            key_passphrase=key_passphrase,
        )
        create_project(settings)
        return cls(settings)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Lethe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def log(self) -> AuditLog:
        """The signed audit log of this project."""
        return self._log

    @property
    def keyring(self) -> KeyRing:
        return self._ring

    @property
    def store(self) -> ProjectStore:
        """The project's database and folders (what the services are built on)."""
        return self._store

    @property
    def engine(self) -> Engine:
        return self._store.engine

    @property
    def services(self) -> Services:
        """The services behind this facade (``lt.services.requests.file(...)``): the same
        objects the methods below forward to; their docstrings document the behaviour."""
        return Services(
            self._models, self._requests, self._references, self._applies, self._exports
        )

    def verifiers(self) -> builtins.list[Verifier]:
        """Verifiers for every key the log has used (for checking receipts and bundles)."""
        return list(self._ring.verifiers())

    def model_dir(self, name: str) -> Path:
        return self._store.model_dir(name)

    # -- models -------------------------------------------------------------------------------

    def models(self) -> builtins.list[ModelInfo]:
        """See :meth:`ModelService.models`."""
        return self._models.models()

    def model(self, name: str | None = None) -> ModelInfo:
        """See :meth:`ModelService.model`."""
        return self._models.model(name)

    def register_model(
        self,
        name: str,
        checkpoint: str | os.PathLike[str],
        *,
        eval_data: ImageArrays | str | os.PathLike[str],
        train_data: ImageArrays | str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        spec: ModelSpec | Mapping[str, Any] | None = None,
        bank: str | os.PathLike[str] | None = None,
        export_onnx: bool = True,
        preprocessing: Mapping[str, Any] | str | None = None,
        expect_accuracy: float | None = None,
        force: bool = False,
        device: str | None = None,
        caller: Literal["python", "cli"] = "python",
        log: Callable[[str], None] | None = None,
        supersedes: str | None = None,
    ) -> ModelInfo:
        """See :meth:`ModelService.register`."""
        return self._models.register(
            name,
            checkpoint,
            eval_data=eval_data,
            train_data=train_data,
            class_names=class_names,
            spec=spec,
            bank=bank,
            export_onnx=export_onnx,
            preprocessing=preprocessing,
            expect_accuracy=expect_accuracy,
            force=force,
            device=device,
            caller=caller,
            log=log,
            supersedes=supersedes,
        )

    def load_model(self, name: str | None = None) -> tuple[nn.Module, ModelSpec]:
        """See :meth:`ModelService.load_model`."""
        return self._models.load_model(name)

    def load_bank(self, name: str | None = None) -> FilterBank:
        """See :meth:`ModelService.load_bank`."""
        return self._models.load_bank(name)

    def data(self, name: str | None = None, *, split: str = "eval") -> ImageArrays:
        """See :meth:`ModelService.data`."""
        return self._models.data(name, split=split)

    def attach_bank(self, name: str, bank_path: str | os.PathLike[str]) -> ModelInfo:
        """See :meth:`ModelService.attach_bank`."""
        return self._models.attach_bank(name, bank_path)

    def train_filters(
        self,
        name: str | None = None,
        *,
        progress: bool = True,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        device: str | None = None,
        config: TrainConfig | Mapping[str, Any] | None = None,
    ) -> FilterBank:
        """See :meth:`ModelService.train_filters`."""
        return self._models.train_filters(
            name, progress=progress, on_epoch=on_epoch, device=device, config=config
        )

    # -- requests -----------------------------------------------------------------------------

    def file(
        self,
        *,
        subject: str,
        classes: Iterable[int | str],
        legal_basis: str,
        model: str | None = None,
        idempotency_key: str | None = None,
        samples: Sequence[Any] | None = None,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """See :meth:`RequestService.file`."""
        return self._requests.file(
            subject=subject,
            classes=classes,
            legal_basis=legal_basis,
            model=model,
            idempotency_key=idempotency_key,
            samples=samples,
            principal=principal,
        )

    def get(self, request_id: str) -> DeletionRequest:
        """See :meth:`RequestService.get`."""
        return self._requests.get(request_id)

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        overdue: bool | None = None,
        model: str | None = None,
    ) -> builtins.list[DeletionRequest]:
        """See :meth:`RequestService.list`."""
        return self._requests.list(status=status, overdue=overdue, model=model)

    def approve(
        self,
        request_id: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """See :meth:`RequestService.approve`."""
        return self._requests.approve(request_id, actor=actor, reason=reason, principal=principal)

    def reject(
        self,
        request_id: str,
        *,
        actor: str | None = None,
        reason: str,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """See :meth:`RequestService.reject`."""
        return self._requests.reject(request_id, actor=actor, reason=reason, principal=principal)

    def shred(
        self, request_id: str, *, actor: str | None = None, principal: Principal | None = None
    ) -> DeletionRequest:
        """See :meth:`RequestService.shred`."""
        return self._requests.shred(request_id, actor=actor, principal=principal)

    # -- apply, references, receipts ------------------------------------------------------------

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
        principal: Principal | None = None,
        _fault: Callable[[str], None] | None = None,
    ) -> ApplyResult:
        """See :meth:`ApplyService.apply` (``_fault`` is its ``fault`` test hook)."""
        return self._applies.apply(
            model,
            phase=phase,
            relearn=relearn,
            progress=progress,
            policy=policy,
            erase_config=erase_config,
            device=device,
            fault=_fault,
            principal=principal,
        )

    def erase(
        self,
        model: str | None = None,
        *,
        progress: bool = True,
        policy: Policy | None = None,
        config: EraseConfig | Mapping[str, Any] | None = None,
        device: str | None = None,
        principal: Principal | None = None,
        _fault: Callable[[str], None] | None = None,
    ) -> ApplyResult:
        """See :meth:`ApplyService.erase`."""
        return self._applies.erase(
            model,
            progress=progress,
            policy=policy,
            config=config,
            device=device,
            fault=_fault,
            principal=principal,
        )

    def train_reference(
        self,
        model: str | None = None,
        *,
        cls: int | str | None = None,
        progress: bool = True,
        device: str | None = None,
        **recipe: Any,
    ) -> DepthReference:
        """See :meth:`ReferenceService.train`."""
        return self._references.train(model, cls=cls, progress=progress, device=device, **recipe)

    def reference(self, model: str | None = None) -> DepthReference | None:
        """See :meth:`ReferenceService.latest`."""
        return self._references.latest(model)

    def applies(self, model: str | None = None) -> builtins.list[ApplyResult]:
        """See :meth:`ApplyService.applies`."""
        return self._applies.applies(model)

    def receipt(self, request_id: str) -> str:
        """See :meth:`ApplyService.receipt`."""
        return self._applies.receipt(request_id)

    def published(self, model: str | None = None) -> dict[str, Path] | None:
        """See :meth:`ApplyService.published`."""
        return self._applies.published(model)

    def inherited(self, model: str | None = None) -> builtins.list[InheritedDeletion]:
        """See :meth:`VersionService.inherited` (model versions)."""
        return self._applies.versions.inherited(model)

    def attest_trained_without(
        self, model: str | None, classes: Iterable[int | str], *, reason: str,
        policy: Policy | None = None, device: str | None = None,
    ) -> AttestedWithout:  # fmt: skip
        """See :meth:`ApplyService.attest_without` (model versions)."""
        return self._applies.attest_without(
            model, classes, reason=reason, policy=policy, device=device
        )

    def rollback(self, apply_id: str) -> ApplyResult:
        """See :meth:`VersionService.rollback`."""
        return self._applies.versions.rollback(apply_id)

    # -- exports and verification ---------------------------------------------------------------

    def export_onnx(
        self,
        model: str | None,
        out: str | Path,
        *,
        quantize: str | None = None,
        progress: bool = False,
    ) -> ModelExport:
        """See :meth:`ExportService.export_onnx`."""
        return self._exports.export_onnx(model, out, quantize=quantize, progress=progress)

    def export_eval_data(self, model: str | None, out: str | Path) -> EvalDataExport:
        """See :meth:`ExportService.export_eval_data`."""
        return self._exports.export_eval_data(model, out)

    def log_entries(self, *, start: int = 0, limit: int = 50) -> builtins.list[LogEntry]:
        """See :meth:`ExportService.log_entries`."""
        return self._exports.log_entries(start=start, limit=limit)

    def export_bundle(
        self, path: str | Path, *, attachments: Sequence[str | Path] = (), figures: bool = True
    ) -> Path:
        """See :meth:`ExportService.export_bundle`."""
        return self._exports.export_bundle(path, attachments=tuple(attachments), figures=figures)

    def verify_log(self, *, workers: int | None = None) -> None:
        """See :meth:`ExportService.verify_log`."""
        self._exports.verify_log(workers=workers)
