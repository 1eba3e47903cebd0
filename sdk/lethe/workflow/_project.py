"""The app- and admin-facing entry object: one Lethe project (database, keys, models).

:class:`Lethe` is a thin facade: it opens the :class:`~lethe.workflow.ProjectStore` and the
signed :class:`~lethe_audit.log.AuditLog`, builds the services on them (models, requests,
references, applies, exports; also public as :attr:`Lethe.services`) and forwards each public
method to one of them. The behaviour and its documentation live in the services.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lethe.errors import ProjectError
from lethe.workflow._applies import ApplyService
from lethe.workflow._exporting import ExportService
from lethe.workflow._forward import Forward
from lethe.workflow._init import create_project
from lethe.workflow._keys import KeyService, NewKey
from lethe.workflow._models import ModelService
from lethe.workflow._principal import Principal
from lethe.workflow._reference import ReferenceService
from lethe.workflow._requests import RequestService
from lethe.workflow._settings import Settings
from lethe.workflow._store import ProjectStore
from lethe.workflow._types import ApplyResult
from lethe.workflow._versions import VersionService
from lethe_audit.keys import KeyRing
from lethe_audit.log import AuditLog

if TYPE_CHECKING:  # torch-loading modules: only the commands that need them import them
    from sqlalchemy.engine import Engine

    from lethe.filters import EraseConfig
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
    keys: KeyService


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
        ring = KeyRing.open(settings.keys)
        signers = ring.signers(passphrase=settings.key_passphrase)
        self._log = AuditLog(self._store.engine, signers=signers)
        self._keys = KeyService(settings, self._log, ring)
        self._models = ModelService(self._store, self._log)
        self._requests = RequestService(self._store, self._log)
        self._references = ReferenceService(self._store, self._log, self._models)
        self._applies = ApplyService(self._store, self._log, self._models, self._references)
        self._exports = ExportService(
            self._store, self._log, self._keys, self._models, self._applies
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

    @classmethod
    def generate_key(
        cls,
        project_dir: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        origin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> NewKey:
        """See :meth:`KeyService.generate` (with the settings :meth:`open` would load)."""
        return KeyService.generate(
            Settings.load(project_dir, config=config, env=env, origin=origin)
        )

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
        """The log's keyring as it is now (:meth:`rotate_key` replaces it)."""
        return self._keys.ring

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
            self._models,
            self._requests,
            self._references,
            self._applies,
            self._exports,
            self._keys,
        )

    def verifiers(self) -> builtins.list[Verifier]:
        """Verifiers for every key the log has used (for checking receipts and bundles)."""
        return list(self._keys.ring.verifiers())

    def model_dir(self, name: str) -> Path:
        return self._store.model_dir(name)

    # -- models -------------------------------------------------------------------------------

    models = Forward("_models", ModelService.models)
    model = Forward("_models", ModelService.model)
    register_model = Forward("_models", ModelService.register)
    load_model = Forward("_models", ModelService.load_model)
    load_bank = Forward("_models", ModelService.load_bank)
    data = Forward("_models", ModelService.data)
    attach_bank = Forward("_models", ModelService.attach_bank)
    train_filters = Forward("_models", ModelService.train_filters)

    # -- requests -----------------------------------------------------------------------------

    file = Forward("_requests", RequestService.file)
    get = Forward("_requests", RequestService.get)
    list = Forward("_requests", RequestService.list)
    approve = Forward("_requests", RequestService.approve)
    reject = Forward("_requests", RequestService.reject)
    shred = Forward("_requests", RequestService.shred)

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

    train_reference = Forward("_references", ReferenceService.train)
    reference = Forward("_references", ReferenceService.latest)
    applies = Forward("_applies", ApplyService.applies)
    receipt = Forward("_applies", ApplyService.receipt)
    published = Forward("_applies", ApplyService.published)

    # model versions (docs/workflow.md)
    inherited = Forward("_applies.versions", VersionService.inherited)
    attest_trained_without = Forward("_applies", ApplyService.attest_without)
    rollback = Forward("_applies.versions", VersionService.rollback)

    # -- exports and verification ---------------------------------------------------------------

    export_onnx = Forward("_exports", ExportService.export_onnx)
    export_eval_data = Forward("_exports", ExportService.export_eval_data)
    log_entries = Forward("_exports", ExportService.log_entries)
    export_bundle = Forward("_exports", ExportService.export_bundle)
    verify_log = Forward("_exports", ExportService.verify_log)

    # -- the log's keys -------------------------------------------------------------------------

    rotate_key = Forward("_keys", KeyService.rotate)
