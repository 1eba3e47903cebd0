"""Class-unlearning baselines the benchmarks compare Lethe against, written from the papers.

Every function takes a trained classifier (a timm model or a plain torch module, on CPU or
CUDA), works on a deep copy on the model's own device and returns that copy in eval mode; the
input model is left bit-identical and in its original train/eval mode. Data arguments are
``TensorDataset``\\ s of ``(float NCHW images, already preprocessed; int64 labels)``. Given a
seed, every function is deterministic on CPU.

* :func:`head_mask` - a trivial reference: the forgotten classes' rows of the classifier head
  are zeroed and their biases pushed to -1e4, so they can never win the arg-max.
* :func:`retrain` - the gold standard of exact unlearning: the same architecture trained from
  scratch on the retained data only (e.g. Bourtoule et al., "Machine Unlearning", IEEE S&P
  2021, treat retraining as the definition of exact unlearning).
* :func:`finetune` - fine-tuning on the retained data only, relying on catastrophic forgetting
  of the forgotten classes (the "Fine-tune" baseline of Golatkar, Achille, Soatto, "Eternal
  Sunshine of the Spotless Net: Selective Forgetting in Deep Networks", CVPR 2020).
* :func:`neggrad_plus` - NegGrad+ as defined by Kurmanji, Triantafillou, Hayes,
  Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023 (the SCRUB paper):
  gradient descent on ``alpha * CE(retain) - (1 - alpha) * CE(forget)``.
* :func:`ssd` - Selective Synaptic Dampening, Foster, Brintrup, Lin, "Fast Machine
  Unlearning Without Retraining Through Selective Synaptic Dampening", AAAI 2024: parameters
  far more important (diagonal Fisher information) to the forget set than to the whole
  training set are scaled down.

:func:`per_class_seconds` times one call, for the benchmarks' cost columns.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lethe.models import fit

__all__ = [
    "finetune",
    "head_mask",
    "neggrad_plus",
    "per_class_seconds",
    "retrain",
    "ssd",
]

T = TypeVar("T")

# Far below any logit a trained classifier produces, yet finite in float16 (max 65504), so a
# masked class never wins the arg-max and softmax stays free of NaNs.
_MASKED_BIAS = -1e4


# --------------------------------------------------------------------------------- helpers


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _copy(model: nn.Module) -> nn.Module:
    """A deep copy without the input's gradients (they would only cost memory and could leak
    into the copy's first optimiser step)."""
    out = copy.deepcopy(model)
    for p in out.parameters():
        p.grad = None
    return out


def _forget_mask(train: TensorDataset, forget: Sequence[int]) -> torch.Tensor:
    _, y = _tensors(train)
    classes = torch.tensor(sorted({int(c) for c in forget}), dtype=y.dtype, device=y.device)
    return torch.isin(y, classes)


def _tensors(data: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    if len(data.tensors) != 2:
        raise ValueError(
            f"expected a TensorDataset of (images, labels), got {len(data.tensors)} tensors"
        )
    x, y = data.tensors
    return x, y


def _split(train: TensorDataset, forget: Sequence[int]) -> tuple[TensorDataset, TensorDataset]:
    """(retain, forget) subsets of ``train`` by label."""
    x, y = _tensors(train)
    m = _forget_mask(train, forget)
    return TensorDataset(x[~m], y[~m]), TensorDataset(x[m], y[m])


def _need(data: TensorDataset, what: str, forget: Sequence[int]) -> None:
    if len(data) == 0:
        raise ValueError(f"no {what} samples in the training data (forget={list(forget)})")


def _loader(data: TensorDataset, batch_size: int, gen: torch.Generator) -> DataLoader[Any]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # A local generator keeps the shuffling reproducible without touching the global RNG.
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen)


def _cycle(loader: DataLoader[Any]) -> Iterator[Any]:
    # Not itertools.cycle: that would replay the first pass's batches (same order, all kept
    # in memory) instead of reshuffling each pass.
    while True:
        yield from loader


def _head_of(model: nn.Module) -> nn.Linear:
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if not isinstance(head, nn.Linear):
            raise ValueError(
                f"{type(model).__name__}.get_classifier() returned {type(head).__name__}, "
                "not an nn.Linear; pass head= explicitly"
            )
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear to use as classifier head")
    return linears[-1]


# ------------------------------------------------------------------------------- baselines


