"""Registration measures before it trusts: load any ordinary checkpoint, make its
preprocessing explicit, check the class list against the head, and measure the base model on
the eval data, refusing near-chance accuracy (or far below what the user expects) unless
forced. Used by ``Lethe.register_model``; every function is usable on its own."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lethe.data import ImageArrays
from lethe.errors import (
    BaseAccuracyError,
    ClassMismatchError,
    ModelRegistrationError,
    PreprocessingError,
)
from lethe.models import Caller, ModelSpec

__all__ = [
    "EXPECT_TOLERANCE",
    "BaseAccuracyError",
    "ClassMismatchError",
    "Preflight",
    "check_base_accuracy",
    "check_classes",
    "near_chance",
    "preflight",
    "recorded_preprocessing",
]

#: Said when a Lethe checkpoint records no preprocessing (written by a Lethe before the
#: preprocessing was recorded, and not marked as trained by Lethe).
_LEGACY_HINT = (
    "This Lethe checkpoint records no preprocessing and does not say Lethe trained it (an "
    "older save_checkpoint wrote neither): if Lethe's own fit trained it, its preprocessing is "
    "Lethe's default, mean 0.5 and std 0.5 for every channel"
)

#: ``expect_accuracy`` refuses a measured accuracy more than this far below it.
EXPECT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Preflight:
    """What registration stores: the model, its explicit spec, the (re-labelled) data, the
    class names and the measured base accuracy (with the chance level it was judged on)."""

    model: nn.Module
    spec: ModelSpec
    preprocessing_source: str
    eval_data: ImageArrays
    train_data: ImageArrays | None
    class_names: tuple[str, ...]
    base_accuracy: float
    chance: float
    forced: bool = False


def preflight(
    checkpoint: str | os.PathLike[str],
    *,
    eval_data: ImageArrays | str | os.PathLike[str],
    train_data: ImageArrays | str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    spec: Any = None,
    preprocessing: Mapping[str, Any] | str | None = None,
    expect_accuracy: float | None = None,
    force: bool = False,
    device: str | None = None,
    caller: Caller = "python",
    log: Callable[[str], None] | None = None,
    ema: bool | None = None,
) -> Preflight:
    """Load, resolve, check and measure a model about to be registered (see the module doc).

    ``preprocessing`` is a mapping of ``mean``, ``std``, ``interpolation``, ``crop_pct``,
    ``input_range`` (they may also be in ``spec``), or ``"timm"`` for timm's pretrained config
    (``{"timm": True, "crop_pct": 1.0}``: timm's values, the ones given overriding them).
    ``ema``: the raw (False) or EMA (True; the default when both are there) weights of a
    training checkpoint (:func:`lethe.models.load_weights`).
    """
    from lethe.models import load_weights, resolve_preprocessing

    say = log or (lambda _msg: None)
    model, raw_spec, lethe_ckpt = load_weights(
        Path(checkpoint), spec, caller=caller, ema=ema, log=say
    )
    options = dict(preprocessing) if isinstance(preprocessing, Mapping) else None
    use_timm = preprocessing == "timm" or bool(options and options.pop("timm", False))
    if isinstance(preprocessing, str) and not use_timm:
        raise ModelRegistrationError(
            f"preprocessing must be a mapping or 'timm', got {preprocessing!r}"
        )
    try:
        model_spec, source = resolve_preprocessing(
            raw_spec, options, use_timm=use_timm, caller=caller
        )
    except PreprocessingError as exc:
        if not lethe_ckpt:
            raise
        raise PreprocessingError(f"{exc}. {_LEGACY_HINT}") from exc
    say(f"preprocessing ({source}): {model_spec.preprocess.describe()}")
    eval_arr = _as_arrays(eval_data, "eval_data", split="test", caller=caller)
    train_arr = (
        _as_arrays(train_data, "train_data", split="train", caller=caller)
        if train_data is not None
        else None
    )
    names, eval_arr, train_arr = check_classes(
        eval_arr, train_arr, model_spec.num_classes, class_names, caller=caller
    )
    acc, chance = _measure(model, model_spec, eval_arr, device)
    say(f"base accuracy on the eval data: {acc:.4f} ({len(eval_arr)} images, chance {chance:.3f})")
    forced = check_base_accuracy(
        acc, chance, model_spec, source, expect=expect_accuracy, force=force, caller=caller
    )
    if forced:
        say("registering anyway (forced)")
    return Preflight(model, model_spec, source, eval_arr, train_arr, names, acc, chance, forced)


def _as_arrays(data: Any, what: str, *, split: str, caller: Caller) -> ImageArrays:
    from lethe.data import load_dataset
    from lethe.models import term

    if isinstance(data, ImageArrays):
        return data
    if isinstance(data, str | os.PathLike):
        return load_dataset(str(data), split=split)
    raise ModelRegistrationError(
        f"{term(what, caller)} must be ImageArrays, a .npz path, an ImageFolder directory or a "
        "dataset name"
    )


def check_classes(
    eval_arr: ImageArrays,
    train_arr: ImageArrays | None,
    num_classes: int,
    class_names: Sequence[str] | None,
    *,
    caller: Caller = "python",
) -> tuple[tuple[str, ...], ImageArrays, ImageArrays | None]:
    """The class names (head output i is class i) and the data re-labelled to that order.

    ``class_names`` given in another order than the data's (sorted ImageFolder names) re-labels
    the data; a class list that is not the same set, or not the head's size, raises
    :class:`ClassMismatchError` naming the extra or missing classes.
    """
    from lethe.models import term

    names = tuple(class_names) if class_names is not None else eval_arr.classes
    if len(set(names)) != len(names):
        raise ClassMismatchError(f"{term('class_names', caller)}: class names must be unique")
    if len(names) != num_classes:
        raise ClassMismatchError(
            _count_message(
                names, num_classes, eval_arr, given=class_names is not None, caller=caller
            )
        )
    ev = _relabel(eval_arr, names, term("eval_data", caller))
    tr = None if train_arr is None else _relabel(train_arr, names, term("train_data", caller))
    return names, ev, tr


def _count_message(
    names: Sequence[str], n: int, arr: ImageArrays, *, given: bool, caller: Caller
) -> str:
    from lethe.models import term

    what = term("class_names", caller) if given else f"{term('eval_data', caller)} ({arr.name})"
    msg = f"{what} has {len(names)} classes {list(names)[:12]}, the checkpoint's head {n} outputs"
    if len(names) > n and not given:
        small = sorted(range(len(names)), key=lambda c: int((arr.y == c).sum()))[: len(names) - n]
        extra = ", ".join(f"{names[c]!r} ({int((arr.y == c).sum())} images)" for c in small)
        msg += f"; an extra folder? the smallest: {extra}. Remove it, or pass the head's classes"
        msg += f" in order with {term('class_names', caller)}"
    else:
        msg += f": pass the {n} class names in the head's order with {term('class_names', caller)}"
    return msg


def _relabel(arr: ImageArrays, names: tuple[str, ...], what: str) -> ImageArrays:
    if arr.classes == names:
        return arr
    extra = [c for c in arr.classes if c not in names]
    missing = [c for c in names if c not in arr.classes]
    if extra or missing:
        raise ClassMismatchError(
            f"{what} ({arr.name}) classes {list(arr.classes)[:12]} differ from the model's "
            f"{list(names)[:12]}: extra {extra[:8]}, missing {missing[:8]}"
        )
    order = np.asarray([names.index(c) for c in arr.classes], dtype=np.int64)
    return ImageArrays(arr.x, order[arr.y], names, arr.name)


def _measure(
    model: nn.Module, spec: ModelSpec, arr: ImageArrays, device: str | None
) -> tuple[float, float]:
    from lethe.data import to_dataset
    from lethe.models import accuracy, resolve_device

    model.to(resolve_device(device))
    try:
        acc = accuracy(model, to_dataset(arr, spec.preprocess))
    finally:
        model.to("cpu")
    counts = np.bincount(arr.y, minlength=spec.num_classes)
    return acc, float(counts.max() / max(1, counts.sum()))


def near_chance(accuracy: float, chance: float) -> bool:
    """Whether ``accuracy`` is within a quarter of the way from ``chance`` to 1."""
    return accuracy < chance + 0.25 * (1.0 - chance)


def check_base_accuracy(
    accuracy: float,
    chance: float,
    spec: ModelSpec,
    source: str,
    *,
    expect: float | None = None,
    force: bool = False,
    caller: Caller = "python",
) -> bool:
    """Raise :class:`BaseAccuracyError` for a near-chance (or far below ``expect``) accuracy;
    returns True when ``force`` let such a model through."""
    from lethe.models import term

    low = near_chance(accuracy, chance)
    below = expect is not None and accuracy < expect - EXPECT_TOLERANCE
    if not (low or below):
        return False
    if force:
        return True
    reasons = [f"near chance ({chance:.3f})"] if low else []
    if below:
        reasons.append(f"far below the expected {expect:.3f} ({term('expect_accuracy', caller)})")
    why = " and ".join(reasons)
    raise BaseAccuracyError(
        f"the base model scores {accuracy:.3f} on the eval data: {why}. Lethe would measure "
        "and sign numbers of a model that does not work on these inputs. Likely causes: "
        f"(1) preprocessing: it was fed {spec.preprocess.describe()} (from {source}); pass the "
        f"training values with {term('mean', caller)} / {term('std', caller)} / "
        f"{term('interpolation', caller)} / {term('crop_pct', caller)}; "
        "(2) class order: head output i must be class i (ImageFolder classes are the sorted "
        f"folder names); pass {term('class_names', caller)} in the head's order; (3) the wrong "
        f"checkpoint or architecture. Pass {term('force', caller)} to register it anyway"
    )


def recorded_preprocessing(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing record of a registered model's stored spec (``ModelInfo.spec``)."""
    known = {k: v for k, v in spec.items() if k != "registration"}
    return ModelSpec.from_dict(known).preprocess.to_dict()
