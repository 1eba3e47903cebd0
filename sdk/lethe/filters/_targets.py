"""Choosing which layers carry filters (peft-style selection, checked before anything mutates)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from lethe.errors import TargetSelectionError

__all__ = ["Target", "TargetSpec", "find_head_name", "select_targets"]

# Subclasses whose forward is exactly linear in (weight, bias), so scaling the output channels
# equals scaling the weight rows. Anything else might, e.g., standardise its weight (StdConv2d)
# and make folding silently wrong.
_FOLD_SAFE_NAMES = {
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.linear.Linear",
    "timm.layers.linear.Linear",
    "timm.layers.conv2d_same.Conv2dSame",
}
# Linear layers that nn.MultiheadAttention uses through F.* functions, never via __call__:
# a forward hook would not see them, so they cannot be filtered.
_NEVER_CALLED_NAMES = {"torch.nn.modules.linear.NonDynamicallyQuantizableLinear"}


def _qualname(m: nn.Module) -> str:
    t = type(m)
    return f"{t.__module__}.{t.__qualname__}"


@dataclass(frozen=True)
class Target:
    """One filtered layer: its module name, kind and number of output channels."""

    name: str
    kind: str  # "conv2d" | "linear"
    channels: int


@dataclass(frozen=True)
class TargetSpec:
    """Which layers to filter.

    With nothing set, every ``nn.Conv2d`` (grouped and depthwise too) and ``nn.Linear`` except
    the classifier head. ``suffixes`` keeps only modules whose name equals or ends with
    ``.<suffix>``; ``regex`` keeps names matching it (``re.search``); ``exclude`` drops names
    equal to / ending with an entry. ``head`` names the classifier when the model has no
    timm ``get_classifier()`` (default: the last Linear or Conv2d in registration order).
    """

    suffixes: Sequence[str] | None = None
    regex: str | None = None
    exclude: Sequence[str] = field(default_factory=tuple)
    head: str | None = None
    include_head: bool = False

    def __post_init__(self) -> None:
        if self.suffixes is not None:
            if isinstance(self.suffixes, str):
                raise TargetSelectionError("suffixes must be a list of names, not one string")
            object.__setattr__(self, "suffixes", tuple(self.suffixes))
            if not self.suffixes:
                raise TargetSelectionError("suffixes=[] selects nothing; pass None for defaults")
        if isinstance(self.exclude, str):
            raise TargetSelectionError("exclude must be a list of names, not one string")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise TargetSelectionError(f"invalid target regex {self.regex!r}: {exc}") from exc

    def to_dict(self) -> dict[str, object]:
        return {
            "suffixes": list(self.suffixes) if self.suffixes is not None else None,
            "regex": self.regex,
            "exclude": list(self.exclude),
            "head": self.head,
            "include_head": self.include_head,
        }


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or name.endswith("." + p) for p in patterns)


def find_head_name(model: nn.Module, head: str | None = None) -> str | None:
    """Module name of the classifier head (timm ``get_classifier()`` when available)."""
    names = {id(m): n for n, m in model.named_modules()}
    if head is not None:
        if head not in dict(model.named_modules()):
            raise TargetSelectionError(f"head {head!r} is not a module of this model")
        return head
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        clf = get_classifier()
        if isinstance(clf, nn.Module) and id(clf) in names and names[id(clf)]:
            return str(names[id(clf)])
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            last = n
    return last


def _kind(m: nn.Module) -> str | None:
    if isinstance(m, nn.Conv2d):
        return "conv2d"
    if isinstance(m, nn.Linear):
        return "linear"
    return None


def select_targets(model: nn.Module, spec: TargetSpec | None = None) -> list[Target]:
    """Resolve ``spec`` against ``model``; raises before anything is touched."""
    spec = spec or TargetSpec()
    head = None if spec.include_head else find_head_name(model, spec.head)
    chosen: list[Target] = []
    unsupported: list[str] = []
    all_names = [n for n, _ in model.named_modules()]
    for pattern in spec.suffixes or ():
        if not any(_matches(n, [pattern]) for n in all_names):
            raise TargetSelectionError(f"target suffix {pattern!r} matches no module of the model")
    for name, m in model.named_modules():
        kind = _kind(m)
        if kind is None or not name:
            continue
        if spec.suffixes is not None and not _matches(name, spec.suffixes):
            continue
        if spec.regex is not None and not re.search(spec.regex, name):
            continue
        if _matches(name, spec.exclude) or (head is not None and name == head):
            continue
        qual = _qualname(m)
        if qual in _NEVER_CALLED_NAMES:
            if spec.suffixes is not None or spec.regex is not None:
                raise TargetSelectionError(
                    f"{name} ({qual}) is used through torch.nn.functional by its parent and "
                    "cannot be filtered; remove it from the selection"
                )
            continue
        if qual not in _FOLD_SAFE_NAMES:
            unsupported.append(f"{name} ({qual})")
            continue
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            unsupported.append(f"{name} (padding_mode={m.padding_mode!r})")
            continue
        out = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        chosen.append(Target(name, kind, int(out)))
    if unsupported:
        raise TargetSelectionError(
            "these layers cannot be filtered and folded safely (their forward is not a plain "
            "linear map of weight and bias): "
            + ", ".join(unsupported)
            + ". Exclude them with TargetSpec(exclude=[...])."
        )
    if not chosen:
        raise TargetSelectionError(
            "no Conv2d or Linear layer was selected (a model without such layers, or a "
            "selection that matches none); check suffixes / regex / exclude"
        )
    return chosen
