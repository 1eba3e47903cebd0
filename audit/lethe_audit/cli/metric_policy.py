"""Reusable click options that build a metrics :class:`~lethe_audit.metrics.Policy` (``lethe``
and ``lethe-audit`` CLIs). Click lives in the CLI packages only: ``lethe_audit.metrics`` itself
does not import it."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lethe_audit.errors import PolicyConfigError
from lethe_audit.metrics import OFF, Policy

__all__ = ["policy_from_options", "policy_options"]

if TYPE_CHECKING:
    _ParamBase = click.ParamType[Any]
else:  # click < 8.2 has no generic ParamType
    _ParamBase = click.ParamType


class _Threshold(_ParamBase):
    """A number, or ``off`` to disable the check."""

    def __init__(self, kind: type[int] | type[float]) -> None:
        self.kind = kind
        self.name = "INTEGER|off" if kind is int else "NUMBER|off"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if text.lower() == OFF:
            return OFF
        try:
            return self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            self.fail(f"{value!r} is not {what} or 'off'", param, ctx)


_FLOAT = _Threshold(float)
_INT = _Threshold(int)

# (option, policy key, type, help). Help texts state the built-in defaults.
_OPTIONS: tuple[tuple[str, str, _ParamBase, str], ...] = (
    (
        "--max-forget-accuracy",
        "max_forget_accuracy",
        _FLOAT,
        "Fail if forget accuracy exceeds this (default 0.01).",
    ),
    (
        "--max-retain-drop",
        "max_retain_drop",
        _FLOAT,
        "Fail if retain accuracy drops more than this below the unfiltered model (default 0.02).",
    ),
    (
        "--max-parity",
        "max_parity",
        _FLOAT,
        "Fail if max |Δlogit| between torch and ONNX exceeds this (default 1e-4).",
    ),
    ("--min-zrf", "min_zrf", _FLOAT, "Fail if ZRF is below this (default off)."),
    (
        "--min-mia-efficacy",
        "min_mia_efficacy",
        _FLOAT,
        "Fail if MIA efficacy is below this (default off).",
    ),
    (
        "--max-probe-auc",
        "max_probe_auc",
        _FLOAT,
        "Fail if the feature-probe AUC exceeds this (default off).",
    ),
    (
        "--min-relearn-steps",
        "min_relearn_steps",
        _INT,
        "Fail if relearning takes fewer fine-tuning steps than this (default off).",
    ),
    (
        "--min-relearn-ratio",
        "min_relearn_ratio",
        _FLOAT,
        "Erase phase: fail if relearn time is below this multiple of the reference's "
        "(default 0.5).",
    ),
    (
        "--max-probe-auc-gap",
        "max_probe_auc_gap",
        _FLOAT,
        "Erase phase: fail if the probe AUC exceeds the reference's by more than this "
        "(default 0.02).",
    ),
)


def policy_from_options(
    policy_file: str | os.PathLike[str] | None, overrides: Mapping[str, Any]
) -> Policy:
    """Defaults, then the file's ``[policy]`` table, then ``overrides`` whose value is not None."""
    policy = Policy() if policy_file is None else Policy.from_toml(policy_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    return Policy.from_mapping(given, base=policy) if given else policy


def policy_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Click decorator: adds ``--policy-file`` and one option per threshold, and passes the
    resulting :class:`Policy` to the command as its ``policy`` keyword argument.

    Precedence: command-line value > ``[policy]`` table of ``--policy-file`` > defaults. Any
    threshold accepts ``off``. Invalid values are reported as click usage errors (exit code 2).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        policy_file = kwargs.pop("policy_file")
        overrides = {key: kwargs.pop(key) for _, key, _, _ in _OPTIONS}
        allow = kwargs.pop("allow_unevaluated_classes")
        if allow is not None:
            overrides["allow_unevaluated_classes"] = allow
        try:
            kwargs["policy"] = policy_from_options(policy_file, overrides)
        except PolicyConfigError as exc:
            raise click.UsageError(str(exc)) from exc
        return command(*args, **kwargs)

    decorated: Callable[..., Any] = click.option(
        "--allow-unevaluated-classes/--no-allow-unevaluated-classes",
        default=None,
        help="Let a forgotten class without evaluation samples pass (default: it fails).",
    )(wrapper)
    for flag, key, kind, help_text in reversed(_OPTIONS):
        decorated = click.option(flag, key, type=kind, default=None, help=help_text)(decorated)
    decorated = click.option(
        "--policy-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="TOML file whose [policy] table sets thresholds; options given here override it.",
    )(decorated)
    return decorated
