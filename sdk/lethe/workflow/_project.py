"""The app- and admin-facing entry object: one Lethe project (database, keys, models)."""

from __future__ import annotations

import builtins
import functools
import hmac
import json
import numbers
import os
import re
import secrets
import shutil
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from lethe.errors import (
    IdempotencyConflictError,
    InsufficientSpaceError,
    InvalidTransitionError,
    ModelRegistrationError,
    ProjectError,
    ReceiptUnavailableError,
    RequestError,
    SampleLevelRequestError,
    UnattachedBankError,
    UnknownClassError,
    UnknownModelError,
    UnknownRequestError,
)
from lethe.workflow._settings import CONFIG_NAME, Settings
from lethe.workflow._space import is_disk_full, space_error
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import ApplyResult, DeletionRequest, ModelInfo
from lethe_audit.errors import LogStateError, StoreError
from lethe_audit.keys import KeyRing
from lethe_audit.log import AuditLog
from lethe_audit.statements import LifecycleEvent, hmac_commitment, rfc3339
from lethe_audit.store import (
    READ_ONLY,
    RETRY_ATTEMPTS,
    ApplyRow,
    ModelRow,
    RequestRow,
    SubjectKeyRow,
    check_schema,
    create_engine,
    is_transient,
    retry_transient,
    store_error,
    upgrade,
)

if TYPE_CHECKING:  # lethe.data loads torch: only the commands that need it import it
    from lethe.data import ImageArrays

__all__ = ["LEGAL_BASES", "Lethe"]

#: GDPR Art. 17(1) grounds; any code matching ``_LEGAL_BASIS`` is accepted (no free text: the
#: legal basis is written to the log, which must hold no personal data).
LEGAL_BASES = {
    "gdpr-17-1-a": "data no longer necessary for the purposes collected",
    "gdpr-17-1-b": "consent withdrawn",
    "gdpr-17-1-c": "objection to processing",
    "gdpr-17-1-d": "unlawfully processed",
    "gdpr-17-1-e": "erasure required by a legal obligation",
    "gdpr-17-1-f": "data of a child collected for information society services",
}
_LEGAL_BASIS = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_MAX_SUBJECT = 1024


def normalize_subject(subject: str) -> str:
    """The form of a subject identifier that is committed to (trimmed, Unicode NFC).

    Apps must pass identifiers consistently (e.g. lower-case e-mail addresses): the same
    person filed under two spellings gets two unrelated commitments.
    """
    if not isinstance(subject, str):
        raise RequestError("subject must be a string (the data subject's identifier)")
    s = unicodedata.normalize("NFC", subject.strip())
    if not s:
        raise RequestError("subject is empty: pass the data subject's identifier")
    if len(s) > _MAX_SUBJECT:
        raise RequestError(f"subject is longer than {_MAX_SUBJECT} characters")
    return s


P = ParamSpec("P")
T = TypeVar("T")


