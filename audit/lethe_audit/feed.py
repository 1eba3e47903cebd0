"""How to feed a Lethe model, step by step, from its preprocessing record (torch-free).

One formatter for every place that tells a user how to make the model's input from pixels:
``lethe-audit model verify`` (the signed ``lethe.preprocessing`` of an ONNX file), ``lethe
export onnx``, ``lethe model show`` and ``lethe.data.Preprocess.describe``. The steps are in
the order that reproduces Lethe's inputs exactly (``lethe.data.Preprocess``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["GRAY_WEIGHTS", "feed_steps"]

#: An RGB image feeding a 1-channel model becomes this weighted sum of R, G, B (ITU-R 601).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def feed_steps(pre: Mapping[str, Any]) -> str:
    """The record's steps, ``;``-separated, e.g. ``pixels/255 -> [0, 1]; resize to 235x235
    bicubic (antialiased when shrinking), clamp to [0, 1]; centre-crop 224x224; (x - mean) /
    std with mean [...], std [...]; float32 NCHW [N, 3, 224, 224]`` (a gray image feeding a
    3-channel model is copied to R, G and B first; an RGB image feeding a 1-channel model
    becomes ``0.299 R + 0.587 G + 0.114 B``). A record it cannot read is returned as JSON."""
    try:
        c, h, w = (int(v) for v in pre["input_size"])
        lo, hi = (float(v) for v in pre.get("input_range") or (0.0, 1.0))
        crop = float(pre.get("crop_pct") or 1.0)
        interp = str(pre.get("interpolation") or "bilinear")
        mean = [round(float(m), 6) for m in pre["mean"]]
        std = [round(float(s), 6) for s in pre["std"]]
    except (KeyError, TypeError, ValueError):
        return json.dumps(dict(pre), sort_keys=True, default=str)
    steps = [f"pixels/255 -> [{lo:g}, {hi:g}]", _channels(c)]
    sh, sw = (h, w) if crop == 1.0 else (max(h, math.floor(h / crop)), max(w, math.floor(w / crop)))
    resize = f"resize to {sh}x{sw} {interp}"
    if interp != "nearest":
        resize += " (antialiased when shrinking)"
    if interp == "bicubic":
        resize += f", clamp to [{lo:g}, {hi:g}]"
    steps.append(resize)
    if (sh, sw) != (h, w):
        steps.append(f"centre-crop {h}x{w}")
    steps.append(f"(x - mean) / std with mean {mean}, std {std}")
    steps.append(f"float32 NCHW [N, {c}, {h}, {w}]")
    return "; ".join(steps)


def _channels(c: int) -> str:
    if c == 3:
        return "3 channels RGB (a gray image: copied to R, G and B)"
    r, g, b = GRAY_WEIGHTS
    return f"1 channel (an RGB image: {r} R + {g} G + {b} B)"
