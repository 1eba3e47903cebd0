"""The model service: registered models, their stored data, filter banks and training."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lethe.errors import (
    ApplyError,
    InsufficientSpaceError,
    ModelRegistrationError,
    UnattachedBankError,
)
from lethe.workflow._space import is_disk_full, space_error
from lethe.workflow._store import ProjectStore, idempotent
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import ModelInfo
from lethe.workflow._versions import (
    check_class_prefix,
    check_supersedes,
    inherited_rows,
    superseded_event,
)
from lethe_audit.log import AuditLog
from lethe_audit.statements import EventType, LifecycleEvent, rfc3339
from lethe_audit.store import ModelRow

if TYPE_CHECKING:  # torch-loading modules: imported only by the calls that need them
    from torch import nn

    from lethe.data import ImageArrays
    from lethe.filters import FilterBank, TrainConfig
    from lethe.models import Caller, ModelSpec

__all__ = ["DataSource", "ModelService"]

_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")

#: What ``eval_data`` / ``train_data`` may be: arrays, a ``.npz`` path or a dataset name.
DataSource = "ImageArrays | str | os.PathLike[str]"


@dataclass(frozen=True)
class _Registration:
    """A model about to be registered: the weights and data, checked against each other."""

    name: str
    model: nn.Module
    spec: ModelSpec
    class_names: tuple[str, ...]
    eval_data: ImageArrays
    train_data: ImageArrays | None
    measured: Mapping[str, Any]  # base_accuracy, chance, preprocessing_source, forced
    supersedes: str | None = None  # the older version whose deletions it inherits


class ModelService:
    """Registered models: registration, their weights, stored data and filter bank."""

    def __init__(self, store: ProjectStore, log: AuditLog) -> None:
        self._store = store
        self._log = log

    # -- reading ----------------------------------------------------------------------------

    @idempotent
    def models(self) -> list[ModelInfo]:
        """Every registered model, by name."""
        with self._store.read() as s:
            rows = s.execute(select(ModelRow).order_by(ModelRow.name)).scalars()
            return [ModelInfo.from_row(r) for r in rows]

    @idempotent
    def model(self, name: str | None = None) -> ModelInfo:
        """One model (``None``: the only one; :class:`~lethe.errors.UnknownModelError`)."""
        with self._store.read() as s:
            return ModelInfo.from_row(self._store.model_row(s, name))

    def load_model(self, name: str | None = None) -> tuple[nn.Module, ModelSpec]:
        """The registered (unfiltered) model and its spec."""
        from lethe.models import load_checkpoint

        info = self.model(name)
        return load_checkpoint(self._store.abs(info.checkpoint_path))

    def load_bank(self, name: str | None = None) -> FilterBank:
        """The attached filter bank (:class:`~lethe.errors.UnattachedBankError` if its file is
        not the bank the log attached)."""
        from lethe.filters import FilterBank

        with self._store.read() as s:
            row = self._store.model_row(s, name)
            model_name, bank_path, attached = row.name, row.bank_path, row.bank_digest
        if bank_path is None:
            raise ApplyError(
                f"model {model_name!r} has no filter bank: run `lethe filters train "
                f"{model_name}` or attach one"
            )
        bank = FilterBank.load(self._store.abs(bank_path))
        if bank.digest != attached:
            # The file is not what the log attached (the database and its model.bank_attached
            # entry name `attached`): applying with it would attest to an unlogged bank.
            raise UnattachedBankError(
                f"{self._store.abs(bank_path)} holds filter bank sha256:{bank.digest}, but the "
                f"log attached sha256:{attached} to model {model_name!r}: the file changed "
                "after it was attached (a crash while attaching with an older Lethe, or an "
                f"edit). Nothing uses it: attach a bank again with `lethe filters train "
                f"{model_name}` (or Lethe.attach_bank), which logs it"
            )
        return bank

    def data(self, name: str | None = None, *, split: str = "eval") -> ImageArrays:
        """The evaluation (``eval``) or training (``train``) data stored with a model."""
        with self._store.read() as s:
            row = self._store.model_row(s, name)
            model_name = row.name
            rel = row.eval_data_path if split == "eval" else row.train_data_path
        if rel is None:
            raise ModelRegistrationError(f"model {name!r} was registered without {split} data")
        from lethe.data import load_npz

        return load_npz(self._store.abs(rel), name=f"{model_name}-{split}")

    # -- registering ------------------------------------------------------------------------

    def register(
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
        caller: Caller = "python",
        log: Callable[[str], None] | None = None,
        supersedes: str | None = None,
        ema: bool | None = None,
    ) -> ModelInfo:
        """Register a deployed model after measuring it (docs/byo-model.md, docs/api.md).

        ``checkpoint``: a Lethe checkpoint, or a plain safetensors / ``torch.save`` state dict
        (never unpickled code) with ``spec`` (a ModelSpec or its dict) and its preprocessing in
        ``spec`` or ``preprocessing`` (``mean``, ``std``, ...; ``"timm"``), else
        :class:`~lethe.models.PreprocessingError`. ``eval_data`` (every apply is verified on
        it) and ``train_data`` (filters, MIA, relearn) are copied into the project; ``bank`` is
        attached (:meth:`attach_bank`); ``export_onnx`` makes the base ONNX export every apply
        patches. The base model is measured on ``eval_data`` (on ``device``): near-chance
        accuracy, or more than 0.05 below ``expect_accuracy``, is refused unless ``force``
        (:class:`BaseAccuracyError`); ``ModelInfo.base_accuracy`` and the log keep it.
        ``caller="cli"`` words errors with CLI flags; ``log`` receives progress lines.
        ``supersedes`` names the model this one is a newer version of: it inherits its standing
        deletions (docs/workflow.md) and class ids; the log records it (``model.superseded``).
        ``ema``: :func:`~lethe.workflow._preflight.preflight`."""
        from lethe.workflow._preflight import preflight

        self._check_new_name(name)
        if supersedes is not None:  # cheap checks first; again in the registering transaction
            with self._store.read() as s:
                check_supersedes(self._store, s, name, supersedes)
        pf = preflight(
            checkpoint,
            eval_data=eval_data,
            train_data=train_data,
            class_names=class_names,
            spec=spec,
            preprocessing=preprocessing,
            expect_accuracy=expect_accuracy,
            force=force,
            device=device,
            caller=caller,
            log=log,
            ema=ema,
        )
        measured = {
            "base_accuracy": pf.base_accuracy,
            "chance": pf.chance,
            "preprocessing_source": pf.preprocessing_source,
            "forced": pf.forced,
        }
        reg = _Registration(
            name, pf.model, pf.spec, pf.class_names, pf.eval_data, pf.train_data, measured,
            supersedes,
        )  # fmt: skip
        if supersedes is not None:
            with self._store.read() as s:
                check_class_prefix(self._store.model_row(s, supersedes), pf.class_names)
        mdir = self._store.model_dir(name)
        if mdir.exists() and any(mdir.iterdir()):
            raise ModelRegistrationError(f"{mdir} already exists and is not empty; remove it first")
        mdir.mkdir(parents=True, exist_ok=True)
        try:
            self._write_registration(reg, mdir, export_onnx=export_onnx, log=log)
        except BaseException:
            shutil.rmtree(mdir, ignore_errors=True)
            raise
        if bank is not None:
            self.attach_bank(name, bank)
        return self.model(name)

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
            raise ModelRegistrationError(
                f"model name {name!r} must be lower-case letters, digits and . _ - (max 100)"
            )
        with self._store.read() as s:
            if s.get(ModelRow, name) is not None:
                raise ModelRegistrationError(f"a model named {name!r} is already registered")

    def _write_registration(
        self,
        reg: _Registration,
        mdir: Path,
        *,
        export_onnx: bool,
        log: Callable[[str], None] | None = None,
    ) -> None:
        """The model's files, then its row and ``model.registered`` entry in one transaction."""
        from lethe import model_digest
        from lethe.models import save_checkpoint

        rel = self._store.rel
        ckpt = save_checkpoint(reg.model, reg.spec, mdir / "base.safetensors")
        eval_path = _save_arrays(reg.eval_data, mdir / "eval.npz")
        train = reg.train_data
        train_path = _save_arrays(train, mdir / "train.npz") if train is not None else None
        if export_onnx and log is not None:
            log("exporting the base model to ONNX (once per model; this can take a minute)...")
        onnx_path, onnx_sha = (
            _export_base(reg.model, reg.spec, mdir) if export_onnx else (None, None)
        )
        digest = model_digest(reg.model)
        now = utcnow()
        with self._store.write() as s:
            old = (
                check_supersedes(self._store, s, reg.name, reg.supersedes, lock=True)
                if reg.supersedes
                else None
            )
            s.add(
                ModelRow(
                    name=reg.name,
                    supersedes=old.name if old is not None else None,
                    spec=json.dumps(
                        {**reg.spec.to_dict(), "registration": dict(reg.measured)}, sort_keys=True
                    ),
                    class_names=json.dumps(list(reg.class_names)),
                    checkpoint_path=rel(ckpt),
                    base_digest=digest,
                    eval_data_path=rel(eval_path),
                    eval_data_digest=reg.eval_data.digest,
                    train_data_path=rel(train_path) if train_path else None,
                    train_data_digest=train.digest if train is not None else None,
                    base_onnx_path=rel(onnx_path) if onnx_path else None,
                    base_onnx_sha256=onnx_sha,
                    registered_at=now,
                )
            )
            s.flush()
            details: dict[str, Any] = {
                "model": reg.name,
                "base_digest": f"sha256:{digest}",
                "eval_data_digest": f"sha256:{reg.eval_data.digest}",
                "num_classes": reg.spec.num_classes,
                "base_accuracy": reg.measured["base_accuracy"],
                "preprocessing": reg.spec.preprocess.to_dict(),
                "preprocessing_source": reg.measured["preprocessing_source"],
            }
            if reg.measured["forced"]:
                details["forced"] = True
            event = LifecycleEvent(EventType.MODEL_REGISTERED, rfc3339(now), details=details)
            self._log.append(event, session=s)
            if old is not None:  # the succession, with what the new model inherits
                new_row = self._store.model_row(s, reg.name)
                inherited = inherited_rows(self._store, s, reg.name)
                self._log.append(superseded_event(new_row, old, inherited, now), session=s)

    # -- filter banks -----------------------------------------------------------------------

    def attach_bank(self, name: str, bank_path: str | os.PathLike[str]) -> ModelInfo:
        """Attach a filter bank; refused unless it was made for this exact model."""
        from lethe.filters import FilterBank

        model, _ = self.load_model(name)
        bank = FilterBank.load(bank_path, model)  # checks names, shapes, classes, base digest
        info = self.model(name)
        if bank.class_names != info.class_names:
            raise ModelRegistrationError(
                "the bank's class names differ from the model's registered class names"
            )
        # A new, content-addressed file, switched to in the transaction that logs it: a crash
        # before the commit leaves the attached bank's own file untouched.
        mdir = self._store.model_dir(name)
        dest = mdir / f"bank-{bank.digest[:16]}.safetensors"
        try:
            bank.save(dest)
        except OSError as e:
            if is_disk_full(e):
                raise space_error(dest, len(bank.to_bytes()), what="the filter bank") from e
            raise
        with self._store.write() as s:
            row = self._store.model_row(s, name)
            old = row.bank_path
            row.bank_path = self._store.rel(dest)
            row.bank_digest = bank.digest
            s.flush()
            details = {"model": name, "filter_bank_digest": f"sha256:{bank.digest}"}
            event = LifecycleEvent(
                EventType.MODEL_BANK_ATTACHED, rfc3339(utcnow()), details=details
            )
            self._log.append(event, session=s)
        _remove_unattached_banks(mdir, keep=dest, old=self._store.abs(old) if old else None)
        return self.model(name)

    def train_filters(
        self,
        name: str | None = None,
        *,
        progress: bool = True,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        device: str | None = None,
        config: TrainConfig | Mapping[str, Any] | None = None,
        caller: Caller = "python",
    ) -> FilterBank:
        """Train the model's filter bank (all classes, one round) on its stored training data
        and attach it. ``config`` is a :class:`~lethe.filters.TrainConfig` (or its fields as a
        mapping). Resumes from the project's training checkpoint after an interruption. Runs on
        ``device`` (``cpu``, ``cuda``, ``cuda:N``; default: CUDA when available, else the CPU;
        a bad or missing device is a ``ConfigError``). ``caller="cli"`` words errors with flags."""
        from lethe.data import to_dataset
        from lethe.filters import FilterBank, train
        from lethe.models import resolve_device, term

        dev = resolve_device(device)
        info = self.model(name)
        if info.train_data_digest is None:
            raise ModelRegistrationError(
                f"model {info.name!r} has no training data; register it with "
                f"{term('train_data', caller)}"
            )
        model, spec = self.load_model(info.name)
        ds = to_dataset(self.data(info.name, split="train"), spec.preprocess)
        bank = FilterBank.init(model, spec.num_classes, class_names=info.class_names)
        model.to(dev)
        ckpt = self._store.model_dir(info.name) / "filter-train.ckpt"
        path = self._store.model_dir(info.name) / "bank-trained.safetensors"
        options = _train_options(config)
        try:
            trained = train(
                model, bank, ds, progress=progress, checkpoint=ckpt, on_epoch=on_epoch, **options
            )
            trained.save(path)
            self.attach_bank(info.name, path)
        except (OSError, InsufficientSpaceError) as e:
            if not (isinstance(e, InsufficientSpaceError) or is_disk_full(e)):
                raise
            # A full disk: remove what this training wrote (its resume checkpoint too, which
            # may be what filled the disk) and say how much room it needs.
            path.unlink(missing_ok=True)
            ckpt.unlink(missing_ok=True)
            needed = 4 * len(bank.to_bytes())  # checkpoint (weights + Adam moments) + bank
            raise space_error(ckpt.parent, needed, what="filter training") from e
        finally:
            path.unlink(missing_ok=True)
        ckpt.unlink(missing_ok=True)
        return trained


