"""Building, training and storing the classifiers Lethe works on.

A :class:`ModelSpec` names a timm architecture plus the few options needed to rebuild the
exact module tree from a safetensors checkpoint (class count, channels, input size, the
small-image stem), so a registered model can be re-created anywhere without pickles.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lethe._io import atomic_write_bytes
from lethe._weights import Caller, read_state_dict, term
from lethe.data import Preprocess
from lethe.errors import (
    CheckpointFormatError,
    ConfigError,
    DataError,
    ModelError,
    ModelRegistrationError,
    PreprocessingError,
)

__all__ = [
    "Caller",
    "CheckpointFormatError",
    "ModelSpec",
    "PreprocessingError",
    "accuracy",
    "create_model",
    "fit",
    "load_checkpoint",
    "load_weights",
    "predict",
    "resolve_device",
    "resolve_preprocessing",
    "save_checkpoint",
    "term",
]

#: The preprocessing fields of a :class:`ModelSpec` (besides ``in_chans`` / ``input_size``).
PREPROCESSING_FIELDS = ("mean", "std", "interpolation", "crop_pct", "input_range")
_ARCH_FIELDS = ("arch", "num_classes", "in_chans", "input_size", "small_stem", "kwargs")


_CHECKPOINT_FORMAT = "lethe/model-checkpoint/v1"

#: With ``progress``, :func:`fit` logs one INFO line per epoch (the bar's numbers), which
#: ``lethe`` commands print when stderr is not a terminal.
_log = logging.getLogger("lethe.models")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a classifier's module tree, and to feed it.

    ``small_stem`` replaces a ResNet-style stem (7x7 stride-2 conv + max-pool) by a 3x3
    stride-1 conv without pooling, the usual adaptation for 28x28 / 32x32 images.
    ``kwargs`` are passed to ``timm.create_model`` (e.g. ``patch_size`` for a ViT).

    The preprocessing (``mean``, ``std``, ``interpolation``, ``crop_pct``, ``input_range``;
    with ``in_chans`` and ``input_size``) is part of the model: every measurement feeds the
    model through :attr:`preprocess`. ``None`` means Lethe's own default (0.5 / 0.5, bilinear,
    no crop, pixels scaled to [0, 1]), which is right only for models Lethe trained itself;
    registration makes every value explicit (:func:`resolve_preprocessing`).
    """

    arch: str
    num_classes: int
    in_chans: int = 3
    input_size: tuple[int, int] = (224, 224)
    small_stem: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    interpolation: str | None = None
    crop_pct: float | None = None
    input_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {self.in_chans}")
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        for name in ("mean", "std", "input_range"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(float(a) for a in v))
        if self.crop_pct is not None:
            object.__setattr__(self, "crop_pct", float(self.crop_pct))
        try:
            self.preprocess  # noqa: B018 - validates the preprocessing values
        except DataError as exc:
            raise ConfigError(f"invalid preprocessing in the model spec: {exc}") from exc

    @property
    def preprocess(self) -> Preprocess:
        c = self.in_chans
        return Preprocess(
            (c, *self.input_size),
            self.mean or (0.5,) * c,
            self.std or (0.5,) * c,
            self.interpolation or "bilinear",
            1.0 if self.crop_pct is None else self.crop_pct,
            self.input_range or (0.0, 1.0),
        )

    @property
    def has_preprocessing(self) -> bool:
        """Whether mean and std are recorded (else the spec relies on Lethe's default)."""
        return self.mean is not None and self.std is not None

    def explicit(self) -> ModelSpec:
        """The same spec with every preprocessing value written out (defaults made explicit)."""
        pre = self.preprocess
        return replace(
            self,
            mean=pre.mean,
            std=pre.std,
            interpolation=pre.interpolation,
            crop_pct=pre.crop_pct,
            input_range=pre.input_range,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["kwargs"] = dict(self.kwargs)
        for k in ("mean", "std", "input_range"):
            d[k] = list(d[k]) if d[k] is not None else None
        for k in ("interpolation", "crop_pct", "input_range"):
            if d[k] is None:  # keep older specs' JSON (and digests over it) unchanged
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model spec fields {sorted(unknown)}")
        args = dict(d)
        args["input_size"] = tuple(args.get("input_size", (224, 224)))
        return cls(**args)


def _adapt_small_stem(model: nn.Module, in_chans: int) -> None:
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ModelError(
            f"small_stem applies to ResNet-style models (conv1 + maxpool); "
            f"{type(model).__name__} has none. Use the architecture's own options instead."
        )
    model.conv1 = nn.Conv2d(in_chans, conv1.out_channels, 3, 1, 1, bias=conv1.bias is not None)
    model.maxpool = nn.Identity()


def create_model(spec: ModelSpec, *, seed: int | None = None) -> nn.Module:
    """A freshly initialised model for ``spec`` (seeded when ``seed`` is given)."""
    import timm

    kwargs = dict(spec.kwargs)
    if "img_size" not in kwargs and _accepts_img_size(spec.arch):
        kwargs["img_size"] = spec.input_size
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model: nn.Module = timm.create_model(
            spec.arch,
            pretrained=False,
            num_classes=spec.num_classes,
            in_chans=spec.in_chans,
            **kwargs,
        )
        if spec.small_stem:
            _adapt_small_stem(model, spec.in_chans)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot build timm model {spec.arch!r} with {kwargs}: {exc}") from exc
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    # Record the preprocessing in timm's data config so Preprocess.from_model agrees.
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    pre = spec.preprocess
    cfg.update(
        input_size=pre.input_size,
        mean=pre.mean,
        std=pre.std,
        crop_pct=pre.crop_pct,
        interpolation=pre.interpolation,
    )
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return model


def _accepts_img_size(arch: str) -> bool:
    # Transformers (and a few hybrids) bake the input size into position embeddings.
    return any(tag in arch for tag in ("vit", "deit", "swin", "eva", "beit", "maxvit", "coat"))


#: ``trained_by`` of :func:`save_checkpoint` for a model trained by Lethe (:func:`fit`).
TRAINED_BY_LETHE = "lethe"


def save_checkpoint(
    model: nn.Module,
    spec: ModelSpec,
    path: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
    trained_by: str | None = None,
) -> Path:
    """Write weights as safetensors with the spec in its metadata (atomic, no pickle).

    The spec is written with its preprocessing explicit, so the file says how to feed the
    model. A spec without ``mean`` / ``std`` gets Lethe's default (0.5 / 0.5) only for a model
    Lethe trained: ``trained_by="lethe"`` (:data:`TRAINED_BY_LETHE`; recorded in the
    metadata); for any other (an outside model converted to a Lethe checkpoint) it raises
    :class:`PreprocessingError` asking for the values it was trained with.
    """
    from safetensors.torch import save

    from lethe._digest import model_digest

    if not spec.has_preprocessing and trained_by != TRAINED_BY_LETHE:
        raise PreprocessingError(
            f"save_checkpoint: the spec of this {spec.arch} records no mean/std. Pass the "
            "values the model was trained with (ModelSpec(..., mean=(r, g, b), std=(r, g, b), "
            "interpolation=..., crop_pct=...)); Lethe's default 0.5 / 0.5 is only for a model "
            f"Lethe trained (lethe.models.fit): then pass trained_by={TRAINED_BY_LETHE!r}"
        )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": _CHECKPOINT_FORMAT,
        "spec": json.dumps(spec.explicit().to_dict(), sort_keys=True),
        "digest": model_digest(model),
        "extra": json.dumps(dict(extra or {}), sort_keys=True),
    }
    if trained_by is not None:
        meta["trained_by"] = str(trained_by)
    return atomic_write_bytes(path, save(tensors, metadata=meta))


