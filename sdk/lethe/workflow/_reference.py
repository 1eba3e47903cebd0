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

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from lethe.errors import MissingReferenceError, ReferenceTrainingError
from lethe.workflow._time import now as utcnow
from lethe.workflow._time import utc
from lethe.workflow._types import DepthReference
from lethe_audit.statements import LifecycleEvent, canonical_json, rfc3339
from lethe_audit.store import ModelRow, ReferenceRow

if TYPE_CHECKING:
    from lethe.workflow._project import Lethe

__all__ = [
    "DEFAULT_RECIPE",
    "REFERENCE_KIND",
    "REFERENCE_SEEDS",
    "latest_reference",
    "require_reference",
    "train_reference",
]

REFERENCE_KIND = "retrain-holdout"
REFERENCE_SEEDS = 3
#: ``lethe.models.fit`` arguments used when neither ``[reference]`` nor the caller sets them.
DEFAULT_RECIPE: Mapping[str, Any] = {
    "epochs": 10,
    "lr": 1e-3,
    "weight_decay": 5e-4,
    "batch_size": 128,
    "seed": 0,
    "augment_flip": False,
    "augment_pad": 0,
    "label_smoothing": 0.0,
}


def _recipe(lt: Lethe, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    table = dict(lt.settings.reference)
    seeds = table.pop("seeds", REFERENCE_SEEDS)
    given = {k: v for k, v in overrides.items() if v is not None}
    seeds = given.pop("seeds", seeds)
    unknown = sorted((set(table) | set(given)) - set(DEFAULT_RECIPE))
    if unknown:
        raise ReferenceTrainingError(
            f"unknown reference recipe keys {unknown}; known: {', '.join(DEFAULT_RECIPE)}, seeds"
        )
    recipe = {**DEFAULT_RECIPE, **table, **given}
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 3:
        raise ReferenceTrainingError(
            f"the reference's relearn time needs >= 3 seeds, got seeds={seeds!r}"
        )
    return recipe, seeds


def _held_out(
    names: tuple[str, ...], y: np.ndarray[Any, Any], cls: int | str | None
) -> tuple[int, str]:
    counts = np.bincount(y.astype(np.int64), minlength=len(names))
    if cls is None:
        c = int(np.argmax(counts))  # first maximum: ties go to the lowest id
        return c, (
            f"class {c} has the most training samples ({int(counts[c])} of {int(counts.sum())}; "
            "ties go to the lowest id), so its relearn time is not shortened by a small class"
        )
    if isinstance(cls, str) and cls in names:
        c = names.index(cls)
    elif isinstance(cls, int) or (isinstance(cls, str) and cls.isdigit()):
        c = int(cls)
    else:
        raise ReferenceTrainingError(f"the model has no class {cls!r} (see `lethe model show`)")
    if not 0 <= c < len(names):
        raise ReferenceTrainingError(f"the model has classes 0..{len(names) - 1}, not {c}")
    if counts[c] == 0:
        raise ReferenceTrainingError(f"class {c} has no training samples to hold out")
    return c, f"class {c} chosen by the operator"


def train_reference(
    lt: Lethe,
    model: str | None,
    *,
    cls: int | str | None = None,
    progress: bool = False,
    device: str | None = None,
    **recipe_overrides: Any,
) -> DepthReference:
    """Retrain ``model`` from scratch without one class, measure it, store it, log it."""
    import torch

    from lethe.data import to_dataset

    info = lt.model(model)
    if info.train_data_digest is None:
        raise ReferenceTrainingError(
            f"model {info.name!r} has no training data: the reference is retrained on it; "
            "register the model with train_data"
        )
    recipe, seeds = _recipe(lt, recipe_overrides)
    _, spec = lt.load_model(info.name)
    train_arr = lt.data(info.name, split="train")
    c, reason = _held_out(info.class_names, train_arr.y, cls)
    retain = train_arr.of_classes([c], keep=False)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    ref_model = _retrain(spec, to_dataset(retain, spec.preprocess), recipe, dev, progress)
    seconds = time.perf_counter() - t0
    relearn, probe = _measure(lt, info.name, ref_model.cpu(), spec, c, seeds, progress)
    return _store(lt, info.name, ref_model, spec, c, reason, recipe, seconds, relearn, probe)


def _retrain(spec: Any, ds: Any, recipe: dict[str, Any], dev: str, progress: bool) -> Any:
    from lethe.models import create_model, fit

    try:
        m = create_model(spec, seed=int(recipe["seed"]))
        m.to(dev)
        fit(m, ds, progress=progress, desc="reference retrain", **recipe)
    except (TypeError, ValueError) as exc:
        raise ReferenceTrainingError(f"the reference recipe {recipe} is not usable: {exc}") from exc
    return m.eval()


def _measure(
    lt: Lethe, name: str, model: Any, spec: Any, c: int, seeds: int, progress: bool
) -> tuple[Any, float | None]:
    """Relearn runs (``seeds`` repeats) and the feature-probe AUC of ``model`` on class ``c``."""
    from lethe.metrics import TorchBackend
    from lethe_audit.metrics import ImageSet, RelearnConfig, evaluate

    pre = spec.preprocess
    ev, tr = lt.data(name, split="eval"), lt.data(name, split="train")
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


def _store(
    lt: Lethe,
    name: str,
    model: Any,
    spec: Any,
    c: int,
    reason: str,
    recipe: dict[str, Any],
    seconds: float,
    relearn: Any,
    probe: float | None,
) -> DepthReference:
    from lethe._io import fsync_dir
    from lethe.models import save_checkpoint

    ref_id = "ref-" + secrets.token_hex(8)
    rdir = lt.model_dir(name) / "references" / ref_id
    rdir.mkdir(parents=True)
    path = save_checkpoint(model.cpu(), spec, rdir / "model.safetensors")
    fsync_dir(rdir)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    created = utcnow()
    runs = [int(r.steps) for r in relearn.runs]
    seeds = [int(relearn.seed) + i for i in range(len(runs))]  # run i used seed + i
    row = ReferenceRow(
        id=ref_id,
        model_name=name,
        kind=REFERENCE_KIND,
        classes=json.dumps([c]),
        reason=reason,
        checkpoint_path=lt._rel(path),
        model_sha256=sha,
        recipe=canonical_json(recipe).decode("utf-8"),
        seconds=float(seconds),
        created_at=created,
        relearn_runs=json.dumps(runs),
        relearn_steps=float(relearn.steps),
        seeds=json.dumps(seeds),
        probe_auc=None if probe is None else float(probe),
        log_index=-1,
    )
    info = _info(row)
    with lt._write() as s:
        event = LifecycleEvent(
            "model.reference",
            rfc3339(created),
            details={"model": name, "reference_id": ref_id, "reason": reason, **info.to_dict()},
        )
        row.log_index = lt.log.append(event, session=s).index
        s.add(row)
        s.flush()
        ref = DepthReference.from_row(row, info, str(path))
    return ref


def _info(row: ReferenceRow) -> Any:
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


def latest_reference(lt: Lethe, model: str | None) -> DepthReference | None:
    """The model's newest depth reference, or None."""
    with lt._read() as s:
        name = lt._model_row(s, model).name
        row = s.execute(
            select(ReferenceRow)
            .where(ReferenceRow.model_name == name)
            .order_by(ReferenceRow.created_at.desc(), ReferenceRow.id)
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            return None
        return DepthReference.from_row(row, _info(row), str(lt._abs(row.checkpoint_path)))


def require_reference(lt: Lethe, model: str) -> DepthReference:
    """The depth reference the erase phase needs, or a typed error naming the command."""
    ref = latest_reference(lt, model)
    if ref is None:
        with lt._read() as s:
            assert s.get(ModelRow, model) is not None
        raise MissingReferenceError(
            f"model {model!r} has no depth reference, which the erase phase is measured "
            f"against: make one once with `lethe model reference {model}` "
            f"(Lethe.train_reference({model!r})), or apply only the mask phase with "
            "`lethe apply --phase mask`"
        )
    return ref
