"""Applying a filter: hooks for the filtered forward, and folding into a plain model."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lethe.errors import NonFiniteError, TargetSelectionError
from lethe.filters._bank import FilterBank

__all__ = ["FilteredModel", "ScaleInjector", "filtered", "fold", "fold_scales"]


def _reshape_scale(s: torch.Tensor, out: torch.Tensor, kind: str) -> torch.Tensor:
    """Broadcastable view of per-channel scales ``s`` ([C] or per-sample [B, C]) for ``out``."""
    channel_dim = 1 if kind == "conv2d" else out.dim() - 1
    if s.dim() == 1:
        shape = [1] * out.dim()
        shape[channel_dim] = s.shape[0]
        return s.view(shape)
    # Per-sample scales: batch is dim 0 of the module output.
    b = s.shape[0]
    if out.shape[0] != b:
        if out.shape[0] % b:
            raise TargetSelectionError(
                f"a filtered layer produced a batch of {out.shape[0]} for {b} samples; "
                "per-sample filters need the batch on dim 0"
            )
        # Models that fold windows/heads into the batch keep it sample-major.
        s = s.repeat_interleave(out.shape[0] // b, dim=0)
    shape = [1] * out.dim()
    shape[0] = s.shape[0]
    shape[channel_dim] = s.shape[1]
    return s.view(shape)


class ScaleInjector:
    """Forward hooks that multiply the outputs of the bank's target layers by scales.

    Scales are set per call (``set_scales``): either one vector per layer for the whole
    batch, or a ``[B, C]`` matrix per layer (a different filter per sample, for training).
    The hooks never touch weights, and ``remove()`` leaves the model exactly as it was.
    """

    def __init__(self, model: nn.Module, targets: Mapping[str, str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in targets if n not in modules]
        if missing:
            raise TargetSelectionError(f"the model has no layers {missing}")
        self._kinds = dict(targets)
        self._scales: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = dict.fromkeys(targets, 0)
        self._handles: list[RemovableHandle] = []
        for name in targets:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            self._calls[name] += 1
            s = self._scales.get(name)
            if s is None:
                return out
            return out * _reshape_scale(s.to(out.dtype), out, self._kinds[name])

        return hook

    def set_scales(self, scales: Mapping[str, torch.Tensor]) -> None:
        self._scales = dict(scales)

    def clear(self) -> None:
        self._scales = {}

    def reset_calls(self) -> None:
        self._calls = dict.fromkeys(self._calls, 0)

    def uncalled(self) -> list[str]:
        """Target layers that no forward pass has gone through since the last reset."""
        return [n for n, c in self._calls.items() if c == 0]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextmanager
def _injected(
    model: nn.Module, bank: FilterBank, scales: Mapping[str, torch.Tensor]
) -> Iterator[ScaleInjector]:
    inj = ScaleInjector(model, {t.name: t.kind for t in bank.targets})
    try:
        inj.set_scales(scales)
        yield inj
    finally:
        inj.remove()


class FilteredModel(nn.Module):
    """``model`` with the filter for a forget set applied on the fly (weights untouched).

    Forwards ``forward_features`` / ``forward_head`` / ``get_classifier`` of timm models too,
    so feature probes see the filtered representation.
    """

    def __init__(self, model: nn.Module, bank: FilterBank, forget: Iterable[int] | int) -> None:
        super().__init__()
        bank.check_compatible(model, check_digest=False)
        self.model = model
        self.forget = bank.forget_set(forget)
        self._bank = bank
        dev = next(iter(model.parameters()), torch.empty(0)).device
        self._scales = {k: v.to(dev) for k, v in bank.scales(self.forget).items()}

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        dev = next(iter(self.model.parameters()), torch.empty(0)).device
        scales = {k: v.to(dev) for k, v in self._scales.items()}
        with _injected(self.model, self._bank, scales):
            return fn(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.model, *args, **kwargs)

    def forward_features(self, x: torch.Tensor) -> Any:
        return self._call(self.model.forward_features, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> Any:
        return self._call(self.model.forward_head, x, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()  # type: ignore[no-any-return, operator]


def filtered(model: nn.Module, bank: FilterBank, forget: Iterable[int] | int) -> FilteredModel:
    """A module computing ``model``'s forward with the filter for ``forget`` applied.

    No weights are copied; the model is shared, not modified.
    """
    return FilteredModel(model, bank, forget)


def fold_scales(
    model: nn.Module, scales: Mapping[str, torch.Tensor], kinds: Mapping[str, str]
) -> nn.Module:
    """A plain copy of ``model`` with each named layer's weight rows and bias scaled.

    Computes every new tensor first and checks it is finite before writing any of them,
    so a failure leaves no half-folded copy behind (and the original is never touched).
    """
    modules = dict(model.named_modules())
    new: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    with torch.no_grad():
        for name, s in scales.items():
            m = modules.get(name)
            if m is None or kinds.get(name) not in ("conv2d", "linear"):
                raise TargetSelectionError(f"cannot fold into {name!r}: not a filtered layer")
            w = m.weight
            if not isinstance(w, torch.Tensor):
                raise TargetSelectionError(f"layer {name!r} has no weight to fold into")
            sv = s.to(device=w.device, dtype=w.dtype)
            if sv.shape[0] != w.shape[0]:
                raise TargetSelectionError(
                    f"scale for {name!r} has {sv.shape[0]} values, the layer {w.shape[0]} channels"
                )
            w2 = w * sv.view(-1, *([1] * (w.dim() - 1)))
            b = m.bias if isinstance(getattr(m, "bias", None), torch.Tensor) else None
            b2 = b * sv if b is not None else None
            if not bool(torch.isfinite(w2).all()) or (
                b2 is not None and not bool(torch.isfinite(b2).all())
            ):
                raise NonFiniteError(
                    f"folding produced NaN/inf weights in {name!r}; nothing was changed"
                )
            new[name] = (w2, b2)
        folded = copy.deepcopy(model)
        fmods = dict(folded.named_modules())
        for name, (w2, b2) in new.items():
            fmods[name].weight.copy_(w2)
            if b2 is not None:
                fmods[name].bias.copy_(b2)
    return folded


def fold(model: nn.Module, bank: FilterBank, forget: Iterable[int] | int) -> nn.Module:
    """A plain copy of ``model`` with the filter for ``forget`` merged into its weights.

    Same architecture, no hooks or wrappers; the original model and the bank are untouched.
    In fp32 it matches :func:`filtered` to within float rounding.
    """
    bank.check_compatible(model, check_digest=False)
    return fold_scales(model, bank.scales(forget), {t.name: t.kind for t in bank.targets})
