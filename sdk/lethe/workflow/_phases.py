"""``Lethe.apply(phase=...)``: mask (phase 1), then erase (phase 2) by default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lethe.errors import ApplyError
from lethe.workflow._types import ApplyResult

if TYPE_CHECKING:
    from lethe.workflow._project import Lethe

__all__ = ["PHASES", "run_phases"]

#: ``both``: mask then erase (the default); ``mask``: the fast deadline path only.
PHASES = ("both", "mask")


def run_phases(
    lt: Lethe,
    model: str | None,
    *,
    phase: str,
    relearn: bool,
    progress: bool,
    policy: Any,
    erase_config: Any,
    fault: Callable[[str], None] | None,
) -> ApplyResult:
    """Phase 1, then (``phase="both"``) phase 2 on what phase 1 published.

    With ``both`` the model's depth reference must exist *before* anything runs (so a missing
    one never leaves a half-done deletion behind): :class:`~lethe.errors.MissingReferenceError`
    names the command that makes it. A failed phase 1 is returned as is (nothing to erase).
    The result is phase 1's, with the erase phase's result in ``.erase``.
    """
    from lethe.workflow._apply import run_apply

    if phase not in PHASES:
        raise ApplyError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    name = lt.model(model).name
    if phase == "both":
        from lethe.workflow._reference import require_reference

        require_reference(lt, name)
    mask = run_apply(lt, name, relearn=relearn, progress=progress, policy=policy, fault=fault)
    if phase == "mask" or not mask.passed:
        return mask
    from lethe.workflow._erase import run_erase

    erased = run_erase(lt, name, progress=progress, policy=policy, config=erase_config, fault=fault)
    return dataclasses.replace(mask, erase=erased)