def _train_options(config: TrainConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """``lethe.filters.train`` keyword options from a :class:`TrainConfig` or a mapping."""
    import dataclasses

    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return dict(config)  # type: ignore[arg-type]


def _export_base(model: nn.Module, spec: ModelSpec, mdir: Path) -> tuple[Path, str]:
    """The one base ONNX export that every apply patches, and its SHA-256."""
    import hashlib

    from lethe.export import export_base

    p = mdir / "base.onnx"
    export_base(
        model,
        input_shape=(spec.in_chans, *spec.input_size),
        path=p,
        preprocessing=spec.preprocess.to_dict(),
    )
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def _remove_unattached_banks(mdir: Path, *, keep: Path, old: Path | None) -> None:
    """Remove the bank file this attach replaced (only that one: a file another attach is
    writing right now must not go; one left by an attach that crashed before its commit is
    harmless, as nothing names it, and is overwritten if that bank is attached again)."""
    if old is not None and old != keep and old.parent == mdir:
        old.unlink(missing_ok=True)


def _as_arrays(data: Any, what: str, *, split: str) -> ImageArrays:
    from lethe.data import ImageArrays, load_dataset

    if isinstance(data, ImageArrays):
        return data
    if isinstance(data, str | os.PathLike):
        return load_dataset(str(data), split=split)
    raise ModelRegistrationError(f"{what} must be ImageArrays, a .npz path or a dataset name")


def _save_arrays(data: ImageArrays, path: Path) -> Path:
    import io

    import numpy as np

    from lethe._io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, x=data.x, y=data.y, classes=np.asarray(data.classes, dtype=str))
    return atomic_write_bytes(path, buf.getvalue())
