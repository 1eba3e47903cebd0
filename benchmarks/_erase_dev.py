"""Lab-only erase recipes (issue 13), written against lethe.filters._erase's internals so that
the library (and the test fixture cache keyed on it) changes once, when a recipe is adopted.

Recipes (``spec["method"]``):
- ``retrain-top``: the library's default (re-init last block + head, CE on cached retain
  features).
- ``resist``: ``retrain-top`` plus a relearn-resistant term (tamper-resistant style,
  first-order): every step an adversary takes ``adv_steps`` sign-gradient steps (Adam's first
  steps) of ``adv_lr`` on the CE of a batch of forgotten-class training images, moving the top
  (``adv_scope="top"``, on cached features) or every parameter (``"all"``, full forward); the
  probability of the true (forgotten) class at the adapted weights is penalised,
  ``-log(1 - p)``, and its gradient (first-order) is added, times ``resist``, to the top's.
- ``saliency``: before ``retrain-top``, every channel below the cut whose filter scale
  ``s = prod alpha[c]`` is below ``threshold`` gets a fresh (seeded) direction at the masked
  magnitude: row <- s * fresh row (the folded function is kept, the class-specific weight
  direction is gone).
- ``rows``: after ``retrain-top``, the forgotten classes' head rows are re-initialised
  (``rows="fresh"``) or zeroed (``rows="zero"``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lethe.filters import EraseConfig
from lethe.filters import _erase as E

__all__ = ["erase_dev"]


@contextmanager
def _splice(cut_module: nn.Module, holder: list[torch.Tensor | None]) -> Iterator[None]:
    """The cut module gets ``holder[0]`` instead of its input (pass-through when None)."""

    def pre(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return None if holder[0] is None else (holder[0], *args[1:])

    handle = cut_module.register_forward_pre_hook(pre)
    try:
        yield
    finally:
        handle.remove()


def _forget_images(
    dataset: Dataset[Any], forget: Sequence[int], n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    ft = torch.tensor(sorted(forget))
    for xb, yb in DataLoader(dataset, batch_size=512, shuffle=False):
        yb = torch.as_tensor(yb).long()
        keep = torch.isin(yb, ft)
        xs.append(torch.as_tensor(xb)[keep])
        ys.append(yb[keep])
    x, y = torch.cat(xs), torch.cat(ys)
    g = torch.Generator().manual_seed(seed * 7919 + 5)
    idx = torch.randperm(len(y), generator=g)[:n]
    return x[idx], y[idx]


def _penalty_grads(
    model: nn.Module,
    adv_params: Sequence[nn.Parameter],
    top_params: Sequence[nn.Parameter],
    run: Callable[[], torch.Tensor],
    labels: torch.Tensor,
    steps: int,
    lr: float,
) -> tuple[list[torch.Tensor | None], float]:
    """First-order relearn-resistance gradient: adversary steps, then d(-log(1-p))/d(top)."""
    saved = [p.detach().clone() for p in adv_params]
    was = [m.training for m in model.modules()]
    model.eval()
    try:
        for _ in range(steps):
            loss = F.cross_entropy(run().float(), labels)
            grads = torch.autograd.grad(loss, adv_params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(adv_params, grads, strict=True):
                    if g is not None:
                        p.sub_(lr * torch.sign(g))
        prob = F.softmax(run().float(), dim=1).gather(1, labels[:, None]).squeeze(1)
        pen = -torch.log1p(-prob.clamp(max=1 - 1e-6)).mean()
        out = torch.autograd.grad(pen, top_params, allow_unused=True)
    finally:
        with torch.no_grad():
            for p, s in zip(adv_params, saved, strict=True):
                p.copy_(s)
        for m, w in zip(model.modules(), was, strict=True):
            m.train(w)
    return list(out), float(pen.detach())


def _train(
    model: nn.Module,
    top: Sequence[str],
    cut_module: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    dummy: torch.Tensor,
    cfg: EraseConfig,
    spec: Mapping[str, Any],
    resist: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> dict[str, list[float]]:
    """retrain-top's loop, with the optional relearn-resistance term."""
    model.eval()
    params: list[nn.Parameter] = []
    scope = spec.get("adv_scope", "top")
    for p in model.parameters():
        p.requires_grad_(resist is not None and scope == "all")
    for name in top:
        mod = model.get_submodule(name)
        mod.train()
        for p in mod.parameters(recurse=False):
            p.requires_grad_(True)
            params.append(p)
    adv_params = list(model.parameters()) if scope == "all" else params
    n = len(labels)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17)
    holder: list[torch.Tensor | None] = [feats[:1]]
    log: dict[str, list[float]] = {"loss": [], "penalty": []}
    lam = float(spec.get("resist", 1.0))
    bs_f = int(spec.get("adv_batch", 8))
    try:
        with _splice(cut_module, holder):
            for _ in range(cfg.epochs):
                perm = torch.randperm(n, generator=gen).to(feats.device)
                tot, pens = 0.0, []
                for start in range(0, n, cfg.batch_size):
                    idx = perm[start : start + cfg.batch_size]
                    holder[0] = feats[idx]
                    loss = F.cross_entropy(model(dummy).float(), labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    step = start // cfg.batch_size
                    if resist is not None and step % int(spec.get("adv_every", 1)) == 0:
                        pens.append(
                            _resist_step(
                                model, holder, params, adv_params, resist, spec, gen, bs_f, lam
                            )
                        )
                    opt.step()
                    sched.step()
                    tot += float(loss) * len(idx)
                log["loss"].append(tot / n)
                if pens:
                    log["penalty"].append(sum(pens) / len(pens))
    finally:
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
    return log


def _resist_step(
    model: nn.Module,
    holder: list[torch.Tensor | None],
    params: Sequence[nn.Parameter],
    adv_params: Sequence[nn.Parameter],
    resist: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    spec: Mapping[str, Any],
    gen: torch.Generator,
    bs_f: int,
    lam: float,
) -> float:
    f_feats, f_x, f_y = resist
    j = torch.randperm(len(f_y), generator=gen)[:bs_f].to(f_y.device)
    scope = spec.get("adv_scope", "top")
    if scope == "all":
        holder[0] = None
        xb = f_x[j]

        def run() -> torch.Tensor:
            return model(xb)  # type: ignore[no-any-return]
    else:
        holder[0] = f_feats[j]
        dummy = f_x[:1]

        def run() -> torch.Tensor:
            return model(dummy)  # type: ignore[no-any-return]

    grads, pen = _penalty_grads(
        model, adv_params, params, run, f_y[j],
        int(spec.get("adv_steps", 3)), float(spec.get("adv_lr", 1e-3)),
    )  # fmt: skip
    for p, g in zip(params, grads, strict=True):
        if g is not None:
            p.grad = lam * g if p.grad is None else p.grad + lam * g
    return pen


def _saliency(
    model: nn.Module,
    scales: Mapping[str, torch.Tensor],
    below: set[str],
    threshold: float,
    seed: int,
) -> dict[str, int]:
    """Fresh direction at the masked magnitude for channels with s < threshold."""
    done: dict[str, int] = {}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed * 31 + 3)
        for name, s in scales.items():
            if name not in below:
                continue
            mod = model.get_submodule(name)
            idx = (s < threshold).nonzero().flatten()
            if not len(idx):
                continue
            fresh = copy.deepcopy(mod).float()
            fresh.reset_parameters()  # type: ignore[operator]
            w = mod.weight
            shape = (-1,) + (1,) * (w.dim() - 1)
            sv = s.to(w)[idx].view(shape)
            w[idx] = sv * fresh.weight[idx].to(w)
            if getattr(mod, "bias", None) is not None:
                mod.bias[idx] = s.to(w)[idx] * fresh.bias[idx].to(w)  # type: ignore[index]
            done[name] = len(idx)
    return done


