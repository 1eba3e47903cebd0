"""A faster, equivalent forward for phase 2's top training (DESIGN §3; numbers in
docs/benchmarks.md, "Fourth lab round").

Phase 2 trains the top of the model on cached features at the cut; every step still runs the
model's whole forward on one dummy input (the cut module ignores what reaches it), and on
small inputs (32x32 digits, 28x28 MNIST, 32x32 CIFAR-10) the last stage of a ResNet runs at
1x1, where a zero-padded 3x3 convolution multiplies eight of its nine taps by padding. While
:func:`fast_top` is active:

- every module that runs entirely before the cut returns its (fixed) output for the dummy
  input, recorded once, instead of recomputing it: the part below the cut is frozen and in
  eval mode, so the output is the same;
- every 2-d convolution of the top whose input is 1x1 and whose output is 1x1 is computed
  as a 1x1 convolution with the one tap that meets the input, and that tap alone is trained
  (a new parameter, written back into the kernel on exit). The other taps only ever meet
  zero padding at this input size, so their gradient is zero and their values do not change
  the model's outputs at this size; they keep their fresh (re-initialised) values.

The result is checked before training: the fast top's logits must match the plain spliced
forward's, or the fast path is not used (it falls back silently: the plain path is always
correct, only slower).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FastTop", "fast_top"]

_Narrowed = tuple[nn.Conv2d, nn.Parameter, tuple[int, int]]  # conv, its trained tap, where


@dataclass
class FastTop:
    """What the fast path changed: the trainable stand-in of each narrowed kernel
    (``swap[id(weight)]``) and how many modules below the cut were short-circuited."""

    swap: dict[int, nn.Parameter] = field(default_factory=dict)
    narrowed: list[str] = field(default_factory=list)
    skipped_below: int = 0

    def params(self, own: Sequence[nn.Parameter]) -> list[nn.Parameter]:
        """``own`` with every narrowed kernel replaced by its trainable tap."""
        return [self.swap.get(id(p), p) for p in own]


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(len(parts))}


def _below_roots(order: Sequence[str], cut: str) -> list[str]:
    """The largest modules that run entirely before the cut (not the cut's ancestors)."""
    anc = _ancestors(cut)
    out = []
    for name in order[: order.index(cut)]:
        parent = name.rpartition(".")[0]
        if name not in anc and parent in anc:
            out.append(name)
    return out


def _one_tap(conv: nn.Conv2d, shape: torch.Size) -> tuple[int, int] | None:
    """The (row, col) of the only kernel tap that meets a 1x1 input, when the output is 1x1
    too (else None)."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or len(shape) != 4:
        return None
    if tuple(shape[2:]) != (1, 1):
        return None
    taps = []
    for k, p, d, s in zip(conv.kernel_size, conv.padding, conv.dilation, conv.stride, strict=True):
        out = (1 + 2 * p - d * (k - 1) - 1) // s + 1
        if out != 1 or p % d or p // d >= k:
            return None
        taps.append(p // d)
    return taps[0], taps[1]


def _record(
    model: nn.Module, names: Sequence[str], run: Callable[[], torch.Tensor]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int], torch.Tensor]:
    """(inputs, outputs, call counts) of the named modules during ``run()``, and its result."""
    ins: dict[str, Any] = {}
    outs: dict[str, Any] = {}
    calls: dict[str, int] = {}
    handles = []
    for name in names:
        mod = model.get_submodule(name)

        def hook(_m: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            calls[name] = calls.get(name, 0) + 1
            ins[name] = args[0] if args else None
            outs[name] = out

        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            result = run()
    finally:
        for h in handles:
            h.remove()
    return ins, outs, calls, result


@contextmanager
def fast_top(
    model: nn.Module,
    order: Sequence[str],
    cut: str,
    top: Sequence[str],
    run: Callable[[], torch.Tensor],
    *,
    skip_below: bool = True,
) -> Iterator[FastTop | None]:
    """While active, ``model``'s forward is the fast path (module docstring); yields what it
    changed, or None when the fast path would not give the plain path's logits. ``run()``
    runs the spliced top on a few cached features (the same call before and after)."""
    below = _below_roots(order, cut) if skip_below else []
    convs = [n for n in top if isinstance(model.get_submodule(n), nn.Conv2d)]
    ins, outs, calls, plain = _record(model, [*below, *convs], run)
    want = plain.float()
    fast = FastTop()
    patched: list[nn.Module] = []
    narrowed: list[_Narrowed] = []
    try:
        for name in below:
            out = outs.get(name)
            if calls.get(name) != 1 or not isinstance(out, torch.Tensor):
                continue
            mod = model.get_submodule(name)
            mod.__dict__["forward"] = _constant(out.detach())  # an instance override
            patched.append(mod)
            fast.skipped_below += 1
        for name in convs:
            conv = cast(nn.Conv2d, model.get_submodule(name))  # ``convs`` holds only Conv2d
            x = ins.get(name)
            tap = _one_tap(conv, x.shape) if isinstance(x, torch.Tensor) else None
            if tap is None or calls.get(name) != 1:
                continue
            i, j = tap
            center = nn.Parameter(conv.weight.detach()[:, :, i : i + 1, j : j + 1].clone())
            conv.__dict__["forward"] = _narrow(conv, center)
            patched.append(conv)
            narrowed.append((conv, center, tap))
            fast.swap[id(conv.weight)] = center
            fast.narrowed.append(name)
        with torch.no_grad():
            got = run().float()
        ok = got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-4)
        if ok and patched:  # (narrowed convolutions are patched too)
            yield fast
        else:
            _restore(patched, [])
            patched, narrowed = [], []
            yield None
    finally:
        _restore(patched, narrowed)


def _constant(out: torch.Tensor) -> Callable[..., torch.Tensor]:
    def forward(*_a: Any, **_k: Any) -> torch.Tensor:
        return out.clone()  # a fresh tensor: later in-place ops must not change the record

    return forward


def _narrow(conv: nn.Conv2d, center: nn.Parameter) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, center, conv.bias, 1, 0, 1, conv.groups)

    return forward


def _restore(patched: Sequence[nn.Module], narrowed: Sequence[_Narrowed]) -> None:
    with torch.no_grad():
        for conv, center, (i, j) in narrowed:
            conv.weight[:, :, i : i + 1, j : j + 1] = center.detach()
    for mod in patched:
        mod.__dict__.pop("forward", None)
