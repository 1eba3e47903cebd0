"""One training round that learns the filters of every class at once (DESIGN §3)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lethe._io import atomic_write_bytes
from lethe.errors import ConfigError, TargetSelectionError, TrainingError
from lethe.filters._apply import ScaleInjector
from lethe.filters._bank import FilterBank

__all__ = [
    "FORGET_LOSSES", "TrainConfig", "class_report", "knob_hints", "sample_forget_sets", "train",
]  # fmt: skip

_CKPT_FORMAT = "lethe/filter-train-checkpoint/v1"
#: The forget terms ``TrainConfig.forget_loss`` names (the first is the default).
FORGET_LOSSES = ("capped-mean", "per-sample-inverse", "margin")
_log = logging.getLogger("lethe.filters")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of filter training; defaults follow what the prototype measured.

    Loss = ``retain_weight`` * CE(retain) + ``forget_weight`` * forget term
    + ``sparsity_weight`` * mean(1 - alpha). The forget term (``forget_loss``) is
    ``"capped-mean"`` 1 / mean(min(CE(forget), cap)) (the default), ``"per-sample-inverse"``
    mean(1 / (min(CE, cap) + 0.1)) or ``"margin"`` mean(relu(z_y - max_{j != y} z_j +
    ``forget_margin``)). Each sample gets a random set of 1..``max_set_size`` classes (size k
    drawn with probability proportional to k ** ``set_size_power``): forget samples' sets
    contain their own class, retain samples' sets exclude it, so that products of rows
    (multi-class deletions) compose. A retain sample whose set has k classes weighs
    1 + ``retain_set_weight`` * (k - 1) in CE(retain).
    alpha = sigmoid(theta), theta starts at ``theta_init`` (alpha ~ 0.95), Adam with ``lr``.
    """

    epochs: int = 8
    lr: float = 0.3
    batch_size: int = 128
    max_set_size: int = 5
    forget_fraction: float = 0.5
    retain_weight: float = 1.0
    forget_weight: float = 1.0
    sparsity_weight: float = 0.1
    forget_ce_cap: float = 5.0
    theta_init: float = 3.0
    seed: int = 0
    forget_loss: str = "capped-mean"
    forget_margin: float = 1.0
    retain_set_weight: float = 0.0
    set_size_power: float = 0.0

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"filter training: {msg}")

        if self.epochs < 1:
            bad(f"epochs must be >= 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad(f"lr must be a positive number, got {self.lr}")
        if self.batch_size < 2:
            bad(
                "batch_size must be >= 2 (forget and retain samples share a batch), "
                f"got {self.batch_size}"
            )
        if self.max_set_size < 1:
            bad(f"max_set_size must be >= 1, got {self.max_set_size}")
        if not 0.0 < self.forget_fraction < 1.0:
            bad(f"forget_fraction must be strictly between 0 and 1, got {self.forget_fraction}")
        if self.forget_loss not in FORGET_LOSSES:
            bad(f"forget_loss must be one of {', '.join(FORGET_LOSSES)}, got {self.forget_loss!r}")
        if not self.forget_margin > 0 or not math.isfinite(self.forget_margin):
            bad(f"forget_margin must be a positive number, got {self.forget_margin}")
        if not math.isfinite(self.set_size_power):
            bad(f"set_size_power must be finite, got {self.set_size_power}")
        for name in ("retain_weight", "forget_weight", "sparsity_weight", "retain_set_weight"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                bad(f"{name} must be a non-negative number, got {v}")
        if not self.forget_ce_cap > 0:
            bad(f"forget_ce_cap must be positive, got {self.forget_ce_cap}")
        if not math.isfinite(self.theta_init):
            bad("theta_init must be finite")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown filter-training options {unknown}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))