def head_mask(
    model: nn.Module, forget: Sequence[int], *, head: nn.Linear | None = None
) -> nn.Module:
    """A copy whose classifier head can no longer predict the ``forget`` classes.

    The head's weight rows of the forgotten classes are zeroed and their biases set to
    -1e4; every other parameter, and so every feature before the head, is unchanged. This
    is the cheapest possible "unlearning" (the features still encode the classes), a lower
    bound the other methods must beat on anything but forget accuracy.

    ``head`` defaults to ``model.get_classifier()`` (timm models), else the last
    ``nn.Linear`` in ``model.modules()``; when given it must be a sub-module of ``model``.
    Raises ``ValueError`` when the head has no bias (there is nothing to push down) or a
    class index is out of range.
    """
    head = _head_of(model) if head is None else head
    # Locate the head by name so the same layer is edited in the copy.
    name = next((n for n, m in model.named_modules() if m is head), None)
    if name is None:
        raise ValueError("head is not a sub-module of model")
    if head.bias is None:
        raise ValueError(
            f"the classifier head ({name or type(head).__name__}) has no bias, so masked "
            "classes cannot be pushed below the others; head_mask needs a head with a bias"
        )
    classes = sorted({int(c) for c in forget})
    bad = [c for c in classes if not 0 <= c < head.out_features]
    if bad:
        raise ValueError(f"forget classes {bad} outside the head's {head.out_features} outputs")
    out = _copy(model)
    new_head = out.get_submodule(name)
    assert isinstance(new_head, nn.Linear) and new_head.bias is not None
    idx = torch.tensor(classes, dtype=torch.long, device=new_head.weight.device)
    with torch.no_grad():
        new_head.weight[idx] = 0
        new_head.bias[idx] = _MASKED_BIAS
    return out.eval()


def retrain(
    make_model: Callable[[], nn.Module],
    train: TensorDataset,
    forget: Sequence[int],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
    **fit_kwargs: Any,
) -> nn.Module:
    """The gold standard: a fresh model trained from scratch without the ``forget`` classes.

    ``make_model()`` builds the untrained model (on the device it should train on); it runs
    with the global CPU RNG seeded from ``seed`` inside ``torch.random.fork_rng``, so the
    initialisation is reproducible and the caller's RNG state is left as it was. Training is
    :func:`lethe.models.fit` (AdamW, cosine schedule) on the samples whose label is not in
    ``forget``; ``fit_kwargs`` go to it unchanged (``weight_decay``, ``augment_pad``, ...).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    fit_kwargs.setdefault("desc", "retrain")
    return _fit_on_retain(
        model, train, forget, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        progress=progress, **fit_kwargs,
    )  # fmt: skip


def _fit_on_retain(
    model: nn.Module, train: TensorDataset, forget: Sequence[int], **fit_kwargs: Any
) -> nn.Module:
    """:func:`lethe.models.fit` of ``model`` (in place) on the samples not in ``forget``."""
    retain, _ = _split(train, forget)
    _need(retain, "retain", forget)
    fit(model, retain, **fit_kwargs)
    return model.eval()


def finetune(
    model: nn.Module,
    train: TensorDataset,
    forget: Sequence[int],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """A copy fine-tuned on the retained data only (catastrophic-forgetting baseline).

    Training is :func:`lethe.models.fit` (AdamW, its default weight decay, cosine schedule,
    train mode so BatchNorm statistics adapt to the retain distribution).
    """
    return _fit_on_retain(
        _copy(model), train, forget, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        progress=progress, desc="finetune",
    )  # fmt: skip


def neggrad_plus(
    model: nn.Module,
    train: TensorDataset,
    forget: Sequence[int],
    *,
    epochs: int,
    lr: float,
    alpha: float = 0.99,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
    forget_ce_cap: float | None = None,
) -> nn.Module:
    """NegGrad+ (Kurmanji et al., NeurIPS 2023): descend on retain CE, ascend on forget CE.

    Each step draws one retain batch and one forget batch (the smaller forget set is
    re-shuffled and cycled) and minimises ``alpha * CE(retain) - (1 - alpha) * CE(forget)``;
    ``alpha`` weights the retain term. One epoch is one pass over the retain set.

    The optimiser is SGD with momentum 0.9 and no weight decay at a constant ``lr`` (an SGD
    learning rate, typically 1e-3..1e-2). ``forget_ce_cap`` clamps the forget CE at that
    value: once a forget batch is that badly classified its term stops contributing
    gradient, which keeps the unbounded ascent from blowing up the weights (``None``: no cap).

    The model stays in eval mode during the updates (gradients are still computed): a small
    forget batch, a single class, gives meaningless BatchNorm batch statistics, and updating
    the running statistics from it would damage the retained classes for reasons unrelated to
    the method; eval mode also keeps dropout out of the comparison.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    retain_ds, forget_ds = _split(train, forget)
    _need(retain_ds, "retain", forget)
    _need(forget_ds, "forget", forget)
    from tqdm.auto import tqdm

    out = _copy(model).eval()
    dev = _device_of(out)
    gen = torch.Generator().manual_seed(seed)
    retain_loader = _loader(retain_ds, batch_size, gen)
    forget_batches = _cycle(_loader(forget_ds, batch_size, gen))
    opt = torch.optim.SGD([p for p in out.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    bar = tqdm(
        total=epochs * len(retain_loader),
        desc="neggrad+",
        disable=None if progress else True,
        leave=False,
    )
    try:
        for epoch in range(epochs):
            for xr, yr in retain_loader:
                xf, yf = next(forget_batches)
                ce_r = F.cross_entropy(out(xr.to(dev)), yr.to(dev))
                ce_f = F.cross_entropy(out(xf.to(dev)), yf.to(dev))
                if forget_ce_cap is not None:
                    ce_f = ce_f.clamp(max=forget_ce_cap)
                loss = alpha * ce_r - (1.0 - alpha) * ce_f
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                bar.update(1)
                if progress:  # float() waits for the device; pay that only when shown
                    bar.set_postfix(
                        epoch=epoch + 1, ce_r=f"{float(ce_r):.3f}", ce_f=f"{float(ce_f):.3f}"
                    )
    finally:
        bar.close()
    opt.zero_grad(set_to_none=True)
    return out.eval()


def _fisher_diagonal(
    model: nn.Module,
    params: list[nn.Parameter],
    data: TensorDataset,
    *,
    batch_size: int,
    gen: torch.Generator,
    bar: Any,
) -> list[torch.Tensor]:
    """Mean over mini-batches of the squared gradient of the mean batch CE, per parameter.

    The exact diagonal Fisher needs one gradient per sample; like the SSD authors' reference
    implementation we square the mini-batch gradient instead, which is far cheaper and, as
    forget and full-data importances are estimated the same way, only their ratio matters.
    """
    dev = _device_of(model)
    acc = [torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32)) for p in params]
    # Shuffled batches: a class-sorted dataset would otherwise give single-class batches,
    # whose gradients are much larger than those of the mixed batches the paper assumes.
    loader = _loader(data, batch_size, gen)
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb.to(dev)), yb.to(dev))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for a, g in zip(acc, grads, strict=True):
            if g is not None:  # unused parameters have zero importance
                a.add_(g.detach().to(a.dtype).square())
        bar.update(1)
    for a in acc:
        a.div_(len(loader))
    return acc