def load_checkpoint(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model saved by :func:`save_checkpoint` and check its digest."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from lethe._digest import model_digest

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: checkpoint not found")
    raw = p.read_bytes()
    try:
        tensors = load(raw)
        meta = _safetensors_metadata(raw)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"{p}: not a safetensors checkpoint ({exc})") from exc
    if meta.get("format") != _CHECKPOINT_FORMAT:
        raise ModelError(f"{p}: not a Lethe model checkpoint (format {meta.get('format')!r})")
    spec = ModelSpec.from_dict(json.loads(meta["spec"]))
    model = create_model(spec)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{p}: weights do not fit {spec.arch}: {exc}") from exc
    if model_digest(model) != meta.get("digest"):
        raise ModelError(f"{p}: weights do not match the digest stored with them (corrupted?)")
    model.eval()
    return model, spec


def load_weights(
    path: str | Path,
    spec: ModelSpec | Mapping[str, Any] | None = None,
    *,
    caller: Caller = "python",
    ema: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, ModelSpec, bool]:
    """A model from any ordinary weight file: ``(model, spec, is_lethe_checkpoint)``.

    ``ema`` chooses between the raw and EMA weights of a training checkpoint holding both
    (timm's ``state_dict`` / ``state_dict_ema``; default: EMA, as timm does); ``log`` is told
    which was used.

    A Lethe checkpoint carries its spec (a ``spec`` given too must describe the same
    architecture); any other state dict (safetensors, ``torch.save``, wrapped, ``module.``
    prefixed: see :func:`lethe._weights.read_state_dict`) needs ``spec``. The returned spec's
    preprocessing is as recorded (resolve it with :func:`resolve_preprocessing`).
    """
    sd = read_state_dict(path, caller=caller, ema=ema)
    if sd.note and log is not None:
        log(f"{Path(path).name}: {sd.kind}: {sd.note}")
    given = _as_spec(spec) if spec is not None else None
    if sd.metadata.get("format") == _CHECKPOINT_FORMAT:
        model, own = load_checkpoint(path)
        if given is not None and _arch_of(given) != _arch_of(own):
            raise ModelRegistrationError(
                f"{path} is a Lethe checkpoint for {_arch_of(own)}, which differs from the "
                f"{term('spec', caller)} given ({_arch_of(given)}); drop them"
            )
        if given is not None:
            own = _merge_recorded(own, given, caller)
        if sd.metadata.get("trained_by") == TRAINED_BY_LETHE and not own.has_preprocessing:
            own = own.explicit()  # Lethe's default: right for a model Lethe trained, only
        return model, own, True
    if given is None:
        raise ModelRegistrationError(
            f"{path} is a plain {sd.kind} state dict{_head_hint(sd.tensors)}: pass "
            f"{term('spec', caller)} to say which model it is"
        )
    model = create_model(given)
    _load_into(model, sd.tensors, given, Path(path), caller)
    model.eval()
    return model, given, False


