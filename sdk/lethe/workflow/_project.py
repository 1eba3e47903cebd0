"""The app- and admin-facing entry object: one Lethe project (database, keys, models).

:class:`Lethe` is a thin facade: it opens the :class:`~lethe.workflow._store.ProjectStore`
and the signed :class:`~lethe_audit.log.AuditLog`, builds the services on them (models,
requests, references, applies, exports) and forwards each public method to one of them.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lethe.errors import ProjectError
from lethe.workflow._applies import ApplyService
from lethe.workflow._exporting import ExportService
from lethe.workflow._models import ModelService
from lethe.workflow._principal import Principal
from lethe.workflow._reference import ReferenceService
from lethe.workflow._requests import LEGAL_BASES, RequestService, normalize_subject
from lethe.workflow._settings import CONFIG_NAME, Settings
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
from lethe_audit.errors import LogStateError
from lethe_audit.keys import KeyRing
from lethe_audit.log import AuditLog
from lethe_audit.store import create_engine, upgrade

if TYPE_CHECKING:  # torch-loading modules: only the commands that need them import them
    from sqlalchemy.engine import Engine
    from torch import nn

    from lethe.data import ImageArrays
    from lethe.filters import EraseConfig, FilterBank, TrainConfig
    from lethe.models import ModelSpec
    from lethe_audit.metrics import Policy
    from lethe_audit.note import Verifier

__all__ = ["LEGAL_BASES", "Lethe", "normalize_subject"]


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
        """Create (or complete) a project: folders, ``lethe.toml``, the database schema, the
        log's signing key and the empty log. Safe to run again on an existing project."""
        settings = Settings.load(
            project_dir,
            env=env,
            database_url=database_url,
            key_dir=key_dir,
            origin=origin,
            policy=policy,
            key_passphrase=key_passphrase,
        )
        settings.project_dir.mkdir(parents=True, exist_ok=True)
        cfg = settings.project_dir / CONFIG_NAME
        if not cfg.exists():
            cfg.write_text(settings.to_toml(), encoding="utf-8")
        upgrade(settings.database_url)
        if not (settings.keys / "keyring.json").exists():
            KeyRing.create(settings.keys, name=settings.origin, passphrase=settings.key_passphrase)
        _initialize_log(settings, KeyRing.open(settings.keys))
        from lethe_audit.keys import ensure_openssf_key

        ensure_openssf_key(settings.keys)  # OpenSSF signatures of exports (logged at the first)
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

    def verifiers(self) -> builtins.list[Verifier]:
        """Verifiers for every key the log has used (for checking receipts and bundles)."""
        return list(self._ring.verifiers())

    def model_dir(self, name: str) -> Path:
        return self._store.model_dir(name)

    # -- models -------------------------------------------------------------------------------

    def models(self) -> builtins.list[ModelInfo]:
        return self._models.models()

    def model(self, name: str | None = None) -> ModelInfo:
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
    ) -> ModelInfo:
        """Register a deployed model, after measuring it.

        ``checkpoint`` is a safetensors file: a Lethe checkpoint (it carries its
        :class:`~lethe.models.ModelSpec`) or a plain state dict, then ``spec`` (a ModelSpec or
        its dict: timm architecture name, classes, input size, preprocessing) is required.
        ``eval_data`` (held-out images with labels, an :class:`ImageArrays`, a ``.npz`` path or a
        dataset name like ``digits``) is what every apply is verified on; ``train_data`` is
        needed to train filters and for the MIA and relearn metrics. Both are copied into the
        project so later applies measure on exactly the same data. With ``bank``, a filter bank
        is attached too (see :meth:`attach_bank`). ``export_onnx`` makes the one base ONNX
        export that every apply patches.

        The checkpoint may also be a ``torch.save`` state dict (wrapped in ``model`` /
        ``state_dict`` / ``model_state_dict``, ``module.`` prefixes; never unpickled code).
        Preprocessing is part of the model: for a plain state dict give it in ``spec`` or
        ``preprocessing`` (``mean``, ``std``, ``interpolation``, ``crop_pct``, ``input_range``),
        or ``preprocessing="timm"`` for timm's pretrained config; else
        :class:`~lethe.models.PreprocessingError`. Registration then measures the base model on
        ``eval_data`` (on ``device``) and refuses near-chance accuracy, or one more than 0.05
        below ``expect_accuracy``, unless ``force`` (:class:`BaseAccuracyError`); the accuracy is
        stored (``ModelInfo.base_accuracy``) and logged. ``caller="cli"`` words errors with CLI
        flags; ``log`` receives progress lines. See docs/byo-model.md.
        """
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
        )

    def load_model(self, name: str | None = None) -> tuple[nn.Module, ModelSpec]:
        """The registered (unfiltered) model and its spec."""
        return self._models.load_model(name)

    def load_bank(self, name: str | None = None) -> FilterBank:
        """The attached filter bank (:class:`~lethe.errors.UnattachedBankError` if its file is
        not the bank the log attached)."""
        return self._models.load_bank(name)

    def data(self, name: str | None = None, *, split: str = "eval") -> ImageArrays:
        """The evaluation (``eval``) or training (``train``) data stored with a model."""
        return self._models.data(name, split=split)

    def attach_bank(self, name: str, bank_path: str | os.PathLike[str]) -> ModelInfo:
        """Attach a filter bank; refused unless it was made for this exact model."""
        return self._models.attach_bank(name, bank_path)

    def train_filters(
        self,
        name: str | None = None,
        *,
        progress: bool = True,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        device: str | None = None,
        config: TrainConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> FilterBank:
        """Train the model's filter bank (all classes, one round) on its stored training data
        and attach it. ``config`` is a :class:`~lethe.filters.TrainConfig` (or its fields as a
        mapping; ``**options`` are the same fields, merged over it). Resumes from the project's
        training checkpoint after an interruption. Runs on ``device`` (default: CUDA when
        available, else the CPU)."""
        merged = _merged(config, options)
        return self._models.train_filters(
            name, progress=progress, on_epoch=on_epoch, device=device, config=merged
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
        """File a deletion request for a data subject.

        ``classes`` are class names or ids of ``model``; ``legal_basis`` a code such as
        ``gdpr-17-1-b`` (see :data:`LEGAL_BASES`). The subject identifier is never stored: only
        an HMAC-SHA256 commitment under a fresh per-request key (returned as
        ``request.subject_key`` so the subject can later check their receipt). The same
        ``idempotency_key`` with the same subject and contents returns the same request, also
        from concurrent processes; with another subject or other contents it raises
        :class:`IdempotencyConflictError` (and reveals nothing of the other request).

        A lost database connection is retried (the request keeps its id across tries, so a
        commit whose acknowledgement was lost is found, not repeated). The call returns only
        what was committed, built without a read-back; a :class:`StoreError` means nothing
        was filed, unless its message says that is unknown.

        ``principal`` (``lethe serve`` passes the authenticated token's) is recorded as the
        filer (``filed_by``) and in the log event; an idempotency key only ever names the
        request of the principal that filed it.
        """
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
        return self._requests.get(request_id)

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        overdue: bool | None = None,
        model: str | None = None,
    ) -> builtins.list[DeletionRequest]:
        """Requests, oldest first; filter by status (one or several
        :class:`~lethe_audit.statements.RequestStatus` values), overdue, model."""
        return self._requests.list(status=status, overdue=overdue, model=model)

    def approve(
        self,
        request_id: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """Approve a received (or failed, to retry it) request; it is applied by :meth:`apply`.

        Who decides is ``principal`` (an authenticated token: its name and role are recorded
        and logged) or else ``actor`` (free text, kept in the database only). The principal
        that filed the request cannot approve it (:class:`SeparationOfDutiesError`)."""
        return self._requests.approve(request_id, actor=actor, reason=reason, principal=principal)

    def reject(
        self,
        request_id: str,
        *,
        actor: str | None = None,
        reason: str,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """Reject a request that is not applied yet (a reason is required)."""
        return self._requests.reject(request_id, actor=actor, reason=reason, principal=principal)

    def shred(
        self, request_id: str, *, actor: str | None = None, principal: Principal | None = None
    ) -> DeletionRequest:
        """Destroy the key of the request's subject commitment (crypto-shredding).

        The commitment stays in the database and the log but can no longer be linked to anyone.
        The request itself keeps its state (an approved deletion is still applied). Logged.
        """
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
        _fault: Callable[[str], None] | None = None,
    ) -> ApplyResult:
        """Apply every approved request of ``model`` (with all earlier applied ones).

        Phase 1 (*mask*): compose, fold, verify, log, export, publish, in seconds. Then, with
        ``phase="both"`` (the default), phase 2 (*erase*, see :meth:`erase`) on what phase 1
        published; its result is ``result.erase``. ``phase="mask"`` runs the fast path only:
        the deletion is then "masked, not yet erased" until :meth:`erase` runs. ``both`` needs
        the model's depth reference (:meth:`train_reference`). A failed policy is a result with
        ``passed == False`` (logged, nothing published), not an exception. The metrics (and
        phase 2's training) run on ``device`` (``cpu``, ``cuda``, ``cuda:N``; default: CUDA
        when present); folding and the ONNX export stay on the CPU."""
        return self._applies.apply(
            model,
            phase=phase,
            relearn=relearn,
            progress=progress,
            policy=policy,
            erase_config=erase_config,
            device=device,
            fault=_fault,
        )

    def erase(
        self,
        model: str | None = None,
        *,
        progress: bool = True,
        policy: Policy | None = None,
        config: EraseConfig | Mapping[str, Any] | None = None,
        device: str | None = None,
        _fault: Callable[[str], None] | None = None,
    ) -> ApplyResult:
        """Phase 2 of the published deletion: re-train the masked model's weights so they no
        longer hold the forgotten classes (``lethe.filters.erase`` with ``config``, an
        ``EraseConfig`` or a dict over the ``[erase]`` settings), measure depth against the
        model's reference, and publish it as a new apply of the same requests (``phase:
        erase``). Raises :class:`~lethe.errors.AlreadyErasedError` when the published model is
        already erased, :class:`~lethe.errors.MissingReferenceError` without a reference."""
        return self._applies.erase(
            model, progress=progress, policy=policy, config=config, device=device, fault=_fault
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
        """Retrain ``model`` from scratch once without one class (``cls``; default: the class
        with most training samples) with ``lethe.models.fit`` (``recipe`` over the
        ``[reference]`` settings: epochs, lr, batch_size, ..., seeds >= 3), measure its relearn
        time and probe AUC on that class, store and log it: the depth scale every erase is
        measured on."""
        return self._references.train(model, cls=cls, progress=progress, device=device, **recipe)

    def reference(self, model: str | None = None) -> DepthReference | None:
        """The model's latest depth reference, or None."""
        return self._references.latest(model)

    def applies(self, model: str | None = None) -> builtins.list[ApplyResult]:
        return self._applies.applies(model)

    def receipt(self, request_id: str) -> str:
        """The request's receipt: a C2SP tlog-proof carrying the signed attestation of the latest
        apply that covers it, verifiable offline with the log's public key."""
        return self._applies.receipt(request_id)

    def published(self, model: str | None = None) -> dict[str, Path] | None:
        """Paths of the currently published folded checkpoint and ONNX model (None before the
        first successful apply)."""
        return self._applies.published(model)

    # -- exports and verification ---------------------------------------------------------------

    def export_onnx(
        self,
        model: str | None,
        out: str | Path,
        *,
        quantize: str | None = None,
        progress: bool = False,
    ) -> ModelExport:
        """Write the model's published ONNX file to ``out`` after verifying its signature.

        ``quantize="int8"``: a static QDQ int8 copy calibrated on real retain training images,
        measured like the fp32 model (forget/retain accuracy against the unfiltered model) and
        checked by the project's policy *before* it is signed and written
        (:class:`~lethe.errors.PolicyFailedError` otherwise). Logged (``model.exported``)."""
        return self._exports.export_onnx(model, out, quantize=quantize, progress=progress)

    def export_eval_data(self, model: str | None, out: str | Path) -> EvalDataExport:
        """Write the model's evaluation set as the auditor consumes it: ``x`` float32,
        preprocessed NCHW (exactly the model input), ``y`` int64 labels; no class names (they
        can be personal data). Its digest equals the ``dataset_digest`` of the logged metrics."""
        return self._exports.export_eval_data(model, out)

    def log_entries(self, *, start: int = 0, limit: int = 50) -> builtins.list[LogEntry]:
        """One line of facts per log entry, ``start`` to ``start + limit``."""
        return self._exports.log_entries(start=start, limit=limit)

    def export_bundle(
        self, path: str | Path, *, attachments: Sequence[str | Path] = (), figures: bool = True
    ) -> Path:
        """Write the auditor bundle (entries, checkpoints, keys) with the filter figures of every
        applied deletion (their digests are in the log) and any extra ``attachments``."""
        return self._exports.export_bundle(path, attachments=tuple(attachments), figures=figures)

    def verify_log(self, *, workers: int | None = None) -> None:
        """Export the log to a temporary bundle and verify it end to end (returns or raises)."""
        self._exports.verify_log(workers=workers)


def _initialize_log(settings: Settings, ring: KeyRing) -> None:
    """Write the log's first checkpoint unless it has one."""
    engine = create_engine(settings.database_url)
    try:
        log = AuditLog(engine, signers=ring.signers(passphrase=settings.key_passphrase))
        try:
            log.size()
        except LogStateError:
            log.initialize(origin=settings.origin)
    finally:
        engine.dispose()


def _merged(
    config: TrainConfig | Mapping[str, Any] | None, options: Mapping[str, Any]
) -> TrainConfig | Mapping[str, Any] | None:
    if not options:
        return config
    if config is None:
        return dict(options)
    import dataclasses

    if isinstance(config, Mapping):
        return {**config, **options}
    return {**dataclasses.asdict(config), **options}
