"""The filter bank: one memory matrix per filtered layer, and its file format."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import rfc8785
import torch
from torch import nn

from lethe._digest import model_digest, update_with_tensors
from lethe._io import atomic_write_bytes
from lethe.classes import resolve_class_ids
from lethe.errors import (
    BankClassCountError,
    BankFormatError,
    BankIntegrityError,
    BankModelMismatchError,
    BankShapeError,
    ClassSelectionError,
    NonFiniteError,
)
from lethe.filters._targets import Target, TargetSpec, find_head_name, select_targets

__all__ = ["BANK_FORMAT", "FilterBank", "canonical_forget_set"]

BANK_FORMAT = "lethe/filter-bank/v1"
_MANIFEST_KEY = "lethe.manifest"


def _lethe_version() -> str:
    from lethe import __version__

    return __version__


def canonical_forget_set(forget: Iterable[int] | int, num_classes: int) -> tuple[int, ...]:
    """Validated, de-duplicated, sorted class ids (sorted so products are reproducible)."""
    items = [forget] if isinstance(forget, int) else list(forget)
    if not items:
        raise ClassSelectionError("the forget set is empty: name at least one class id")
    out: set[int] = set()
    for c in items:
        if isinstance(c, bool) or not isinstance(c, int):
            try:
                # numpy integers and one-element tensors are fine; anything else is not.
                c = int(c.item()) if isinstance(c, torch.Tensor) and c.numel() == 1 else int(c)
            except (TypeError, ValueError):
                raise ClassSelectionError(f"class ids must be integers, got {c!r}") from None
        if not 0 <= c < num_classes:
            raise ClassSelectionError(
                f"unknown class id {c}: this bank has classes 0..{num_classes - 1}"
            )
        out.add(c)
    return tuple(sorted(out))


def _num_model_classes(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    head = find_head_name(model)
    if head:
        m = model.get_submodule(head)
        if isinstance(m, nn.Linear):
            return m.out_features
        if isinstance(m, nn.Conv2d):
            return m.out_channels
    return None


class FilterBank:
    """Per-class channel filters for every target layer of one base model.

    ``alpha[name]`` is a float32 tensor ``[num_classes, channels]`` with values in [0, 1]
    (1 = keep the channel). Forgetting a set S scales layer ``name``'s output channels by
    the product of rows ``alpha[name][c]`` for c in S, taken in sorted class order.

    Instances are treated as immutable: training returns a new bank.
    """

    def __init__(
        self,
        alpha: Mapping[str, torch.Tensor],
        *,
        targets: Iterable[Target],
        class_names: Iterable[str],
        base_digest: str,
        target_spec: Mapping[str, Any] | None = None,
        train_config: Mapping[str, Any] | None = None,
        lethe_version: str | None = None,
    ) -> None:
        self._targets = tuple(targets)
        self._class_names = tuple(str(c) for c in class_names)
        n = len(self._class_names)
        if n < 2:
            raise BankShapeError(f"a filter bank needs at least 2 classes, got {n}")
        if len(set(self._class_names)) != n:
            raise BankShapeError("class names must be unique")
        names = [t.name for t in self._targets]
        if sorted(names) != sorted(alpha) or len(set(names)) != len(names):
            raise BankShapeError(
                f"alpha tensors {sorted(alpha)} do not match the target layers {sorted(names)}"
            )
        checked: dict[str, torch.Tensor] = {}
        for t in self._targets:
            a = alpha[t.name].detach().to(device="cpu", dtype=torch.float32).contiguous()
            if tuple(a.shape) != (n, t.channels):
                raise BankShapeError(
                    f"alpha[{t.name!r}] has shape {tuple(a.shape)}, expected ({n}, {t.channels})"
                )
            if not bool(torch.isfinite(a).all()):
                raise NonFiniteError(f"alpha[{t.name!r}] contains NaN or infinite values")
            if bool((a < 0).any()) or bool((a > 1).any()):
                raise NonFiniteError(f"alpha[{t.name!r}] has values outside [0, 1]")
            checked[t.name] = a
        self._alpha = checked
        self._base_digest = base_digest
        self._target_spec = dict(target_spec or {})
        self._train_config = dict(train_config or {})
        self._version = lethe_version or _lethe_version()
        self._digest: str | None = None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        model: nn.Module,
        num_classes: int,
        targets: TargetSpec | None = None,
        *,
        class_names: Iterable[str] | None = None,
    ) -> FilterBank:
        """A bank with every row at 1 (keep everything) for the selected layers of ``model``."""
        names = (
            list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        )
        if len(names) != num_classes:
            raise BankClassCountError(
                f"{len(names)} class names given for num_classes={num_classes}"
            )
        model_classes = _num_model_classes(model)
        if model_classes is not None and model_classes != num_classes:
            raise BankClassCountError(
                f"the model's classifier has {model_classes} outputs but num_classes={num_classes}"
            )
        spec = targets or TargetSpec()
        chosen = select_targets(model, spec)
        alpha = {t.name: torch.ones(num_classes, t.channels) for t in chosen}
        return cls(
            alpha,
            targets=chosen,
            class_names=names,
            base_digest=model_digest(model),
            target_spec=spec.to_dict(),
        )

    def with_alpha(
        self, alpha: Mapping[str, torch.Tensor], *, train_config: Mapping[str, Any] | None = None
    ) -> FilterBank:
        """A copy with new filter values (same targets, classes and base model)."""
        return FilterBank(
            alpha,
            targets=self._targets,
            class_names=self._class_names,
            base_digest=self._base_digest,
            target_spec=self._target_spec,
            train_config=train_config if train_config is not None else self._train_config,
        )

    # -- properties -----------------------------------------------------------------------

    @property
    def alpha(self) -> dict[str, torch.Tensor]:
        """Module name -> ``[num_classes, channels]`` filter values (copies)."""
        return {k: v.clone() for k, v in self._alpha.items()}

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._targets

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self._targets)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    @property
    def base_digest(self) -> str:
        return self._base_digest

    @property
    def train_config(self) -> dict[str, Any]:
        return dict(self._train_config)

    @property
    def target_spec(self) -> dict[str, Any]:
        return dict(self._target_spec)

    def _manifest(self) -> dict[str, Any]:
        return {
            "format": BANK_FORMAT,
            "lethe_version": self._version,
            "base_model_digest": self._base_digest,
            "class_names": list(self._class_names),
            "targets": [
                {"name": t.name, "kind": t.kind, "channels": t.channels} for t in self._targets
            ],
            "target_spec": self._target_spec,
            "train_config": self._train_config,
        }

    @property
    def manifest(self) -> dict[str, Any]:
        """The JSON manifest stored with the tensors, including the bank digest."""
        m = self._manifest()
        m["digest"] = self.digest
        return m

    @property
    def digest(self) -> str:
        """SHA-256 (hex) over the canonical manifest (RFC 8785) and the filter tensors."""
        if self._digest is None:
            h = hashlib.sha256(b"lethe/filter-bank-digest/v1\n")
            h.update(rfc8785.dumps(self._manifest()) + b"\n")
            update_with_tensors(h, self._alpha)
            self._digest = h.hexdigest()
        return self._digest

    # -- composition ----------------------------------------------------------------------

    def forget_set(self, forget: Iterable[int] | int) -> tuple[int, ...]:
        return canonical_forget_set(forget, self.num_classes)

    def class_ids(self, classes: Iterable[int | str]) -> tuple[int, ...]:
        """Class ids for a mix of ids and class names (:func:`lethe.classes.resolve_class_ids`:
        :class:`~lethe.errors.UnknownClassError`, a :class:`ClassSelectionError`, names the
        bank's classes), validated as a forget set (not empty)."""
        known = f"known: {', '.join(self._class_names)}"
        ids = resolve_class_ids(classes, self._class_names, owner="this bank", hint=known)
        return canonical_forget_set(ids, self.num_classes)

    def scales(self, forget: Iterable[int] | int) -> dict[str, torch.Tensor]:
        """Per-layer channel scales for forgetting ``forget`` (product of rows, sorted ids)."""
        ids = self.forget_set(forget)
        out: dict[str, torch.Tensor] = {}
        for name, a in self._alpha.items():
            s = a[ids[0]].clone()
            for c in ids[1:]:
                s = s * a[c]
            out[name] = s
        return out

    # -- compatibility and files ------------------------------------------------------------

    def check_compatible(self, model: nn.Module, *, check_digest: bool = True) -> None:
        """Raise unless this bank was made for ``model`` (layers, shapes, classes, digest)."""
        modules = dict(model.named_modules())
        for t in self._targets:
            m = modules.get(t.name)
            if m is None:
                raise BankShapeError(f"the model has no layer {t.name!r} that this bank filters")
            if isinstance(m, nn.Conv2d):
                kind, ch = "conv2d", m.out_channels
            elif isinstance(m, nn.Linear):
                kind, ch = "linear", m.out_features
            else:
                raise BankShapeError(f"layer {t.name!r} is a {type(m).__name__}, not Conv2d/Linear")
            if kind != t.kind or ch != t.channels:
                raise BankShapeError(
                    f"layer {t.name!r} is {kind} with {ch} channels; the bank expects "
                    f"{t.kind} with {t.channels}"
                )
        n = _num_model_classes(model)
        if n is not None and n != self.num_classes:
            raise BankClassCountError(
                f"the model has {n} classes but the bank has {self.num_classes}"
            )
        if check_digest:
            d = model_digest(model)
            if d != self._base_digest:
                raise BankModelMismatchError(
                    f"this bank was trained for model {self._base_digest[:16]}..., not for "
                    f"{d[:16]}...; train a bank for this model (lethe filters train)"
                )

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        meta = {_MANIFEST_KEY: json.dumps(self.manifest, sort_keys=True)}
        return bytes(save(dict(self._alpha), metadata=meta))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bank as one safetensors file with the JSON manifest (atomic)."""
        return atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes, *, source: str = "<bytes>") -> FilterBank:
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            header_len = int.from_bytes(raw[:8], "little")
            header = json.loads(raw[8 : 8 + header_len])
            meta = header.get("__metadata__") or {}
            tensors = load(raw)
        except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
            raise BankFormatError(f"{source}: not a safetensors filter bank ({exc})") from exc
        if _MANIFEST_KEY not in meta:
            raise BankFormatError(f"{source}: safetensors file without a Lethe bank manifest")
        try:
            manifest = json.loads(meta[_MANIFEST_KEY])
            fmt = manifest["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BankFormatError(f"{source}: unreadable bank manifest ({exc})") from exc
        if fmt != BANK_FORMAT:
            raise BankFormatError(
                f"{source}: bank format {fmt!r} is not supported by this Lethe ({BANK_FORMAT})"
            )
        try:
            targets = [
                Target(t["name"], t["kind"], int(t["channels"])) for t in manifest["targets"]
            ]
            bank = cls(
                tensors,
                targets=targets,
                class_names=manifest["class_names"],
                base_digest=manifest["base_model_digest"],
                target_spec=manifest.get("target_spec"),
                train_config=manifest.get("train_config"),
                lethe_version=manifest.get("lethe_version"),
            )
            stored = manifest["digest"]
        except (KeyError, TypeError) as exc:
            raise BankFormatError(f"{source}: incomplete bank manifest ({exc})") from exc
        except (BankShapeError, NonFiniteError) as exc:
            raise BankIntegrityError(f"{source}: bank contents are inconsistent: {exc}") from exc
        if bank.digest != stored:
            raise BankIntegrityError(
                f"{source}: stored digest {str(stored)[:16]}... does not match the contents "
                f"({bank.digest[:16]}...); the file was modified or corrupted"
            )
        return bank

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None) -> FilterBank:
        """Read a bank; with ``model``, also check that it belongs to that model."""
        p = Path(path)
        if not p.is_file():
            raise BankFormatError(f"{p}: filter bank file not found")
        bank = cls.from_bytes(p.read_bytes(), source=str(p))
        if model is not None:
            bank.check_compatible(model)
        return bank

    def __repr__(self) -> str:
        return (
            f"FilterBank(classes={self.num_classes}, layers={len(self._targets)}, "
            f"digest={self.digest[:12]})"
        )