def _reset_rows(model: nn.Module, forget: Sequence[int], how: str, seed: int) -> None:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed * 13 + 1)
        fresh = copy.deepcopy(head)
        fresh.reset_parameters()
        for c in forget:
            head.weight[c] = 0 if how == "zero" else fresh.weight[c]
            if head.bias is not None:
                head.bias[c] = 0 if how == "zero" else fresh.bias[c]


def erase_dev(
    model: nn.Module,
    train_set: Dataset[Any],
    forget: Sequence[int],
    *,
    config: EraseConfig,
    spec: Mapping[str, Any],
    scales: Mapping[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """One lab recipe (see the module docstring); CPU or CUDA as the library's erase."""
    t0 = time.perf_counter()
    classes = E._validate_forget(forget, E._num_classes(model))
    dev = E._pick_device(None)
    home = E._model_device(model)
    out = copy.deepcopy(model).to(dev).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    probe = next(iter(DataLoader(train_set, batch_size=4, shuffle=False)))
    x4 = torch.as_tensor(probe[0]).to(dev)
    order = E._execution_order(out, x4[:1])
    cut = config.boundary or E._find_cut(out, order, config.blocks)
    cut_module = out.get_submodule(cut)
    info: dict[str, Any] = {"boundary": cut}
    method = str(spec.get("method", "retrain-top"))
    if "saliency" in method:
        if scales is None:
            raise ValueError("saliency needs the filter scales")
        below = set(order[: order.index(cut)])
        info["saliency"] = _saliency(
            out, scales, below, float(spec.get("threshold", 0.5)), config.seed
        )
    feats, labels, dummy = E._retain_features(out, cut_module, train_set, classes, dev)
    check, _, _ = E._retain_features(out, cut_module, E._Probe(x4), [], dev)
    E._check_splice(out, cut_module, check, x4)
    resist = None
    if "resist" in method:
        fx, fy = _forget_images(train_set, classes, int(spec.get("adv_pool", 256)), config.seed)
        ff, _, _ = E._retain_features(out, cut_module, _Pairs(fx, fy), [], dev)
        resist = (ff, fx.to(dev), fy.to(dev))
    top = E._top_modules(out, order, cut)
    E._reset(out, top, config.seed)
    info.update(_train(out, top, cut_module, feats, labels, dummy, config, spec, resist))
    if spec.get("rows"):
        _reset_rows(out, classes, str(spec["rows"]), config.seed)
    info["seconds"] = time.perf_counter() - t0
    return out.to(home).eval(), info


class _Pairs(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x, self._y = x.cpu(), y.cpu()

    def __len__(self) -> int:
        return len(self._y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._x[i], 99
