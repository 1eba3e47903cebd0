"""Reading the weight files people already have, without ever unpickling code.

Accepted: safetensors state dicts (Lethe checkpoints included), ``torch.save`` state dicts and
the common ``{"model" | "state_dict" | "model_state_dict": ...}`` wrappers, with or without
the ``module.`` (DDP) / ``_orig_mod.`` (``torch.compile``) key prefixes, and timm's training
checkpoints (``CheckpointSaver``: ``state_dict``, ``state_dict_ema``, ``args`` as an
``argparse.Namespace``). ``torch.load`` runs with ``weights_only=True`` only (with
``argparse.Namespace`` as its one allowed class, which holds plain values and runs no code): a
file that needs code to load is refused with a message saying how to convert it.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from lethe.errors import CheckpointFormatError

__all__ = ["Caller", "CheckpointFormatError", "StateDict", "read_state_dict", "term"]

#: Who is calling: messages name CLI flags for ``"cli"``, parameters for ``"python"``.
Caller = Literal["python", "cli"]

_TERMS: Mapping[str, tuple[str, str]] = {
    # key: (python, cli)
    "arch": ("spec={'arch': ..., 'num_classes': ..., 'input_size': (H, W)}", "--arch"),
    "num_classes": ("spec['num_classes']", "--num-classes"),
    "input_size": ("spec['input_size']", "--input-size HxW"),
    "in_chans": ("spec['in_chans']", "--in-chans"),
    "small_stem": ("spec['small_stem']", "--small-stem"),
    "spec": (
        "spec= (timm architecture, number of classes, input size)",
        "--arch, --num-classes and --input-size",
    ),
    "mean": ("spec['mean'] = (r, g, b)", "--mean R,G,B"),
    "std": ("spec['std'] = (r, g, b)", "--std R,G,B"),
    "interpolation": ("spec['interpolation']", "--interpolation"),
    "crop_pct": ("spec['crop_pct']", "--crop-pct"),
    "input_range": ("spec['input_range'] = (low, high)", "--input-range LOW,HIGH"),
    "timm": ("preprocessing='timm'", "--timm-preprocessing"),
    "force": ("force=True", "--force"),
    "expect_accuracy": ("expect_accuracy=", "--expect-accuracy"),
    "class_names": ("class_names=", "--class-names"),
    "eval_data": ("eval_data=", "--eval-data"),
    "train_data": ("train_data=", "--train-data"),
    "checkpoint": ("checkpoint", "--checkpoint"),
    "ema": ("ema=True", "--ema"),
    "no_ema": ("ema=False", "--no-ema"),
}

_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
#: Where timm's CheckpointSaver (``state_dict_ema``) and ``timm.utils.ModelEmaV3`` users
#: (``model_ema``) keep the EMA weights beside the raw ``state_dict``.
_EMA_KEYS = ("state_dict_ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")


def term(key: str, caller: Caller) -> str:
    """How ``caller`` names an option: a CLI flag or a Python parameter."""
    py, cli = _TERMS[key]
    return cli if caller == "cli" else py


@dataclass(frozen=True)
class StateDict:
    """Tensors read from a weight file, what the file was, its safetensors metadata, and a
    note on which of several state dicts in it was used (empty when there was one)."""

    tensors: dict[str, torch.Tensor]
    kind: str
    metadata: Mapping[str, str]
    note: str = ""


def read_state_dict(
    path: str | Path, *, caller: Caller = "python", ema: bool | None = None
) -> StateDict:
    """The state dict held by ``path``, whatever ordinary form it is saved in.

    A training checkpoint holding both raw and EMA weights (timm's ``state_dict`` and
    ``state_dict_ema``) gives the EMA weights unless ``ema=False`` (timm's own default:
    ``timm.models.load_checkpoint(use_ema=True)``, and the weights its best-checkpoint metric
    was measured on when EMA was on); ``ema=True`` requires them.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointFormatError(f"{p}: checkpoint not found")
    raw = p.read_bytes()
    if _is_safetensors(raw):
        return _read_safetensors(p, raw)
    if raw[:4] == b"PK\x03\x04" or raw[:1] == b"\x80":
        return _read_torch(p, raw, caller, ema)
    if ema:
        raise CheckpointFormatError(f"{p}: a safetensors file holds one state dict, no EMA weights")
    raise CheckpointFormatError(f"{p}: {_what_is(p, raw)}. {_how_to_convert(caller)}")


def _is_safetensors(raw: bytes) -> bool:
    if len(raw) < 10:
        return False
    n = int.from_bytes(raw[:8], "little")
    return 2 <= n <= len(raw) - 8 and raw[8:9] == b"{"