def _as_spec(spec: ModelSpec | Mapping[str, Any]) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)


def _arch_of(spec: ModelSpec) -> dict[str, Any]:
    d = spec.to_dict()
    return {k: d[k] for k in _ARCH_FIELDS}


def _merge_recorded(own: ModelSpec, given: ModelSpec, caller: Caller) -> ModelSpec:
    extra = {k: getattr(given, k) for k in PREPROCESSING_FIELDS if getattr(given, k) is not None}
    return _with_options(own, extra, caller, what="the checkpoint records")


def _head_hint(tensors: Mapping[str, torch.Tensor]) -> str:
    mats = [(k, v) for k, v in tensors.items() if k.endswith(".weight") and v.ndim == 2]
    if not mats:
        return ""
    k, v = mats[-1]
    return f" (its last linear layer {k} has {v.shape[0]} outputs)"


def _load_into(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], spec: ModelSpec, p: Path, caller: Caller
) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if not (missing or unexpected or shapes):
        model.load_state_dict(dict(tensors), strict=True)
        return
    hints = [_shape_hint(k, own[k], tensors[k], caller) for k in shapes[:3]]
    parts = [
        f"missing {missing[:4]}" if missing else "",
        f"unexpected {unexpected[:4]}" if unexpected else "",
    ]
    parts += [h for h in hints if h]
    raise ModelRegistrationError(
        f"{p}: the weights do not fit timm {spec.arch!r} as specified: "
        + "; ".join(x for x in parts if x)
        + f". Check {term('arch', caller)}, {term('num_classes', caller)}, "
        f"{term('in_chans', caller)} and {term('small_stem', caller)}"
    )


