"""The depth reference of a model: retrained from scratch once without one held-out class.

Production has no model retrained without every class a request may name, so the depth of an
erase (DESIGN §4) is measured on a *scale*: how many fine-tuning steps a model that never saw
a class needs to relearn it. One retrain per model, for one held-out class (by default the
class with most training samples, so its relearn time is not inflated by a small class), gives
that scale at the cost of one training run, once. Its provenance (class, recipe, weights
digest, wall time, relearn runs per seed, probe AUC) is stored here, logged, and copied into
every erase attestation as ``lethe_audit.metrics.ReferenceInfo``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lethe.classes import resolve_class_ids
from lethe.errors import MissingReferenceError, ReferenceTrainingError
from lethe.workflow._models import ModelService
from lethe.workflow._recipe import ReferenceConfig
from lethe.workflow._store import ProjectStore
from lethe.workflow._time import now as utcnow
from lethe.workflow._time import utc
from lethe.workflow._types import DepthReference
from lethe_audit.log import AuditLog
from lethe_audit.statements import EventType, LifecycleEvent, canonical_json, rfc3339
from lethe_audit.store import ReferenceRow

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from lethe.models import Caller, ModelSpec
    from lethe_audit.metrics import ReferenceInfo, RelearnMetric

__all__ = [
    "DEFAULT_RECIPE",
    "REFERENCE_KIND",
    "REFERENCE_SEEDS",
    "ReferenceConfig",
    "ReferenceService",
]

REFERENCE_KIND = "retrain-holdout"
REFERENCE_SEEDS = ReferenceConfig().seeds
#: ``lethe.models.fit`` arguments used when neither ``[reference]`` nor the caller sets them.
DEFAULT_RECIPE: Mapping[str, Any] = ReferenceConfig().fit_options()


def _recipe(
    table: Mapping[str, Any], config: ReferenceConfig | Mapping[str, Any] | None
) -> tuple[dict[str, Any], int]:
    """The fit options and relearn seeds: a whole :class:`ReferenceConfig`, or the defaults
    under the ``[reference]`` table under a mapping of overrides."""
    if isinstance(config, ReferenceConfig):
        layers: list[Mapping[str, Any]] = [dataclasses.asdict(config)]
    else:
        given = {k: v for k, v in dict(config or {}).items() if v is not None}
        layers = [table, given]
    known = ReferenceConfig.fields()
    unknown = sorted({k for layer in layers for k in layer} - set(known))
    if unknown:
        raise ReferenceTrainingError(
            f"unknown reference recipe keys {unknown}; known: {', '.join(known)}"
        )
    recipe = dataclasses.asdict(ReferenceConfig())
    for layer in layers:
        recipe.update(layer)
    seeds = recipe.pop("seeds")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 3:
        raise ReferenceTrainingError(
            f"the reference's relearn time needs >= 3 seeds, got seeds={seeds!r}"
        )
    return recipe, seeds


def _held_out(
    names: tuple[str, ...], y: np.ndarray[Any, Any], cls: int | str | None
) -> tuple[int, str]:
    import numpy as np

    counts = np.bincount(y.astype(np.int64), minlength=len(names))
    if cls is None:
        c = int(np.argmax(counts))  # first maximum: ties go to the lowest id
        return c, (
            f"class {c} has the most training samples ({int(counts[c])} of {int(counts.sum())}; "
            "ties go to the lowest id), so its relearn time is not shortened by a small class"
        )
    (c,) = resolve_class_ids([cls], names, hint="see `lethe model show`")
    if counts[c] == 0:
        raise ReferenceTrainingError(f"class {c} has no training samples to hold out")
    return c, f"class {c} chosen by the operator"


class ReferenceService:
    """Depth references: one retrain per model without one class, stored and logged."""

    def __init__(self, store: ProjectStore, log: AuditLog, models: ModelService) -> None:
        self._store = store
        self._log = log
        self._models = models

    def train(
        self,
        model: str | None = None,
        *,
        cls: int | str | None = None,
        progress: bool = True,
        device: str | None = None,
        config: ReferenceConfig | Mapping[str, Any] | None = None,
        caller: Caller = "python",
    ) -> DepthReference:
        """Retrain ``model`` from scratch once without one class (``cls``; default: the class
        with most training samples) with ``lethe.models.fit``, measure its relearn time and
        probe AUC on that class, store and log it: the depth scale every erase is measured on.

        ``config``: a :class:`ReferenceConfig` (the whole recipe), or a mapping of some of its
        fields (epochs, lr, batch_size, ..., seeds >= 3) over the ``[reference]`` settings.
        ``device``: ``cpu``, ``cuda``, ``cuda:N`` (default: CUDA when present; a bad or missing
        device is a ``ConfigError``). ``caller="cli"`` words errors with CLI flags."""
        from lethe.data import to_dataset
        from lethe.models import resolve_device, term

        dev = str(resolve_device(device))
        info = self._models.model(model)
        if info.train_data_digest is None:
            raise ReferenceTrainingError(
                f"model {info.name!r} has no training data: the reference is retrained on it; "
                f"register the model with {term('train_data', caller)}"
            )
        recipe, seeds = _recipe(self._store.settings.reference, config)
        _, spec = self._models.load_model(info.name)
        train_arr = self._models.data(info.name, split="train")
        c, reason = _held_out(info.class_names, train_arr.y, cls)
        retain = train_arr.of_classes([c], keep=False)
        t0 = time.perf_counter()
        ref_model = _retrain(spec, to_dataset(retain, spec.preprocess), recipe, dev, progress)
        seconds = time.perf_counter() - t0
        relearn, probe = self._measure(info.name, ref_model.cpu(), spec, c, seeds, progress)
        made = _Made(ref_model, spec, c, reason, recipe, seconds, relearn, probe)
        return self._store_reference(info.name, made)

    def _measure(
        self, name: str, model: nn.Module, spec: ModelSpec, c: int, seeds: int, progress: bool
    ) -> tuple[RelearnMetric, float | None]:
        """Relearn runs (``seeds`` repeats) and the feature-probe AUC of ``model`` on ``c``."""
        from lethe.metrics import TorchBackend
        from lethe_audit.metrics import ImageSet, RelearnConfig, evaluate

        pre = spec.preprocess
        ev, tr = self._models.data(name, split="eval"), self._models.data(name, split="train")
        result = evaluate(
            TorchBackend(model),
            ImageSet(pre.numpy(ev.x), ev.y, spec.num_classes),
            forget=[c],
            train_set=ImageSet(pre.numpy(tr.x), tr.y, spec.num_classes),
            relearn=RelearnConfig(seeds=seeds),
            seed=0,
            progress=progress,
        )
        if result.relearn is None:
            raise ReferenceTrainingError(f"relearn time could not be measured: {result.skipped}")
        probe = result.probe.auc if result.probe is not None else None
        return result.relearn, probe

    def _store_reference(self, name: str, made: _Made) -> DepthReference:
        from lethe._io import fsync_dir
        from lethe.models import TRAINED_BY_LETHE, save_checkpoint

        ref_id = "ref-" + secrets.token_hex(8)
        rdir = self._store.model_dir(name) / "references" / ref_id
        rdir.mkdir(parents=True)
        path = save_checkpoint(
            made.model.cpu(), made.spec, rdir / "model.safetensors", trained_by=TRAINED_BY_LETHE
        )
        fsync_dir(rdir)
        row = _row(ref_id, name, made, self._store.rel(path), path.read_bytes())
        info = _info(row)
        with self._store.write() as s:
            details = {"model": name, "reference_id": ref_id, "reason": made.reason}
            event = LifecycleEvent(
                EventType.MODEL_REFERENCE,
                rfc3339(utc(row.created_at)),
                details={**details, **info.to_dict()},
            )
            row.log_index = self._log.append(event, session=s).index
            s.add(row)
            s.flush()
            ref = DepthReference.from_row(row, info, str(path))
        return ref

    def latest(self, model: str | None = None) -> DepthReference | None:
        """The model's newest depth reference, or None."""
        with self._store.read() as s:
            name = self._store.model_row(s, model).name
            row = s.execute(
                select(ReferenceRow)
                .where(ReferenceRow.model_name == name)
                .order_by(ReferenceRow.created_at.desc(), ReferenceRow.id)
                .limit(1)
            ).scalar_one_or_none()
            if row is None:
                return None
            path = str(self._store.abs(row.checkpoint_path))
            return DepthReference.from_row(row, _info(row), path)

    def require(self, model: str) -> DepthReference:
        """The depth reference the erase phase needs, or a typed error naming the command."""
        ref = self.latest(model)  # an unknown model is UnknownModelError here
        if ref is None:
            raise MissingReferenceError(
                f"model {model!r} has no depth reference, which the erase phase is measured "
                f"against: make one once with `lethe model reference {model}` "
                f"(Lethe.train_reference({model!r})), or apply only the mask phase with "
                "`lethe apply --phase mask`"
            )
        return ref