def _read_safetensors(p: Path, raw: bytes) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + n]).get("__metadata__") or {}
    except (SafetensorError, ValueError) as exc:
        raise CheckpointFormatError(f"{p}: a damaged safetensors file ({exc})") from exc
    return StateDict(
        _strip_prefixes(tensors), "safetensors", {str(k): str(v) for k, v in meta.items()}
    )


def _read_torch(p: Path, raw: bytes, caller: Caller, ema: bool | None) -> StateDict:
    if raw[:4] == b"PK\x03\x04" and not _is_torch_zip(raw):
        raise CheckpointFormatError(f"{p}: {_what_is(p, raw)}. {_how_to_convert(caller)}")
    try:
        # weights_only=True always; a Namespace (timm's saved ``args``) is plain values.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointFormatError(_code_pickle_message(p, raw, exc)) from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointFormatError(f"{p}: not a readable torch.save file ({exc})") from exc
    obj, kind, note = _pick_training_state(p, obj, ema, caller)
    return StateDict(_strip_prefixes(_unwrap(p, obj, caller)), kind, {}, note)


def _code_pickle_message(p: Path, raw: bytes, exc: BaseException) -> str:
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(raw)))
    except (RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
        names = []
    more = f" and {len(names) - 4} more" if len(names) > 4 else ""
    held = f"it holds Python objects of {', '.join(names[:4])}{more}" if names else _first_line(exc)
    return (
        f"{p}: refused: this torch.save file needs Python code to load ({held}). Lethe never "
        "unpickles code (it could run anything). A whole model saved with torch.save(model), "
        "or a training checkpoint holding custom objects, does this; save the weights instead: "
        "torch.save(model.state_dict(), 'weights.pt') or, better, "
        "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
    )


def _pick_training_state(
    p: Path, obj: Any, ema: bool | None, caller: Caller
) -> tuple[Any, str, str]:
    """A training checkpoint's raw or EMA state dict (see :func:`read_state_dict`)."""
    if not isinstance(obj, Mapping):
        return obj, "torch.save", ""
    kind = "torch.save"
    if "epoch" in obj and ("state_dict" in obj or "arch" in obj):
        kind = f"training checkpoint (epoch {obj.get('epoch')!s:.20}, arch {obj.get('arch')!s:.60})"
    ema_key = next((k for k in _EMA_KEYS if isinstance(obj.get(k), Mapping)), None)
    if ema_key is None:
        if ema:
            raise CheckpointFormatError(
                f"{p}: {kind} without EMA weights ({', '.join(_EMA_KEYS)}): drop "
                f"{term('ema', caller)}"
            )
        return obj, kind, ""
    raw_key = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
    if raw_key is None or ema or ema is None:
        other = f"; {term('no_ema', caller)} for the raw {raw_key!r}" if raw_key else ""
        why = " (the default, as in timm)" if ema is None else ""
        return obj[ema_key], kind, f"using the EMA weights {ema_key!r}{why}{other}"
    return (
        obj[raw_key],
        kind,
        f"using the raw weights {raw_key!r}; {term('ema', caller)} for the EMA {ema_key!r}",
    )


def _is_torch_zip(raw: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _unwrap(p: Path, obj: Any, caller: Caller) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            keys = ", ".join(repr(k) for k in list(obj)[:8])
            raise CheckpointFormatError(
                f"{p}: a torch.save dict without a state dict in it (keys {keys}); Lethe looks "
                f"for tensors at the top level or under {', '.join(map(repr, _WRAPPERS[:3]))}. "
                f"{_how_to_convert(caller)}"
            )
        obj = inner
    raise CheckpointFormatError(
        f"{p}: holds a {type(obj).__name__}, not a state dict (name -> tensor). "
        f"{_how_to_convert(caller)}"
    )


def _strip_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _what_is(p: Path, raw: bytes) -> str:
    head = raw[:64]
    if p.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and b"pytorch" in raw[:256].lower()):
        return "an ONNX model, not PyTorch weights: register the PyTorch weights it came from"
    if raw[:4] == b"PK\x03\x04":
        return "a zip archive that is not a torch.save file (a .npz array file?)"
    if raw[:6] == b"\x93NUMPY":
        return "a numpy .npy array, not a state dict"
    if raw[:8] == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file (Keras / TensorFlow weights?), which Lethe cannot read"
    if raw[:1] in (b"{", b"["):
        return "a JSON/text file, not weights"
    return "not a safetensors or torch.save file"


def _how_to_convert(caller: Caller) -> str:
    where = term("checkpoint", caller)
    return (
        "Convert it in Python with: import torch, safetensors.torch; "
        "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'), then pass "
        f"that file as {where}"
    )
