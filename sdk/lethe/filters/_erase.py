"""Phase 2 of a deletion, *erase* (DESIGN §3): rebuild the top of the masked model from scratch
on retain data, so that the forgotten classes are gone from the weights, not only masked.

Recipe ``retrain-top`` (the default; prototype findings (3)+(4) of issue 13): the last
``blocks`` blocks of the model's last stage and everything after them (pooling norms, hidden
layers, the classifier head, whose rows of the forgotten classes are reset with it) are
re-initialised and trained from scratch with cross-entropy on the retain samples only. The
part below stays frozen; its output at the cut (the input of the first re-initialised block)
is computed once and cached, so one epoch costs a forward of the top only.

How the cut is found: a forward pass on one sample records the order in which modules run.
The *last stage* is the ``nn.Sequential`` with at least two parametrised children whose last
module runs latest (timm ResNet: ``layer4``; timm ViT: ``blocks``; a plain CNN: its conv
``features``). Its children are grouped into blocks (a block starts at a child that is a
container with parameters, or at a conv / linear layer; normalisations, activations and
pooling join the block before them); the cut is at the start of the ``blocks``-th last block,
or at ``EraseConfig.boundary`` (a dotted module name) when given. Every parametrised module
that runs at or after the cut is re-initialised. Before anything changes, the top is run from
cached features and compared with the full forward: a model whose output does not depend on
the cut alone (a skip connection around it) is refused with a typed error.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lethe.errors import ClassSelectionError, ConfigError, FilterError, TrainingError

__all__ = ["ERASE_METHODS", "EraseConfig", "EraseReport", "erase"]

ERASE_METHODS = ("retrain-top",)


@dataclass(frozen=True)
class EraseConfig:
    """Options of phase 2 (JSON-serialisable; :meth:`to_dict` goes into the attestation).

    ``method``: the recipe (:data:`ERASE_METHODS`). ``blocks``: how many blocks of the last
    stage are re-initialised (with everything after them). ``boundary``: the dotted name of the
    first re-initialised module, overriding the automatic cut. Training: AdamW with ``lr`` and
    ``weight_decay``, cosine schedule, ``epochs`` passes over the retain samples in batches of
    ``batch_size``; ``seed`` decides the re-initialisation and the batch order.
    """

    method: str = "retrain-top"
    blocks: int = 1
    epochs: int = 15
    lr: float = 2e-3
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    boundary: str | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"erase: {msg}")

        if self.method not in ERASE_METHODS:
            bad(f"unknown method {self.method!r}; known: {', '.join(ERASE_METHODS)}")
        for name in ("blocks", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            bad(f"lr must be a positive number, got {self.lr!r}")
        wd = self.weight_decay
        if not (isinstance(wd, int | float) and math.isfinite(wd) and wd >= 0):
            bad(f"weight_decay must be a non-negative number, got {wd!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            bad(f"seed must be an integer, got {self.seed!r}")
        if self.boundary is not None and (not isinstance(self.boundary, str) or not self.boundary):
            bad(f"boundary must be a module name or None, got {self.boundary!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EraseReport:
    """What phase 2 did: recipe, options, wall time, how many retain samples it trained on,
    where it cut the model, which modules it re-initialised and the loss of every epoch."""

    method: str
    config: dict[str, Any]
    seconds: float
    retain_samples: int
    boundary: str = ""
    reset_modules: tuple[str, ...] = ()
    epoch_losses: tuple[float, ...] = ()
    device: str = "cpu"
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reset_modules"] = list(self.reset_modules)
        d["epoch_losses"] = list(self.epoch_losses)
        return d


class _Stop(Exception):
    """Raised by the caching hook: nothing after the cut needs to run."""


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"erase: unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("erase: device='cuda' was asked for but CUDA is not available")
    return dev


def _num_classes(model: nn.Module) -> int:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise FilterError("erase: the model has no linear classifier head")
        head = linears[-1]
    return int(head.out_features)


def _execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules in the order their forward starts (each once)."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []
    for name, mod in model.named_modules():
        if not name:
            continue

        def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)

        handles.append(mod.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def _has_params(mod: nn.Module) -> bool:
    return any(True for _ in mod.parameters())


def _block_starts(stage: nn.Sequential) -> list[int]:
    starts: list[int] = []
    for i, child in enumerate(stage.children()):
        is_container = any(True for _ in child.children())
        weight_layer = isinstance(child, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)
        if (is_container and _has_params(child)) or weight_layer or not starts:
            starts.append(i)
    return starts


def _find_cut(model: nn.Module, order: list[str], blocks: int) -> str:
    """Dotted name of the first re-initialised module (see the module docstring)."""
    rank = {n: i for i, n in enumerate(order)}
    best: tuple[int, str] | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential) or name not in rank:
            continue
        if sum(1 for c in mod.children() if _has_params(c)) < 2:
            continue
        last = max(rank.get(f"{name}.{c}", -1) for c, _ in mod.named_children())
        if best is None or last > best[0]:
            best = (last, name)
    if best is None:
        raise FilterError(
            "erase: found no stage (an nn.Sequential of blocks) to cut the model at; "
            "pass EraseConfig(boundary='<module name>')"
        )
    stage_name = best[1]
    stage = model.get_submodule(stage_name)
    assert isinstance(stage, nn.Sequential)
    starts = _block_starts(stage)
    if blocks > len(starts):
        raise ConfigError(
            f"erase: blocks={blocks} but the last stage {stage_name!r} has only {len(starts)}"
        )
    child = list(stage.named_children())[starts[-blocks]][0]
    return f"{stage_name}.{child}"


def _top_modules(model: nn.Module, order: list[str], cut: str) -> list[str]:
    """Modules with parameters of their own that run at or after the cut (in run order)."""
    start = order.index(cut)
    out = []
    for name in order[start:]:
        mod = model.get_submodule(name)
        if any(True for _ in mod.parameters(recurse=False)) or any(
            True for _ in mod.buffers(recurse=False)
        ):
            out.append(name)
    return out


@contextmanager
def _spliced(cut_module: nn.Module, holder: list[torch.Tensor]) -> Iterator[None]:
    """While active, the cut module ignores its input and gets ``holder[0]`` instead."""

    def pre(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (holder[0], *args[1:])

    handle = cut_module.register_forward_pre_hook(pre)
    try:
        yield
    finally:
        handle.remove()


def _retain_features(
    model: nn.Module,
    cut_module: nn.Module,
    dataset: Dataset[Any],
    forget: Sequence[int],
    dev: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features at the cut, labels) of every retain sample, and one input for the splice."""
    captured: list[torch.Tensor] = []

    def pre(_m: nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(args[0].detach())
        raise _Stop

    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    dummy: torch.Tensor | None = None
    forget_t = torch.tensor(sorted(forget), dtype=torch.long)
    handle = cut_module.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            for xb, yb in DataLoader(dataset, batch_size=256, shuffle=False):
                yb = torch.as_tensor(yb).long()
                keep = ~torch.isin(yb, forget_t)
                if not bool(keep.any()):
                    continue
                xb = torch.as_tensor(xb)[keep]
                if dummy is None:
                    dummy = xb[:1].to(dev)
                captured.clear()
                with suppress(_Stop):
                    model(xb.to(dev))
                if len(captured) != 1:
                    raise FilterError("erase: the cut module did not run exactly once per batch")
                feats.append(captured[0])
                labels.append(yb[keep].to(dev))
    finally:
        handle.remove()
    if dummy is None:
        raise TrainingError("erase: the training data holds no retain sample")
    return torch.cat(feats), torch.cat(labels), dummy


def _check_splice(
    model: nn.Module, cut_module: nn.Module, feats: torch.Tensor, x: torch.Tensor
) -> None:
    """The top run from cached features must equal the full forward (refuse models with a
    path around the cut)."""
    with torch.no_grad():
        full = model(x)
        holder = [feats]
        with _spliced(cut_module, holder):
            top = model(x[:1])
    if top.shape != full.shape or not torch.allclose(top, full, rtol=1e-4, atol=1e-4):
        raise FilterError(
            "erase: the model's output does not depend on the cut alone (a connection skips "
            "around it); pass EraseConfig(boundary=...) naming a module every path goes through"
        )


def _reset(model: nn.Module, names: Sequence[str], seed: int) -> list[str]:
    """Re-initialise every named module (``reset_parameters``, seeded); returns the names
    that could not be reset (parameters kept)."""
    kept: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            mod = model.get_submodule(name)
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                kept.append(name)
    return kept


def _validate_forget(forget: Sequence[int], num_classes: int) -> list[int]:
    try:
        classes = sorted({int(c) for c in forget})
    except (TypeError, ValueError) as exc:
        raise ClassSelectionError(f"erase: forget must be class ids, got {forget!r}") from exc
    if not classes:
        raise ClassSelectionError("erase: forget is empty; name at least one class")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ClassSelectionError(
            f"erase: classes {bad} are out of range for a model of {num_classes} classes"
        )
    if len(classes) >= num_classes:
        raise ClassSelectionError("erase: cannot forget every class (no retain data)")
    return classes


def _train_top(
    model: nn.Module,
    top: Sequence[str],
    cut_module: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    dummy: torch.Tensor,
    cfg: EraseConfig,
    progress: bool,
) -> list[float]:
    from tqdm.auto import tqdm

    model.eval()
    params: list[nn.Parameter] = []
    for p in model.parameters():
        p.requires_grad_(False)
    for name in top:
        mod = model.get_submodule(name)
        mod.train()
        for p in mod.parameters(recurse=False):
            p.requires_grad_(True)
            params.append(p)
    n = len(labels)
    per_epoch = math.ceil(n / cfg.batch_size)
    steps = cfg.epochs * per_epoch
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17)
    holder = [feats[:1]]
    losses: list[float] = []
    bar = tqdm(total=steps, desc="erase", disable=None if progress else True, leave=False)
    try:
        with _spliced(cut_module, holder):
            for _ in range(cfg.epochs):
                perm = torch.randperm(n, generator=gen).to(feats.device)
                total = torch.zeros((), device=feats.device)
                for start in range(0, n, cfg.batch_size):
                    idx = perm[start : start + cfg.batch_size]
                    holder[0] = feats[idx]
                    loss = F.cross_entropy(model(dummy).float(), labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
                    sched.step()
                    total += loss.detach() * len(idx)
                    bar.update(1)
                losses.append(float(total) / n)
                if not math.isfinite(losses[-1]):
                    raise TrainingError("erase diverged (non-finite loss); lower lr")
    finally:
        bar.close()
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
    return losses


def erase(
    model: nn.Module,
    train_set: Dataset[Any],
    forget: Sequence[int],
    *,
    config: EraseConfig = EraseConfig(),
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[nn.Module, EraseReport]:
    """Phase 2. ``model`` is the folded (masked) model; returns a NEW model of the same
    topology (same state_dict keys and shapes) whose weights no longer hold the ``forget``
    classes, and a report. Uses only the samples of ``train_set`` (``(image, label)`` pairs)
    whose label is not in ``forget``. Deterministic for ``config.seed`` on CPU; runs on CUDA
    when ``device`` is None and CUDA is present. The caller's model is never changed; the
    returned one is in eval mode on the caller's model's device, with gradients off.
    """
    if not isinstance(config, EraseConfig):
        raise ConfigError("erase: config must be an EraseConfig")
    t0 = time.perf_counter()
    classes = _validate_forget(forget, _num_classes(model))
    dev = _pick_device(device)
    home = _model_device(model)
    out = copy.deepcopy(model).to(dev).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    probe = next(iter(DataLoader(train_set, batch_size=4, shuffle=False)))
    x4 = torch.as_tensor(probe[0]).to(dev)
    order = _execution_order(out, x4[:1])
    cut = config.boundary or _find_cut(out, order, config.blocks)
    if cut not in order:
        raise ConfigError(f"erase: boundary {cut!r} is not a module that runs in the forward")
    cut_module = out.get_submodule(cut)
    feats, labels, dummy = _retain_features(out, cut_module, train_set, classes, dev)
    check_feats, _, _ = _retain_features(out, cut_module, _Probe(x4), [], dev)
    _check_splice(out, cut_module, check_feats, x4)
    top = _top_modules(out, order, cut)
    kept = _reset(out, top, config.seed)
    losses = _train_top(out, top, cut_module, feats, labels, dummy, config, progress)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out = out.to(home).eval()
    report = EraseReport(
        method=config.method,
        config=config.to_dict(),
        seconds=time.perf_counter() - t0,
        retain_samples=len(labels),
        boundary=cut,
        reset_modules=tuple(n for n in top if n not in kept),
        epoch_losses=tuple(losses),
        device=str(dev),
        extras={"forget": classes, "not_reset": kept},
    )
    return out, report


class _Probe(Dataset[tuple[torch.Tensor, int]]):
    """A few inputs with a dummy label, to capture their features at the cut."""

    def __init__(self, x: torch.Tensor) -> None:
        self._x = x.cpu()

    def __len__(self) -> int:
        return len(self._x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._x[i], 0