def _shape_hint(key: str, want: torch.Tensor, got: torch.Tensor, caller: Caller) -> str:
    w, g = tuple(want.shape), tuple(got.shape)
    if want.ndim == 2 and got.ndim == 2 and w[1] == g[1]:
        return f"{key} has {g[0]} outputs in the file: pass {term('num_classes', caller)} {g[0]}"
    if want.ndim == 4 and got.ndim == 4 and w[1] != g[1]:
        return (
            f"{key} takes {g[1]} input channels in the file: pass {term('in_chans', caller)} {g[1]}"
        )
    if want.ndim == 4 and got.ndim == 4 and w[2:] != g[2:]:
        return f"{key} has a {g[2]}x{g[3]} kernel in the file (toggle {term('small_stem', caller)})"
    return f"{key} is {list(g)} in the file, {list(w)} in the model"


def resolve_preprocessing(
    spec: ModelSpec,
    options: Mapping[str, Any] | None = None,
    *,
    use_timm: bool = False,
    lethe_trained: bool = False,
    caller: Caller = "python",
) -> tuple[ModelSpec, str]:
    """The spec with every preprocessing value explicit, and where the values came from.

    In order: ``options`` (``mean``, ``std``, ``interpolation``, ``crop_pct``,
    ``input_range``) and the values the spec already records (``"options"`` /
    ``"checkpoint"``); then timm's pretrained config of the architecture when ``use_timm`` (it
    fills what the options leave out: ``"options+timm"``) or
    the architecture names a pretrained tag (``resnet18.a1_in1k``) (``"timm"``); then Lethe's
    own default for a model Lethe trained (``lethe_trained``: a Lethe checkpoint without
    recorded preprocessing) (``"lethe"``). Anything else raises :class:`PreprocessingError`
    naming what to pass: an external checkpoint never gets a silent default.
    """
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = set(given) - set(PREPROCESSING_FIELDS)
    if unknown:
        raise ConfigError(f"unknown preprocessing options {sorted(unknown)}")
    for k in ("mean", "std"):  # one value for every channel
        v = given.get(k)
        if v is not None and not isinstance(v, (int, float)) and len(v) == 1:
            given[k] = tuple(v) * spec.in_chans
        elif isinstance(v, (int, float)):
            given[k] = (float(v),) * spec.in_chans
    merged = _with_options(spec, given, caller, what="the spec says")
    cfg = _timm_cfg(spec.arch) if use_timm or not merged.has_preprocessing else None
    if merged.has_preprocessing and not (use_timm and cfg is not None):
        source = "options" if {"mean", "std"} & set(given) else "checkpoint"
        return merged.explicit(), source
    if (use_timm or "." in spec.arch) and cfg is not None:
        fill = {
            k: v for k, v in _from_timm(cfg, spec.in_chans).items() if getattr(merged, k) is None
        }
        return replace(merged, **fill).explicit(), "options+timm" if given else "timm"
    if lethe_trained and not given:
        return merged.explicit(), "lethe"
    raise PreprocessingError(_unknown_preprocessing(spec, cfg, caller))


def _with_options(
    spec: ModelSpec, given: Mapping[str, Any], caller: Caller, *, what: str
) -> ModelSpec:
    for k, v in given.items():
        have = getattr(spec, k)
        norm = tuple(float(a) for a in v) if isinstance(v, (list, tuple)) else v
        if have is not None and have != norm:
            raise PreprocessingError(
                f"{what} {k} = {have}, but {term(k, caller)} gives {v}: the model was measured "
                "with its recorded preprocessing; drop the option or fix the record"
            )
    try:
        return replace(spec, **dict(given))
    except ConfigError as exc:
        raise PreprocessingError(str(exc)) from exc


