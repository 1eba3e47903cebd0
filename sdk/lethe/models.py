"""Building, training and storing the classifiers Lethe works on.

A :class:`ModelSpec` names a timm architecture plus the few options needed to rebuild the
exact module tree from a safetensors checkpoint (class count, channels, input size, the
small-image stem), so a registered model can be re-created anywhere without pickles.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lethe._io import atomic_write_bytes
from lethe.data import Preprocess
from lethe.errors import ConfigError, ModelError

__all__ = [
    "ModelSpec",
    "accuracy",
    "create_model",
    "fit",
    "load_checkpoint",
    "predict",
    "save_checkpoint",
]

_CHECKPOINT_FORMAT = "lethe/model-checkpoint/v1"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a classifier's module tree.

    ``small_stem`` replaces a ResNet-style stem (7x7 stride-2 conv + max-pool) by a 3x3
    stride-1 conv without pooling, the usual adaptation for 28x28 / 32x32 images.
    ``kwargs`` are passed to ``timm.create_model`` (e.g. ``patch_size`` for a ViT).
    """

    arch: str
    num_classes: int
    in_chans: int = 3
    input_size: tuple[int, int] = (224, 224)
    small_stem: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {self.in_chans}")
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(float(a) for a in v))

    @property
    def preprocess(self) -> Preprocess:
        c = self.in_chans
        return Preprocess(
            (c, *self.input_size),
            self.mean or (0.5,) * c,
            self.std or (0.5,) * c,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["kwargs"] = dict(self.kwargs)
        for k in ("mean", "std"):
            d[k] = list(d[k]) if d[k] is not None else None
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
    cfg.update(input_size=pre.input_size, mean=pre.mean, std=pre.std, crop_pct=1.0)
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return model


def _accepts_img_size(arch: str) -> bool:
    # Transformers (and a few hybrids) bake the input size into position embeddings.
    return any(tag in arch for tag in ("vit", "deit", "swin", "eva", "beit", "maxvit", "coat"))


def save_checkpoint(
    model: nn.Module, spec: ModelSpec, path: str | Path, *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write weights as safetensors with the spec in its metadata (atomic, no pickle)."""
    from safetensors.torch import save

    from lethe._digest import model_digest

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": _CHECKPOINT_FORMAT,
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
        "digest": model_digest(model),
        "extra": json.dumps(dict(extra or {}), sort_keys=True),
    }
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


def _safetensors_metadata(raw: bytes) -> dict[str, str]:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise ValueError("malformed metadata")
    return {str(k): str(v) for k, v in meta.items()}


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
            if on_epoch is not None:
                on_epoch(epoch, total / max(n, 1))
    finally:
        bar.close()
        model.eval()
    return model