def _idempotent(fn: Callable[P, T]) -> Callable[P, T]:
    """Retry a read-only (or otherwise idempotent) method when the database fails transiently
    (a lost connection, a serialization failure); other database errors are StoreErrors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return retry_transient(lambda: fn(*args, **kwargs), what=f"{fn.__name__}()")

    return wrapper


@dataclass(frozen=True)
class _NewRequest:
    """A request about to be filed: everything its one transaction writes."""

    rid: str
    model: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    legal_basis: str
    idempotency_key: str | None
    key: bytes
    commitment: str
    received_at: datetime
    due_days: int


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
        self._engine: Engine = create_engine(settings.database_url)
        check_schema(self._engine)
        if not (settings.keys / "keyring.json").exists():
            raise ProjectError(
                f"no log keys in {settings.keys}: run `lethe init` (or `lethe keys generate`)"
            )
        self._ring = KeyRing.open(settings.keys)
        self._log = AuditLog(
            self._engine, signers=self._ring.signers(passphrase=settings.key_passphrase)
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
        ring = KeyRing.open(settings.keys)
        engine = create_engine(settings.database_url)
        try:
            log = AuditLog(engine, signers=ring.signers(passphrase=settings.key_passphrase))
            try:
                log.size()
            except LogStateError:
                log.initialize(origin=settings.origin)
        finally:
            engine.dispose()
        return cls(settings)

    def close(self) -> None:
        self._engine.dispose()

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
    def engine(self) -> Engine:
        return self._engine

    def verifiers(self) -> list[Any]:
        """Verifiers for every key the log has used (for checking receipts and bundles)."""
        return list(self._ring.verifiers())

    # -- sessions -----------------------------------------------------------------------------

    @contextmanager
    def _write(self, bind: Connection | None = None) -> Any:
        """One write transaction (on ``bind``, e.g. the apply lock's connection, if given).
        Database failures come out as :class:`StoreError` (see :func:`is_transient`)."""
        try:
            with Session(bind if bind is not None else self._engine) as s, s.begin():
                yield s
        except SQLAlchemyError as e:
            raise store_error(e, "database write failed") from e

    @contextmanager
    def _read(self) -> Any:
        try:
            with (
                self._engine.connect().execution_options(**{READ_ONLY: True}) as conn,
                Session(bind=conn) as s,
            ):
                yield s
        except SQLAlchemyError as e:
            raise store_error(e, "database read failed") from e

    def _locked(self, s: Session, stmt: Any) -> Any:
        if self._engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return s.execute(stmt).scalar_one_or_none()

    # -- paths --------------------------------------------------------------------------------

    def _abs(self, rel: str) -> Path:
        return self._settings.project_dir / rel

    def _rel(self, p: Path) -> str:
        return str(p.resolve().relative_to(self._settings.project_dir))

    def model_dir(self, name: str) -> Path:
        return self._settings.models_dir / name

    # -- models -------------------------------------------------------------------------------

    def _model_row(self, s: Session, name: str | None) -> ModelRow:
        if name is None:
            rows = list(s.execute(select(ModelRow)).scalars())
            if len(rows) == 1:
                return rows[0]
            if not rows:
                raise UnknownModelError("no model is registered: run `lethe model register` first")
            raise UnknownModelError(
                f"several models are registered ({', '.join(r.name for r in rows)}): name one"
            )
        row = s.get(ModelRow, name)
        if row is None:
            known = [r for r in s.execute(select(ModelRow.name)).scalars()]
            raise UnknownModelError(
                f"no registered model named {name!r}"
                + (f"; registered: {', '.join(known)}" if known else "")
            )
        return row

    @_idempotent
    def models(self) -> list[ModelInfo]:
        with self._read() as s:
            return [
                ModelInfo.from_row(r)
                for r in s.execute(select(ModelRow).order_by(ModelRow.name)).scalars()
            ]

    @_idempotent
    def model(self, name: str | None = None) -> ModelInfo:
        with self._read() as s:
            return ModelInfo.from_row(self._model_row(s, name))

    def register_model(
        self,
        name: str,
        checkpoint: str | os.PathLike[str],
        *,
        eval_data: ImageArrays | str | os.PathLike[str],
        train_data: ImageArrays | str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        spec: Any = None,
        bank: str | os.PathLike[str] | None = None,
        export_onnx: bool = True,
    ) -> ModelInfo:
        """Register a deployed model.

        ``checkpoint`` is a safetensors file: a Lethe checkpoint (it carries its
        :class:`~lethe.models.ModelSpec`) or a plain state dict, then ``spec`` (a ModelSpec or
        its dict: timm architecture name, classes, input size, preprocessing) is required.
        ``eval_data`` (held-out images with labels, an :class:`ImageArrays`, a ``.npz`` path or a
        dataset name like ``digits``) is what every apply is verified on; ``train_data`` is
        needed to train filters and for the MIA and relearn metrics. Both are copied into the
        project so later applies measure on exactly the same data. With ``bank``, a filter bank
        is attached too (see :meth:`attach_bank`). ``export_onnx`` makes the one base ONNX
        export that every apply patches.
        """
        from lethe import model_digest
        from lethe.models import ModelSpec, create_model, load_checkpoint, save_checkpoint

        if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
            raise ModelRegistrationError(
                f"model name {name!r} must be lower-case letters, digits and . _ - (max 100)"
            )
        with self._read() as s:
            if s.get(ModelRow, name) is not None:
                raise ModelRegistrationError(f"a model named {name!r} is already registered")
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelRegistrationError(f"{path}: checkpoint not found")
        try:
            model, model_spec = load_checkpoint(path)
            if spec is not None:
                given = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
                if given != model_spec:
                    raise ModelRegistrationError(
                        f"{path} carries its own model spec, which differs from the one given"
                    )
        except ModelRegistrationError:
            raise
        except Exception as exc:  # a plain safetensors state dict: build from spec
            if spec is None:
                raise ModelRegistrationError(
                    f"{path} is not a Lethe checkpoint ({exc}); pass spec= (timm architecture, "
                    "number of classes, input size) to register a plain safetensors state dict"
                ) from exc
            model_spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
            from safetensors.torch import load_file

            model = create_model(model_spec)
            try:
                model.load_state_dict(load_file(str(path)), strict=True)
            except Exception as exc2:
                raise ModelRegistrationError(
                    f"{path}: weights do not fit {model_spec.arch}: {exc2}"
                ) from exc2
            model.eval()
        eval_arr = _as_arrays(eval_data, "eval_data", split="test")
        train_arr = (
            _as_arrays(train_data, "train_data", split="train") if train_data is not None else None
        )
        names = tuple(class_names) if class_names is not None else eval_arr.classes
        if len(names) != model_spec.num_classes:
            raise ModelRegistrationError(
                f"{len(names)} class names for a model with {model_spec.num_classes} classes"
            )
        if len(set(names)) != len(names):
            raise ModelRegistrationError("class names must be unique")
        for arr, what in ((eval_arr, "eval_data"), (train_arr, "train_data")):
            if arr is not None and arr.num_classes != model_spec.num_classes:
                raise ModelRegistrationError(
                    f"{what} has {arr.num_classes} classes, the model {model_spec.num_classes}"
                )
        mdir = self.model_dir(name)
        if mdir.exists() and any(mdir.iterdir()):
            raise ModelRegistrationError(f"{mdir} already exists and is not empty; remove it first")
        mdir.mkdir(parents=True, exist_ok=True)
        try:
            ckpt = save_checkpoint(model, model_spec, mdir / "base.safetensors")
            eval_path = _save_arrays(eval_arr, mdir / "eval.npz")
            train_path = (
                _save_arrays(train_arr, mdir / "train.npz") if train_arr is not None else None
            )
            onnx_path: Path | None = None
            onnx_sha: str | None = None
            if export_onnx:
                onnx_path, onnx_sha = self._export_base(model, model_spec, mdir)
            digest = model_digest(model)
            now = utcnow()
            with self._write() as s:
                s.add(
                    ModelRow(
                        name=name,
                        spec=json.dumps(model_spec.to_dict(), sort_keys=True),
                        class_names=json.dumps(list(names)),
                        checkpoint_path=self._rel(ckpt),
                        base_digest=digest,
                        eval_data_path=self._rel(eval_path),
                        eval_data_digest=eval_arr.digest,
                        train_data_path=self._rel(train_path) if train_path else None,
                        train_data_digest=train_arr.digest if train_arr is not None else None,
                        base_onnx_path=self._rel(onnx_path) if onnx_path else None,
                        base_onnx_sha256=onnx_sha,
                        registered_at=now,
                    )
                )
                s.flush()
                details: dict[str, Any] = {
                    "model": name,
                    "base_digest": f"sha256:{digest}",
                    "eval_data_digest": f"sha256:{eval_arr.digest}",
                    "num_classes": model_spec.num_classes,
                }
                self._log.append(
                    LifecycleEvent("model.registered", rfc3339(now), details=details), session=s
                )
        except BaseException:
            shutil.rmtree(mdir, ignore_errors=True)
            raise
        if bank is not None:
            self.attach_bank(name, bank)
        return self.model(name)

    def _export_base(self, model: Any, spec: Any, mdir: Path) -> tuple[Path, str]:
        import hashlib

        from lethe.export import export_base

        c = spec.in_chans
        base = export_base(model, input_shape=(c, *spec.input_size), path=mdir / "base.onnx")
        p = mdir / "base.onnx"
        del base
        return p, hashlib.sha256(p.read_bytes()).hexdigest()

    def load_model(self, name: str | None = None) -> tuple[Any, Any]:
        """The registered (unfiltered) model and its spec."""
        from lethe.models import load_checkpoint

        info = self.model(name)
        return load_checkpoint(self._abs(info.checkpoint_path))

    def load_bank(self, name: str | None = None) -> Any:
        from lethe.errors import ApplyError
        from lethe.filters import FilterBank

        with self._read() as s:
            row = self._model_row(s, name)
            bank_path, attached = row.bank_path, row.bank_digest
        if bank_path is None:
            raise ApplyError(
                f"model {row.name!r} has no filter bank: run `lethe filters train {row.name}` "
                "or attach one"
            )
        bank = FilterBank.load(self._abs(bank_path))
        if bank.digest != attached:
            # The file is not what the log attached (the database and its model.bank_attached
            # entry name `attached`): applying with it would attest to an unlogged bank.
            raise UnattachedBankError(
                f"{self._abs(bank_path)} holds filter bank sha256:{bank.digest}, but the log "
                f"attached sha256:{attached} to model {row.name!r}: the file changed after it "
                "was attached (a crash while attaching with an older Lethe, or an edit). "
                f"Nothing uses it: attach a bank again with `lethe filters train {row.name}` "
                "(or Lethe.attach_bank), which logs it"
            )
        return bank

    def data(self, name: str | None = None, *, split: str = "eval") -> ImageArrays:
        """The evaluation (``eval``) or training (``train``) data stored with a model."""
        with self._read() as s:
            row = self._model_row(s, name)
            rel = row.eval_data_path if split == "eval" else row.train_data_path
        if rel is None:
            raise ModelRegistrationError(f"model {name!r} was registered without {split} data")
        from lethe.data import load_npz

        return load_npz(self._abs(rel), name=f"{row.name}-{split}")

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
        mdir = self.model_dir(name)
        dest = mdir / f"bank-{bank.digest[:16]}.safetensors"
        try:
            bank.save(dest)
        except OSError as e:
            if is_disk_full(e):
                raise space_error(dest, len(bank.to_bytes()), what="the filter bank") from e
            raise
        with self._write() as s:
            row = self._model_row(s, name)
            old = row.bank_path
            row.bank_path = self._rel(dest)
            row.bank_digest = bank.digest
            s.flush()
            self._log.append(
                LifecycleEvent(
                    "model.bank_attached",
                    rfc3339(utcnow()),
                    details={"model": name, "filter_bank_digest": f"sha256:{bank.digest}"},
                ),
                session=s,
            )
        _remove_unattached_banks(mdir, keep=dest, old=self._abs(old) if old else None)
        return self.model(name)

    def train_filters(
        self,
        name: str | None = None,
        *,
        progress: bool = True,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        device: str | None = None,
        **config: Any,
    ) -> Any:
        """Train the model's filter bank (all classes, one round) on its stored training data
        and attach it. Resumes from the project's training checkpoint after an interruption.
        Runs on ``device`` (default: CUDA when available, else the CPU)."""
        import torch

        from lethe.data import to_dataset
        from lethe.filters import FilterBank, train

        info = self.model(name)
        if info.train_data_digest is None:
            raise ModelRegistrationError(
                f"model {info.name!r} has no training data; register it with train_data"
            )
        model, spec = self.load_model(info.name)
        ds = to_dataset(self.data(info.name, split="train"), spec.preprocess)
        bank = FilterBank.init(model, spec.num_classes, class_names=info.class_names)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        ckpt = self.model_dir(info.name) / "filter-train.ckpt"
        path = self.model_dir(info.name) / "bank-trained.safetensors"
        try:
            trained = train(
                model, bank, ds, progress=progress, checkpoint=ckpt, on_epoch=on_epoch, **config
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

    # -- requests -----------------------------------------------------------------------------

    def _resolve_classes(self, row: ModelRow, classes: Iterable[int | str]) -> tuple[int, ...]:
        names: list[str] = json.loads(row.class_names)
        if isinstance(classes, (str, int)):
            classes = [classes]
        out: set[int] = set()
        for c in classes:
            if isinstance(c, bool):
                raise UnknownClassError(f"{c!r} is not a class")
            if isinstance(c, numbers.Integral):  # int or a numpy integer
                if not 0 <= int(c) < len(names):
                    raise UnknownClassError(
                        f"model {row.name!r} has classes 0..{len(names) - 1}, not {int(c)}"
                    )
                out.add(int(c))
            elif isinstance(c, str):
                if c in names:
                    out.add(names.index(c))
                elif c.isdigit() and int(c) < len(names):
                    out.add(int(c))
                else:
                    raise UnknownClassError(
                        f"model {row.name!r} has no class {c!r}; its classes are listed by "
                        f"`lethe model show {row.name}`"
                    )
            else:
                raise UnknownClassError(f"classes must be names or ids, got {c!r}")
        if not out:
            raise RequestError("a request must name at least one class")
        if len(out) == len(names):
            raise RequestError("a request cannot forget every class of the model")
        return tuple(sorted(out))

    def file(
        self,
        *,
        subject: str,
        classes: Iterable[int | str],
        legal_basis: str,
        model: str | None = None,
        idempotency_key: str | None = None,
        samples: Sequence[Any] | None = None,
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
        """
        subj = _check_filing(subject, legal_basis, idempotency_key, samples)
        wanted = [classes] if isinstance(classes, str | int) else list(classes)  # retried below
        model_name, ids, names = retry_transient(
            lambda: self._filing_target(model, wanted), what="reading the model"
        )
        if idempotency_key is not None:
            existing = self._by_idempotency_key(idempotency_key)
            if existing is not None:
                return self._check_same(existing, model_name, ids, legal_basis, subj)
        key = secrets.token_bytes(32)
        new = _NewRequest(
            rid="req-" + secrets.token_hex(12),
            model=model_name,
            classes=ids,
            class_names=names,
            legal_basis=legal_basis,
            idempotency_key=idempotency_key,
            key=key,
            commitment=hmac_commitment(key, subj),
            received_at=utcnow(),
            due_days=self._settings.due_days,
        )
        for attempt in range(RETRY_ATTEMPTS):
            try:
                return self._insert_request(new)
            except StoreError as e:
                if isinstance(e.__cause__, IntegrityError) and idempotency_key is not None:
                    existing = self._by_idempotency_key(idempotency_key)
                    if existing is None:
                        raise
                    return self._check_same(existing, model_name, ids, legal_basis, subj)
                if not is_transient(e):
                    raise
                # The connection may have died after the commit went through: the same id
                # then exists and is what was filed (no duplicate, no second row).
                try:
                    done = self._filed(new.rid)
                except StoreError as e2:
                    raise StoreError(
                        f"{e}; whether request {new.rid} was filed is unknown ({e2}): file it "
                        "again with an idempotency key, or check `lethe request list`"
                    ) from e
                if done is not None:
                    return replace(done, subject_key=key.hex())
                if attempt == RETRY_ATTEMPTS - 1:
                    raise StoreError(f"{e}; nothing was filed") from e
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _filing_target(
        self, model: str | None, classes: Iterable[int | str]
    ) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
        with self._read() as s:
            mrow = self._model_row(s, model)
            names = tuple(json.loads(mrow.class_names))
            return mrow.name, self._resolve_classes(mrow, classes), names

    def _insert_request(self, new: _NewRequest) -> DeletionRequest:
        """One transaction: the request, its subject key and its ``request.received`` entry.
        What was committed is returned from memory: no read-back that could fail after the
        commit and make a caller retry (and file a duplicate)."""
        due = new.received_at + timedelta(days=new.due_days)
        with self._write() as s:
            row = RequestRow(
                id=new.rid,
                model_name=new.model,
                subject_commitment=new.commitment,
                classes=json.dumps(list(new.classes)),
                legal_basis=new.legal_basis,
                status="received",
                idempotency_key=new.idempotency_key,
                received_at=new.received_at,
                due_at=due,
            )
            s.add(row)
            s.add(SubjectKeyRow(request_id=new.rid, key=new.key))
            s.flush()  # the unique idempotency key is checked here, before logging
            event = LifecycleEvent(
                "request.received",
                rfc3339(new.received_at),
                request_id=new.rid,
                details={
                    "model": new.model,
                    "classes": list(new.classes),
                    "legal_basis": new.legal_basis,
                    "subject_commitment": new.commitment,
                    "due_at": rfc3339(due),
                },
            )
            row.received_index = self._log.append(event, session=s).index
            s.flush()
            filed = DeletionRequest.from_row(row, new.class_names, new.key)
        return filed

    def _filed(self, request_id: str) -> DeletionRequest | None:
        def run() -> DeletionRequest | None:
            with self._read() as s:
                row = s.get(RequestRow, request_id)
                return None if row is None else self._request(s, row)

        return retry_transient(run, what="checking whether the request was filed")

    def _by_idempotency_key(self, key: str) -> DeletionRequest | None:
        def run() -> DeletionRequest | None:
            with self._read() as s:
                row = s.execute(
                    select(RequestRow).where(RequestRow.idempotency_key == key)
                ).scalar_one_or_none()
                return None if row is None else self._request(s, row, with_key=True)

        return retry_transient(run, what="looking up the idempotency key")

    @staticmethod
    def _check_same(
        req: DeletionRequest,
        model: str,
        classes: tuple[int, ...],
        legal_basis: str,
        subject: str,
    ) -> DeletionRequest:
        """The request filed earlier under the same idempotency key, if this call is a replay of
        that filing: same contents and the same subject (checked against the commitment under
        the request's own key). Anything else is a conflict, and nothing of the other request
        (above all its subject key) is returned."""
        same_subject = req.subject_key is not None and hmac.compare_digest(
            hmac_commitment(bytes.fromhex(req.subject_key), subject), req.subject_commitment
        )
        if (req.model, req.classes, req.legal_basis) != (model, classes, legal_basis) or not (
            same_subject
        ):
            shredded = " (its subject key was shredded, so the subject cannot be checked)"
            raise IdempotencyConflictError(
                f"idempotency key {req.idempotency_key!r} was already used for another request "
                "(other subject, model, classes or legal basis"
                + (shredded if req.subject_key is None else "")
                + "); use a new key for a new request"
            )
        return req

    def _request(self, s: Session, row: RequestRow, *, with_key: bool = False) -> DeletionRequest:
        """The request as callers see it. Its subject key is loaded only for the idempotency
        check: only :meth:`file` hands a key out, and only to whoever filed the request."""
        names = tuple(json.loads(self._model_row(s, row.model_name).class_names))
        key = s.get(SubjectKeyRow, row.id) if with_key else None
        return DeletionRequest.from_row(row, names, key.key if key is not None else None)

    def _request_row(self, s: Session, request_id: str, *, lock: bool = False) -> RequestRow:
        stmt = select(RequestRow).where(RequestRow.id == request_id)
        row = self._locked(s, stmt) if lock else s.execute(stmt).scalar_one_or_none()
        if row is None:
            raise UnknownRequestError(f"no deletion request with id {request_id!r}")
        return row

    @_idempotent
    def get(self, request_id: str) -> DeletionRequest:
        with self._read() as s:
            return self._request(s, self._request_row(s, request_id))

    @_idempotent
    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        overdue: bool | None = None,
        model: str | None = None,
    ) -> builtins.list[DeletionRequest]:
        """Requests, oldest first; filter by status (one or several), overdue, model."""
        from lethe_audit.store import REQUEST_STATUSES

        statuses = [status] if isinstance(status, str) else list(status or [])
        bad = [x for x in statuses if x not in REQUEST_STATUSES]
        if bad:
            raise RequestError(f"unknown status {bad}; one of {', '.join(REQUEST_STATUSES)}")
        with self._read() as s:
            stmt = select(RequestRow).order_by(RequestRow.received_at, RequestRow.id)
            if statuses:
                stmt = stmt.where(RequestRow.status.in_(statuses))
            if model is not None:
                stmt = stmt.where(RequestRow.model_name == self._model_row(s, model).name)
            out = [self._request(s, r) for r in s.execute(stmt).scalars()]
        if overdue is not None:
            out = [r for r in out if r.overdue == overdue]
        return out

    def _transition(
        self,
        request_id: str,
        *,
        allowed: tuple[str, ...],
        to: str,
        event: str,
        actor: str,
        reason: str | None,
    ) -> DeletionRequest:
        if not isinstance(actor, str) or not actor.strip():
            raise RequestError("actor is required: who decides (kept in the database, not the log)")
        for attempt in range(RETRY_ATTEMPTS):
            try:
                with self._write() as s:
                    row = self._request_row(s, request_id, lock=True)
                    if attempt and (row.status, row.decided_by) == (to, actor.strip()):
                        # The earlier try committed before its connection was lost.
                        return self._request(s, row)
                    if row.status not in allowed:
                        raise InvalidTransitionError(
                            f"request {request_id} is {row.status}; it can be {to} only when "
                            f"{' or '.join(allowed)}"
                        )
                    now = utcnow()
                    row.status = to
                    row.decided_at = now
                    row.decided_by = actor.strip()
                    row.decision_reason = reason
                    if to == "approved":
                        row.failure_reason = None
                    s.flush()
                    self._log.append(
                        LifecycleEvent(event, rfc3339(now), request_id=row.id), session=s
                    )
                    s.flush()
                    done = self._request(s, row)
                return done  # built before the commit: no read-back that could fail after it
            except StoreError as e:
                if not is_transient(e) or attempt == RETRY_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def approve(self, request_id: str, *, actor: str, reason: str | None = None) -> DeletionRequest:
        """Approve a received (or failed, to retry it) request; it is applied by :meth:`apply`."""
        return self._transition(
            request_id,
            allowed=("received", "failed"),
            to="approved",
            event="request.approved",
            actor=actor,
            reason=reason,
        )

    def reject(self, request_id: str, *, actor: str, reason: str) -> DeletionRequest:
        """Reject a request that is not applied yet (a reason is required)."""
        if not reason or not reason.strip():
            raise RequestError("a rejection needs a reason")
        return self._transition(
            request_id,
            allowed=("received", "approved", "failed"),
            to="rejected",
            event="request.rejected",
            actor=actor,
            reason=reason,
        )

    @_idempotent  # a retry finds the key gone and returns the shredded request
    def shred(self, request_id: str, *, actor: str) -> DeletionRequest:
        """Destroy the key of the request's subject commitment (crypto-shredding).

        The commitment stays in the database and the log but can no longer be linked to anyone.
        The request itself keeps its state (an approved deletion is still applied). Logged.
        """
        if not isinstance(actor, str) or not actor.strip():
            raise RequestError("actor is required")
        with self._write() as s:
            row = self._request_row(s, request_id, lock=True)
            if row.shredded_at is not None:
                return self._request(s, row)
            key = s.get(SubjectKeyRow, row.id)
            if key is not None:
                s.delete(key)
            now = utcnow()
            row.shredded_at = now
            s.flush()
            self._log.append(
                LifecycleEvent("request.shredded", rfc3339(now), request_id=row.id), session=s
            )
        return self.get(request_id)

    # -- apply, receipts, exports ---------------------------------------------------------------

    def apply(
        self,
        model: str | None = None,
        *,
        phase: str = "both",
        relearn: bool = True,
        progress: bool = True,
        policy: Any = None,
        erase_config: Any = None,
        _fault: Callable[[str], None] | None = None,
    ) -> ApplyResult:
        """Apply every approved request of ``model`` (with all earlier applied ones).

        Phase 1 (*mask*): compose, fold, verify, log, export, publish, in seconds. Then, with
        ``phase="both"`` (the default), phase 2 (*erase*, see :meth:`erase`) on what phase 1
        published; its result is ``result.erase``. ``phase="mask"`` runs the fast path only:
        the deletion is then "masked, not yet erased" until :meth:`erase` runs. ``both`` needs
        the model's depth reference (:meth:`train_reference`). See
        :func:`lethe.workflow._phases.run_phases`."""
        from lethe.workflow._phases import run_phases

        return run_phases(
            self,
            model,
            phase=phase,
            relearn=relearn,
            progress=progress,
            policy=policy,
            erase_config=erase_config,
            fault=_fault,
        )

    def erase(
        self,
        model: str | None = None,
        *,
        progress: bool = True,
        policy: Any = None,
        config: Any = None,
        _fault: Callable[[str], None] | None = None,
    ) -> ApplyResult:
        """Phase 2 of the published deletion: re-train the masked model's weights so they no
        longer hold the forgotten classes (``lethe.filters.erase`` with ``config``, an
        ``EraseConfig`` or a dict over the ``[erase]`` settings), measure depth against the
        model's reference, and publish it as a new apply of the same requests (``phase:
        erase``). Raises :class:`~lethe.errors.AlreadyErasedError` when the published model is
        already erased, :class:`~lethe.errors.MissingReferenceError` without a reference. See
        :mod:`lethe.workflow._erase`."""
        from lethe.workflow._erase import run_erase

        return run_erase(self, model, progress=progress, policy=policy, config=config, fault=_fault)

    def train_reference(
        self,
        model: str | None = None,
        *,
        cls: int | str | None = None,
        progress: bool = True,
        device: str | None = None,
        **recipe: Any,
    ) -> Any:
        """Retrain ``model`` from scratch once without one class (``cls``; default: the class
        with most training samples) with ``lethe.models.fit`` (``recipe`` over the
        ``[reference]`` settings: epochs, lr, batch_size, ..., seeds >= 3), measure its relearn
        time and probe AUC on that class, store and log it: the depth scale every erase is
        measured on. Returns a :class:`~lethe.workflow.DepthReference`."""
        from lethe.workflow._reference import train_reference

        return train_reference(self, model, cls=cls, progress=progress, device=device, **recipe)

    def reference(self, model: str | None = None) -> Any:
        """The model's latest depth reference (a ``DepthReference``), or None."""
        from lethe.workflow._reference import latest_reference

        return latest_reference(self, model)

    @_idempotent
    def applies(self, model: str | None = None) -> builtins.list[ApplyResult]:
        from lethe.workflow._apply import apply_result

        with self._read() as s:
            stmt = select(ApplyRow).order_by(ApplyRow.started_at)
            if model is not None:
                stmt = stmt.where(ApplyRow.model_name == self._model_row(s, model).name)
            rows = list(s.execute(stmt).scalars())
        return [apply_result(self, r) for r in rows]

    @_idempotent
    def receipt(self, request_id: str) -> str:
        """The request's receipt: a C2SP tlog-proof carrying the signed attestation of the latest
        apply that covers it, verifiable offline with the log's public key."""
        with self._read() as s:
            row = self._request_row(s, request_id)
            if row.status not in ("applied", "superseded") or row.apply_id is None:
                raise ReceiptUnavailableError(
                    f"request {request_id} is {row.status}: a receipt exists once it is applied"
                )
            apply_row = s.get(ApplyRow, row.apply_id)
            assert apply_row is not None
            index = apply_row.log_index
        return self._log.receipt(index)

    @_idempotent
    def published(self, model: str | None = None) -> dict[str, Path] | None:
        """Paths of the currently published folded checkpoint and ONNX model (None before the
        first successful apply)."""
        from lethe.workflow._apply import published_paths

        return published_paths(self, self.model(model).name)

    def export_bundle(
        self, path: str | Path, *, attachments: Sequence[str | Path] = (), figures: bool = True
    ) -> Path:
        """Write the auditor bundle (entries, checkpoints, keys) with the filter figures of every
        applied deletion (their digests are in the log) and any extra ``attachments``."""
        from lethe.workflow._apply import figure_files

        extra = figure_files(self) if figures else []
        return self._log.export_bundle(Path(path), attachments=[*extra, *attachments])

    def verify_log(self, *, workers: int | None = None) -> None:
        """Export the log to a temporary bundle and verify it end to end (returns or raises)."""
        import tempfile

        from lethe_audit.verify import verify_bundle

        with tempfile.TemporaryDirectory() as tmp:
            bundle = self._log.export_bundle(Path(tmp) / "bundle")
            verify_bundle(bundle, self.verifiers(), origin=self._log.origin(), workers=workers)


def _check_filing(
    subject: str, legal_basis: str, idempotency_key: str | None, samples: Sequence[Any] | None
) -> str:
    """Validate what :meth:`Lethe.file` is given; the normalised subject."""
    if samples:
        raise SampleLevelRequestError(
            "Lethe unlearns whole classes (an identity, a contributor's category, a product "
            "line): a request for individual samples cannot be served by class filters. "
            "Name the classes to forget, or delete those samples from the training data and "
            "retrain the model."
        )
    subj = normalize_subject(subject)
    if not isinstance(legal_basis, str) or not _LEGAL_BASIS.fullmatch(legal_basis):
        raise RequestError(
            f"legal basis {legal_basis!r} must be a short code (e.g. "
            f"{', '.join(sorted(LEGAL_BASES)[:2])}, ...): lower-case letters, digits and "
            ": . _ -, no free text (it is written to the log)"
        )
    if idempotency_key is not None and (not idempotency_key or len(idempotency_key) > 255):
        raise RequestError("idempotency_key must be 1..255 characters")
    return subj


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