def sample_forget_sets(
    labels: torch.Tensor, num_classes: int, cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random class sets per sample: (membership mask [B, N_c] float, is-forget [B] bool).

    A forget sample's set holds its own class plus up to k-1 others; a retain sample's set
    holds k classes, never its own.
    """
    b = len(labels)
    k_max = min(cfg.max_set_size, num_classes - 1)
    if cfg.set_size_power == 0:
        k = torch.randint(1, k_max + 1, (b,), generator=gen)
    else:
        p = torch.arange(1, k_max + 1, dtype=torch.float64) ** cfg.set_size_power
        k = torch.multinomial(p, b, replacement=True, generator=gen) + 1
    is_forget = torch.rand(b, generator=gen) < cfg.forget_fraction
    r = torch.rand(b, num_classes, generator=gen)
    rows = torch.arange(b)
    # Own class first for forget samples, last (never picked, k <= N_c - 1) for retain ones.
    r[rows, labels] = torch.where(is_forget, -1.0, 2.0)
    ranks = r.argsort(dim=1).argsort(dim=1)
    member = (ranks < k.view(-1, 1)).to(torch.float32)
    return member, is_forget


def _as_dataset(data: Any) -> Dataset[Any]:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if len(x) != len(y):
            raise TrainingError(f"train_data has {len(x)} images but {len(y)} labels")
        return TensorDataset(x, y.long())
    raise TrainingError(
        "train_data must be a torch Dataset of (image, label) or a tuple (images, labels)"
    )


def _epoch_stats(
    sums: torch.Tensor, batches: int, n_forget: int, n_retain: int
) -> dict[str, float]:
    """Mean loss and forget / retain accuracy so far, from the device-side running sums."""
    loss, forget_hit, retain_hit = (float(v) for v in sums.tolist())
    return {
        "loss": loss / max(batches, 1),
        "forget_acc": forget_hit / max(n_forget, 1),
        "retain_acc": retain_hit / max(n_retain, 1),
    }


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _save_checkpoint(
    path: Path,
    *,
    epoch_done: int,
    cfg: TrainConfig,
    bank: FilterBank,
    theta: Mapping[str, torch.Tensor],
    opt: torch.optim.Optimizer,
) -> None:
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for name, p in theta.items():
        tensors[f"theta/{name}"] = p.detach().cpu().contiguous()
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                tensors[f"adam.{key}/{name}"] = st[key].detach().cpu().contiguous()
        if "step" in st:
            tensors[f"adam.step/{name}"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(
                1
            )
    meta = {
        "format": _CKPT_FORMAT,
        "epoch_done": str(epoch_done),
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "bank_digest": bank.digest,
    }
    atomic_write_bytes(path, bytes(save(tensors, metadata=meta)))


def _load_checkpoint(
    path: Path,
    *,
    cfg: TrainConfig,
    bank: FilterBank,
    theta: Mapping[str, torch.nn.Parameter],
    opt: torch.optim.Optimizer,
) -> int:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise TrainingError(f"{path}: unreadable training checkpoint ({exc})") from exc
    if meta.get("format") != _CKPT_FORMAT:
        raise TrainingError(f"{path}: not a Lethe filter-training checkpoint")
    if json.loads(meta["config"]) != cfg.to_dict():
        raise TrainingError(
            f"{path}: checkpoint was written with another training config; resume with the "
            "same options or delete the checkpoint"
        )
    if meta.get("bank_digest") != bank.digest:
        raise TrainingError(f"{path}: checkpoint belongs to another filter bank")
    with torch.no_grad():
        for name, p in theta.items():
            p.copy_(tensors[f"theta/{name}"].to(p.device))
            if f"adam.step/{name}" in tensors:
                opt.state[p] = {
                    "step": tensors[f"adam.step/{name}"].reshape(()).clone(),
                    "exp_avg": tensors[f"adam.exp_avg/{name}"].to(p.device),
                    "exp_avg_sq": tensors[f"adam.exp_avg_sq/{name}"].to(p.device),
                }
    return int(meta["epoch_done"])


@dataclass
class _Run:
    """The state one training round carries from step to step."""

    cfg: TrainConfig
    theta: dict[str, torch.nn.Parameter]
    opt: torch.optim.Optimizer
    injector: ScaleInjector
    dev: torch.device
    n_classes: int
    distributed: bool
    world: int
    check_calls: bool = True


def train(
    model: nn.Module,
    bank: FilterBank,
    train_data: Any,
    *,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    **config: Any,
) -> FilterBank:
    """Learn every class's filter rows in one round; returns a new :class:`FilterBank`.

    The backbone stays frozen (no weight gets a gradient) and in eval mode (BatchNorm uses its
    running statistics); only the filter logits train. ``config`` holds
    :class:`TrainConfig` fields. With ``checkpoint``, progress is saved after every epoch and
    (``resume=True``) picked up again; a run is deterministic on CPU for a given seed.
    The model runs where its parameters are (move it to CUDA first to train there). Each
    epoch logs one line (logger ``lethe.filters``, INFO) with the numbers of the progress bar.
    """
    cfg = TrainConfig.from_mapping(config)
    bank.check_compatible(model)
    dataset = _as_dataset(train_data)
    try:
        n_samples = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        n_samples = -1
    if n_samples == 0:
        raise TrainingError("train_data is empty")
    run, start_epoch = _start(model, bank, cfg, checkpoint, resume)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    was_training = model.training
    grad_flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for epoch in range(start_epoch, cfg.epochs):
            stats = _epoch(run, model, dataset, epoch, progress=progress)
            _log.info(
                "filters epoch %d/%d: loss %.3f, forget acc %.3f, retain acc %.3f",
                epoch + 1, cfg.epochs, stats["loss"], stats["forget_acc"], stats["retain_acc"],
            )  # fmt: skip
            # Checked once per epoch (a per-step check would wait for the device every step);
            # raised before the checkpoint, so a diverged state is never saved.
            if not math.isfinite(stats["loss"]):
                raise TrainingError("filter training diverged (non-finite loss); lower lr")
            if ckpt is not None and (not run.distributed or torch.distributed.get_rank() == 0):
                _save_checkpoint(
                    ckpt, epoch_done=epoch + 1, cfg=cfg, bank=bank, theta=run.theta, opt=run.opt
                )
            if on_epoch is not None:
                on_epoch(epoch, dict(stats))
    finally:
        run.injector.remove()
        for n, p in model.named_parameters():
            p.requires_grad_(grad_flags[n])
        model.train(was_training)

    with torch.no_grad():
        alpha = {n: torch.sigmoid(th).detach().cpu() for n, th in run.theta.items()}
    return bank.with_alpha(alpha, train_config=cfg.to_dict())


def _start(
    model: nn.Module,
    bank: FilterBank,
    cfg: TrainConfig,
    checkpoint: str | Path | None,
    resume: bool,
) -> tuple[_Run, int]:
    """The filter logits (from the bank, or the resume checkpoint), their optimiser and hooks."""
    dev = _device(model)
    theta: dict[str, torch.nn.Parameter] = {}
    for name, a in bank.alpha.items():
        t = torch.logit(a.clamp(1e-6, 1 - 1e-6)).clamp(max=cfg.theta_init)
        theta[name] = torch.nn.Parameter(t.to(dev))
    opt = torch.optim.Adam(theta.values(), lr=cfg.lr)
    start_epoch = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists() and resume:
        start_epoch = _load_checkpoint(ckpt, cfg=cfg, bank=bank, theta=theta, opt=opt)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if distributed else 1
    injector = ScaleInjector(model, {t.name: t.kind for t in bank.targets})
    run = _Run(cfg, theta, opt, injector, dev, bank.num_classes, distributed, world)
    return run, start_epoch


def _loader(run: _Run, dataset: Dataset[Any], epoch: int, gen: torch.Generator) -> DataLoader[Any]:
    cfg = run.cfg
    if run.distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler: Any = DistributedSampler(dataset, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=gen)


def _epoch(
    run: _Run, model: nn.Module, dataset: Dataset[Any], epoch: int, *, progress: bool
) -> dict[str, float]:
    """One pass over the data; returns the epoch's mean loss and forget / retain accuracy."""
    from tqdm.auto import tqdm

    cfg = run.cfg
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    loader = _loader(run, dataset, epoch, gen)
    # Running sums stay on the device (loss, forget hits, retain hits); the CPU knows the
    # sample counts from the masks it drew. The step never waits for the device except to
    # refresh the progress bar, which matters on a GPU, where these small models are bound by
    # launches and synchronisations, not arithmetic.
    sums = torch.zeros(3, device=run.dev)
    n_forget_total = n_retain_total = batches = 0
    bar = tqdm(
        loader,
        desc=f"filters {epoch + 1}/{cfg.epochs}",
        disable=None if progress else True,
        leave=False,
    )
    for xb, yb in bar:
        n_forget, n_retain = _step(run, model, xb, yb.long(), gen, sums)
        n_forget_total += n_forget
        n_retain_total += n_retain
        batches += 1
        if not bar.disable and (batches % 20 == 1 or batches == bar.total):
            stats = _epoch_stats(sums, batches, n_forget_total, n_retain_total)
            bar.set_postfix(
                loss=f"{stats['loss']:.3f}",
                forget=f"{stats['forget_acc']:.3f}",
                retain=f"{stats['retain_acc']:.3f}",
            )
    bar.close()
    return _epoch_stats(sums, batches, n_forget_total, n_retain_total)


def _step(
    run: _Run,
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    gen: torch.Generator,
    sums: torch.Tensor,
) -> tuple[int, int]:
    """One optimiser step on a batch; adds (loss, forget hits, retain hits) to ``sums``."""
    member, is_forget = sample_forget_sets(yb, run.n_classes, run.cfg, gen)
    n_forget = int(is_forget.sum())
    n_retain = len(yb) - n_forget
    dev = run.dev
    xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
    member, forget_mask = member.to(dev), is_forget.to(dev)
    # Product of the selected rows == exp(sum of log rows); logsigmoid is stable.
    run.injector.set_scales(
        {n: torch.exp(member @ F.logsigmoid(th)) for n, th in run.theta.items()}
    )
    if run.check_calls:
        run.injector.reset_calls()
    logits = model(xb)
    if run.check_calls:
        run.check_calls = False
        never = run.injector.uncalled()
        if never:
            raise TargetSelectionError(
                f"layers {never} are never called through their forward, so a "
                "filter cannot act on them; exclude them from the targets"
            )
    loss = _loss(run, logits.float(), yb, member, forget_mask, n_forget, n_retain)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if run.distributed:
        for th in run.theta.values():
            if th.grad is not None:
                torch.distributed.all_reduce(th.grad)
                th.grad /= run.world
    run.opt.step()
    with torch.no_grad():
        hit = logits.argmax(1) == yb
        sums += torch.stack(
            [
                loss.detach(),
                (hit & forget_mask).sum().float(),
                (hit & ~forget_mask).sum().float(),
            ]
        )
    return n_forget, n_retain


def _loss(
    run: _Run,
    logits: torch.Tensor,
    yb: torch.Tensor,
    member: torch.Tensor,
    forget_mask: torch.Tensor,
    n_forget: int,
    n_retain: int,
) -> torch.Tensor:
    """λ0·CE_retain + λ1·forget term + λ2·mean(1 − α) (DESIGN §3; TrainConfig says which)."""
    cfg = run.cfg
    ce = F.cross_entropy(logits, yb, reduction="none")
    zero = ce.new_zeros(())
    loss = zero
    if n_retain:
        retain = ce
        if cfg.retain_set_weight:
            retain = ce * (1 + cfg.retain_set_weight * (member.sum(1) - 1))
        retain_ce = torch.where(forget_mask, zero, retain).sum() / n_retain
        loss = loss + cfg.retain_weight * retain_ce
    if n_forget:
        loss = loss + _forget_term(cfg, logits, yb, ce, forget_mask, n_forget)
    if cfg.sparsity_weight:
        alphas = torch.cat([torch.sigmoid(th).flatten() for th in run.theta.values()])
        loss = loss + cfg.sparsity_weight * (1 - alphas).mean()
    return loss


def _forget_term(
    cfg: TrainConfig,
    logits: torch.Tensor,
    yb: torch.Tensor,
    ce: torch.Tensor,
    forget_mask: torch.Tensor,
    n_forget: int,
) -> torch.Tensor:
    """``forget_weight`` x the forget samples' term, lower when they are forgotten."""
    zero = ce.new_zeros(())
    if cfg.forget_loss == "margin":
        # Hinge on the true logit's lead over the best other logit: zero once every forget
        # sample is misclassified by at least the margin (no push beyond it).
        true = logits.gather(1, yb.view(-1, 1)).squeeze(1)
        own = F.one_hot(yb, logits.shape[1]).bool()
        other = logits.masked_fill(own, float("-inf")).amax(1)
        per = F.relu(true - other + cfg.forget_margin)
        return cfg.forget_weight * torch.where(forget_mask, per, zero).sum() / n_forget
    capped = ce.clamp(max=cfg.forget_ce_cap)
    if cfg.forget_loss == "per-sample-inverse":
        # Each sample's own 1 / CE: the gradient goes to the samples still recognised.
        per = 1.0 / (capped + 0.1)
        return cfg.forget_weight * torch.where(forget_mask, per, zero).sum() / n_forget
    forget_ce = torch.where(forget_mask, capped, zero).sum() / n_forget
    return cfg.forget_weight / (forget_ce + 1e-6)


@torch.no_grad()
def class_report(
    model: nn.Module,
    bank: FilterBank,
    data: TensorDataset,
    *,
    max_samples: int = 2000,
    batch_size: int = 512,
) -> list[dict[str, Any]]:
    """What the trained filters reach, class by class, on ``data`` (preprocessed, labelled):
    forgetting class c alone, the accuracy on c (``forget_acc``, want ~0) and on every other
    class (``retain_acc``, want ~ the base model's). At most ``max_samples`` (seeded subset)."""
    from lethe.filters._apply import filtered

    x, y = data.tensors[0], data.tensors[1].long()
    if len(y) > max_samples:
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:max_samples]
        x, y = x[idx], y[idx]
    dev = _device(model)
    out: list[dict[str, Any]] = []
    for c in range(bank.num_classes):
        f = filtered(model, bank, [c]).eval()
        pred = torch.cat(
            [f(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
        )
        hit, mine = pred == y, y == c
        out.append(
            {
                "class": bank.class_names[c],
                "forget_acc": float(hit[mine].double().mean()) if mine.any() else None,
                "retain_acc": float(hit[~mine].double().mean()) if (~mine).any() else None,
            }
        )
    return out


#: What usually helps when a policy check fails, by the metric its reason names.
_KNOBS = (
    ("retain", "train the filters longer (`lethe filters train --epochs 16`, Python "
     "config={'epochs': 16}) or on more training data: the retain drop usually shrinks"),
    ("forget", "more filter epochs (--epochs) or a larger --lr; check `lethe filters train`'s "
     "per-class report for the class"),
    ("parity", "the ONNX export differs from torch: re-register the model (fresh base export)"),
    ("relearn", "run phase 2 (`lethe erase`): masking leaves the class's weights intact"),
    ("depth", "run phase 2 (`lethe erase`): masking leaves the class's weights intact"),
    ("mia", "run phase 2 (`lethe erase`), or train the filters with more training data"),
    ("zrf", "more filter epochs (--epochs), or phase 2 (`lethe erase`)"),
)  # fmt: skip


def knob_hints(reasons: Any) -> list[str]:
    """For each policy-failure reason (text), the knob that usually helps (deduplicated)."""
    hints: list[str] = []
    for reason in reasons:
        text = str(reason).lower()
        for key, hint in _KNOBS:
            if key in text and hint not in hints:
                hints.append(hint)
                break
    return hints