def _timm_cfg(arch: str) -> Any:
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(arch)
    except (RuntimeError, ValueError, KeyError):
        return None


def _from_timm(cfg: Any, in_chans: int) -> dict[str, Any]:
    mean, std = tuple(cfg.mean), tuple(cfg.std)
    if len(mean) != in_chans:  # 3-channel statistics for a 1-channel model: average them
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    interp = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic", "nearest") else None
    return {"mean": mean, "std": std, "interpolation": interp, "crop_pct": cfg.crop_pct}


def _unknown_preprocessing(spec: ModelSpec, cfg: Any, caller: Caller) -> str:
    msg = (
        f"the preprocessing of this {spec.arch} checkpoint is unknown: Lethe measures the model "
        "on exactly the inputs it is fed, and a wrong normalisation makes every number (and "
        "the signed attestation) wrong. Pass the values it was trained with: "
        f"{term('mean', caller)} and {term('std', caller)} (optional: "
        f"{term('interpolation', caller)}, {term('crop_pct', caller)}, "
        f"{term('input_range', caller)})"
    )
    if cfg is not None:
        t = _from_timm(cfg, spec.in_chans)
        msg += (
            f", or {term('timm', caller)} if it was fine-tuned from timm's pretrained weights "
            f"(mean {[round(m, 4) for m in t['mean']]}, std {[round(s, 4) for s in t['std']]}, "
            f"{t['interpolation']}, crop_pct {t['crop_pct']})"
        )
    return msg


def _safetensors_metadata(raw: bytes) -> dict[str, str]:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise ValueError("malformed metadata")
    return {str(k): str(v) for k, v in meta.items()}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; ``None`` means CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if n == 0:
            raise ConfigError(f"device {device!r}: CUDA is not available here; use cpu")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"device {device!r}: only {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
    return dev


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Logits for ``x`` in eval mode, on the model's device, returned on CPU."""
    was_training = model.training
    model.eval()
    dev = _device_of(model)
    try:
        outs = [
            model(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, data: TensorDataset, *, batch_size: int = 512) -> float:
    """Top-1 accuracy on a ``(images, labels)`` dataset."""
    x, y = data.tensors
    if len(y) == 0:
        raise ModelError("accuracy of an empty dataset is undefined")
    return float((predict(model, x, batch_size=batch_size).argmax(1) == y).double().mean())


def _augment(x: torch.Tensor, gen: torch.Generator, *, flip: bool, pad: int) -> torch.Tensor:
    if pad:
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w)
        idx_n = torch.arange(n).view(n, 1, 1, 1)
        idx_c = torch.arange(x.shape[1]).view(1, -1, 1, 1)
        x = padded[idx_n, idx_c, rows, cols]
    if flip:
        mask = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


def fit(
    model: nn.Module,
    train: Dataset[Any],
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    augment_flip: bool = False,
    augment_pad: int = 0,
    label_smoothing: float = 0.0,
    progress: bool = True,
    desc: str = "train",
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Plain supervised training (AdamW, cosine schedule), in place; returns ``model``.

    Used to train base models for the demo, tests and benchmarks, to retrain without the
    forgotten classes (the gold standard) and as the fine-tuning reference for timings.
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    dev = _device_of(model)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen, drop_last=False)
    steps = max(1, epochs * len(loader))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    bar = tqdm(total=steps, desc=desc, disable=None if progress else True, leave=False)
    try:
        for epoch in range(epochs):
            total, n = 0.0, 0
            for xb, yb in loader:
                if augment_flip or augment_pad:
                    xb = _augment(xb, gen, flip=augment_flip, pad=augment_pad)
                xb, yb = xb.to(dev), yb.to(dev)
                loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(yb)
                n += len(yb)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total / max(n, 1):.3f}")
            if progress:
                _log.info("%s epoch %d/%d: loss %.3f", desc, epoch + 1, epochs, total / max(n, 1))
            if on_epoch is not None:
                on_epoch(epoch, total / max(n, 1))
    finally:
        bar.close()
        model.eval()
    return model