def ssd(
    model: nn.Module,
    train: TensorDataset,
    forget: Sequence[int],
    *,
    dampening: float = 1.0,
    selection: float = 10.0,
    batch_size: int = 128,
    max_samples: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Selective Synaptic Dampening (Foster, Brintrup, Lin, AAAI 2024); no training.

    The diagonal Fisher importance ``[]_D`` of every floating parameter is estimated on the
    whole training set ``train`` (forget classes included, as in the paper) and ``[]_Df`` on
    its forget-class samples, with the model in eval mode. Every parameter element with
    ``[]_Df > selection * []_D`` (α, default 10) is multiplied by
    ``beta = min(dampening * []_D / []_Df, 1)`` (λ, default 1); all others are unchanged, as
    are buffers (BatchNorm running statistics). ``max_samples`` estimates ``[]_D`` on that
    many samples of ``train`` drawn with ``seed`` (the forget set is always used whole), to
    bound the cost on large data sets. ``seed`` also fixes the batch shuffling.
    """
    if dampening < 0 or selection < 0:
        raise ValueError(f"dampening and selection must be >= 0, got {dampening}, {selection}")
    _, forget_ds = _split(train, forget)
    _need(forget_ds, "forget", forget)
    gen = torch.Generator().manual_seed(seed)
    full = train
    if max_samples is not None and max_samples < len(train):
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        x, y = _tensors(train)
        keep = torch.randperm(len(train), generator=gen)[:max_samples]
        full = TensorDataset(x[keep], y[keep])
    from tqdm.auto import tqdm

    out = _copy(model).eval()
    params = [p for p in out.parameters() if p.is_floating_point()]
    # Frozen parameters are dampened too (the method is about importance, not trainability),
    # so every one needs a gradient while the importances are estimated.
    was_frozen = [not p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    n_batches = -(-len(full) // batch_size) + -(-len(forget_ds) // batch_size)
    bar = tqdm(total=n_batches, desc="ssd", disable=None if progress else True, leave=False)
    try:
        imp_d = _fisher_diagonal(out, params, full, batch_size=batch_size, gen=gen, bar=bar)
        imp_f = _fisher_diagonal(out, params, forget_ds, batch_size=batch_size, gen=gen, bar=bar)
    finally:
        bar.close()
        for p, frozen in zip(params, was_frozen, strict=True):
            p.requires_grad_(not frozen)
    with torch.no_grad():
        for p, d, f in zip(params, imp_d, imp_f, strict=True):
            selected = f > selection * d
            # f > selection * d >= 0 wherever selected, so the clamp only guards the
            # unselected elements, whose beta is discarded.
            beta = (dampening * d / f.clamp_min(torch.finfo(f.dtype).tiny)).clamp(max=1.0)
            p.copy_(torch.where(selected, p * beta.to(p.dtype), p))
    return out.eval()


def _sync_cuda() -> None:
    # is_initialized, not is_available: a CPU-only run must not pay for creating a context.
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()


def per_class_seconds(fn: Callable[[], T]) -> tuple[T, float]:
    """``(fn(), wall-clock seconds it took)``, timed with ``time.perf_counter``.

    Used to report each baseline's cost per forgotten class. CUDA kernels run asynchronously,
    so when CUDA is in use the device is synchronised before and after: otherwise queued work
    would be charged to whatever is timed next.
    """
    _sync_cuda()
    start = time.perf_counter()
    result = fn()
    _sync_cuda()  # fn may be what initialised CUDA, hence the second check
    return result, time.perf_counter() - start