@dataclass(frozen=True)
class _Made:
    """A retrained reference model and what was measured on it."""

    model: nn.Module
    spec: ModelSpec
    cls: int
    reason: str
    recipe: dict[str, Any]
    seconds: float
    relearn: RelearnMetric
    probe: float | None


def _retrain(
    spec: ModelSpec, ds: Any, recipe: dict[str, Any], dev: str, progress: bool
) -> nn.Module:
    from lethe.models import create_model, fit

    try:
        m = create_model(spec, seed=int(recipe["seed"]))
        m.to(dev)
        fit(m, ds, progress=progress, desc="reference retrain", **recipe)
    except (TypeError, ValueError) as exc:
        raise ReferenceTrainingError(f"the reference recipe {recipe} is not usable: {exc}") from exc
    return m.eval()


def _row(ref_id: str, name: str, made: _Made, rel_path: str, data: bytes) -> ReferenceRow:
    runs = [int(r.steps) for r in made.relearn.runs]
    seeds = [int(made.relearn.seed) + i for i in range(len(runs))]  # run i used seed + i
    return ReferenceRow(
        id=ref_id,
        model_name=name,
        kind=REFERENCE_KIND,
        classes=json.dumps([made.cls]),
        reason=made.reason,
        checkpoint_path=rel_path,
        model_sha256=hashlib.sha256(data).hexdigest(),
        recipe=canonical_json(made.recipe).decode("utf-8"),
        seconds=float(made.seconds),
        created_at=utcnow(),
        relearn_runs=json.dumps(runs),
        relearn_steps=float(made.relearn.steps),
        seeds=json.dumps(seeds),
        probe_auc=None if made.probe is None else float(made.probe),
        log_index=-1,
    )


def _info(row: ReferenceRow) -> ReferenceInfo:
    from lethe_audit.metrics import ReferenceInfo

    return ReferenceInfo(
        kind=row.kind,
        classes=tuple(json.loads(row.classes)),
        model_sha256=row.model_sha256,
        recipe=row.recipe,
        seconds=float(row.seconds),
        created_at=rfc3339(utc(row.created_at)),
        relearn_steps=float(row.relearn_steps),
        relearn_runs=tuple(json.loads(row.relearn_runs)),
        probe_auc=row.probe_auc,
        seeds=tuple(json.loads(row.seeds)),
    )
