"""Pass/fail policy over a :class:`MetricsResult` (torch-free: auditors use it too)."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lethe_audit.errors import PolicyConfigError, PolicyError, ResultFormatError
from lethe_audit.metrics._result import MetricsResult
from lethe_audit.metrics._serial import from_jsonable, to_jsonable

if TYPE_CHECKING:
    # Imported where used: lethe_audit.statements pulls in cryptography, and the CLIs import
    # this module only to build their policy options.
    from lethe_audit.statements import Phase, PolicyVerdict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["OFF", "CheckOutcome", "Policy", "Verdict"]

OFF = "off"
"""The config-file / CLI spelling of a disabled threshold (TOML has no null)."""

# Metrics are ratios of counts and sums of floats: a value equal to its threshold up to rounding
# (0.985 − 0.965 = 0.020000000000000018) must not fail a "≤ 0.02" check.
_TOLERANCE = 1e-12


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _gap_missing(result: MetricsResult) -> str:
    """Why a result with depth has no probe AUC gap (empty when it has one)."""
    if result.depth is None or result.depth.probe_auc_gap is not None:
        return ""
    if result.probe is None:
        return dict(result.skipped).get("probe", "the feature probe was not measured")
    return "the reference has no probe AUC"


@dataclass(frozen=True)
class CheckOutcome:
    """One policy check: its measured value, threshold, and the failure reason if it failed."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    reason: str | None


class _Checks:
    """Collects :class:`CheckOutcome` values; a threshold of ``None`` means the check is off."""

    def __init__(self) -> None:
        self.outcomes: list[CheckOutcome] = []

    def upper(
        self, name: str, label: str, value: float | None, thr: float | None, how: str = ""
    ) -> None:
        self._check(name, label, value, thr, how, lambda v, t: v <= t + _TOLERANCE, ">")

    def lower(
        self, name: str, label: str, value: float | None, thr: float | None, how: str = ""
    ) -> None:
        self._check(name, label, value, thr, how, lambda v, t: v >= t - _TOLERANCE, "<")

    def _check(
        self,
        name: str,
        label: str,
        value: float | None,
        thr: float | None,
        how: str,
        ok: Callable[[float, float], bool],
        op: str,
    ) -> None:
        if thr is None:
            return
        if value is None:
            reason = f"{label} not measured" + (f": {how}" if how else "")
            self.outcomes.append(CheckOutcome(name, False, None, thr, reason))
        elif ok(value, thr):
            self.outcomes.append(CheckOutcome(name, True, value, thr, None))
        else:
            reason = f"{label} {_fmt(value)} {op} {_fmt(thr)}"
            self.outcomes.append(CheckOutcome(name, False, value, thr, reason))


@dataclass(frozen=True)
class Verdict:
    """The policy's decision: ``passed``, one human-readable reason per failed check, every
    check's outcome, and the thresholds that were applied (the enabled numeric ones).

    The one verdict type, with one JSON form (:meth:`to_dict` / :meth:`from_dict`): an apply's
    result carries it (``ApplyResult.verdict``), the workflow database stores it and
    ``lethe apply --json`` prints it. Signed statements record its serialised form,
    :class:`~lethe_audit.statements.PolicyVerdict`, made only by :meth:`to_policy_verdict`
    (thresholds, passed, failures = reasons)."""

    passed: bool
    reasons: tuple[str, ...]
    checks: tuple[CheckOutcome, ...]
    thresholds: Mapping[str, float | int] = dataclasses.field(
        default_factory=dict, hash=False, compare=True
    )

    def to_dict(self) -> dict[str, Any]:
        """``passed``, ``reasons``, ``checks`` (one object per :class:`CheckOutcome`),
        ``thresholds``: what the database stores and the CLIs print."""
        out: dict[str, Any] = to_jsonable(self)
        out["thresholds"] = dict(self.thresholds)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Read :meth:`to_dict` back. A verdict stored without ``checks`` (applies recorded
        before the checks were kept: ``passed``, ``reasons``, ``thresholds``) reads with
        ``checks`` empty."""
        if not isinstance(data, Mapping):
            raise ResultFormatError(f"Verdict: expected an object, got {type(data).__name__}")
        if "checks" not in data:
            return _without_checks(data)
        body = {k: v for k, v in data.items() if k != "thresholds"}
        verdict = from_jsonable(cls, body)
        if verdict.passed != all(c.passed for c in verdict.checks):
            raise ResultFormatError("verdict.passed disagrees with its checks")
        return dataclasses.replace(verdict, thresholds=_thresholds(data.get("thresholds", {})))

    def error(self, what: str = "policy failed") -> PolicyError:
        """The :class:`~lethe_audit.errors.PolicyError` of a failed verdict (``what: reasons``)."""
        return PolicyError(
            f"{what}: " + "; ".join(self.reasons), policy="metrics", reasons=self.reasons
        )

    def to_policy_verdict(self) -> PolicyVerdict:
        """The attestation's ``policy`` field: thresholds, passed, failures (= reasons)."""
        from lethe_audit.statements import PolicyVerdict

        return PolicyVerdict(dict(self.thresholds), self.passed, tuple(self.reasons))


def _without_checks(data: Mapping[str, Any]) -> Verdict:
    """A verdict stored with its reasons but not its checks (the older database form)."""
    if not isinstance(data.get("passed"), bool):
        raise ResultFormatError(f"a stored verdict needs 'passed', got {data!r}")
    reasons = data.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise ResultFormatError("a stored verdict's reasons must be a list of strings")
    unknown = sorted(set(data) - {"passed", "reasons", "thresholds"})
    if unknown:
        raise ResultFormatError(f"Verdict: unknown keys {unknown}")
    return Verdict(
        passed=data["passed"],
        reasons=tuple(reasons),
        checks=(),
        thresholds=_thresholds(data.get("thresholds", {})),
    )


def _thresholds(data: Any) -> dict[str, float | int]:
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in data.items()
    ):
        raise ResultFormatError("verdict thresholds must map names to numbers")
    return dict(data)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Thresholds that decide whether an apply may publish (``None`` = check off).

    Defaults: forget accuracy ≤ 0.01, retain accuracy drop (base − model) ≤ 0.02, ONNX parity
    max |Δlogit| ≤ 1e-4. ZRF, MIA efficacy, probe AUC and relearn steps are reported but not
    gated unless a threshold is set. A threshold that is set requires its metric: an
    unmeasured metric fails the check (turn the check off explicitly, e.g. ``max_parity=None``
    for an auditor who re-measures only the ONNX model). A forgotten class without evaluation
    samples fails unless ``allow_unevaluated_classes`` is true.

    Depth (``result.depth``, against a reference retrained without a class) is checked only for
    the erase phase: relearn ratio ≥ ``min_relearn_ratio`` (default 0.5) and probe AUC gap ≤
    ``max_probe_auc_gap`` (default 0.02). An erase-phase result without depth fails both.
    """

    max_forget_accuracy: float | None = 0.01
    max_retain_drop: float | None = 0.02
    max_parity: float | None = 1e-4
    min_zrf: float | None = None
    min_mia_efficacy: float | None = None
    max_probe_auc: float | None = None
    min_relearn_steps: int | None = None
    min_relearn_ratio: float | None = 0.5
    max_probe_auc_gap: float | None = 0.02
    allow_unevaluated_classes: bool = False

    def __post_init__(self) -> None:
        unit = (
            "max_forget_accuracy",
            "max_retain_drop",
            "min_zrf",
            "min_mia_efficacy",
            "max_probe_auc",
        )
        for name in unit:
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise PolicyConfigError(f"{name} must be a number in [0, 1] or off, got {v!r}")
            object.__setattr__(self, name, float(v))
        p = self.max_parity
        if p is not None:
            if (
                isinstance(p, bool)
                or not isinstance(p, int | float)
                or not (math.isfinite(p) and p >= 0)
            ):
                raise PolicyConfigError(
                    f"max_parity must be a finite number >= 0 or off, got {p!r}"
                )
            object.__setattr__(self, "max_parity", float(p))
        for name in ("min_relearn_ratio", "max_probe_auc_gap"):
            v = getattr(self, name)
            if v is None:
                continue
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not (math.isfinite(v) and v >= 0)
            ):
                raise PolicyConfigError(f"{name} must be a finite number >= 0 or off, got {v!r}")
            object.__setattr__(self, name, float(v))
        r = self.min_relearn_steps
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 0):
            raise PolicyConfigError(f"min_relearn_steps must be an integer >= 0 or off, got {r!r}")
        if not isinstance(self.allow_unevaluated_classes, bool):
            raise PolicyConfigError(
                "allow_unevaluated_classes must be true or false, got "
                f"{self.allow_unevaluated_classes!r}"
            )

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The configurable keys, as spelled in TOML and (with dashes) on the command line."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base: Policy | None = None) -> Policy:
        """``base`` (default: the defaults) with ``values`` applied; ``"off"`` disables a check."""
        if not isinstance(values, Mapping):
            raise PolicyConfigError(f"a policy must be a table of thresholds, got {values!r}")
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise PolicyConfigError(
                f"unknown policy keys {unknown}; valid keys are {list(cls.keys())}"
            )
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value == OFF and key != "allow_unevaluated_classes":
                changes[key] = None
            elif isinstance(value, str):
                raise PolicyConfigError(f"{key}: expected a number or {OFF!r}, got {value!r}")
            else:
                changes[key] = value
        return dataclasses.replace(base if base is not None else cls(), **changes)

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, table: str = "policy", base: Policy | None = None
    ) -> Policy:
        """Read the ``[policy]`` table of a TOML file (other tables are ignored).

        A file without that table yields ``base`` (the defaults) unchanged.
        """
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise PolicyConfigError(f"cannot read policy file {os.fspath(path)!r}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise PolicyConfigError(f"{os.fspath(path)!r} is not valid TOML: {exc}") from exc
        section = data.get(table, {})
        if not isinstance(section, Mapping):
            raise PolicyConfigError(f"[{table}] in {os.fspath(path)!r} must be a table")
        return cls.from_mapping(section, base=base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``None`` = off), e.g. for the attestation next to the verdict."""
        out: dict[str, Any] = to_jsonable(self)
        return out

    # --- decision -----------------------------------------------------------------------------

    def evaluate(self, result: MetricsResult, *, phase: Phase | str = "mask") -> Verdict:
        """Run every enabled check on ``result``; depth checks only when ``phase`` is erase
        (:class:`lethe_audit.statements.Phase` or its value; the default is the mask phase)."""
        from lethe_audit.statements import Phase

        try:
            phase = Phase(phase)
        except ValueError:
            raise PolicyConfigError(f"phase must be 'mask' or 'erase', got {phase!r}") from None
        checks = _Checks()
        self._output_checks(result, checks)
        if phase is Phase.ERASE:
            self._depth_checks(result, checks)
        missing = result.accuracy.unevaluated_forget_classes
        if missing and not self.allow_unevaluated_classes:
            checks.outcomes.append(
                CheckOutcome(
                    "unevaluated_forget_classes",
                    False,
                    float(len(missing)),
                    0.0,
                    f"forgotten classes {list(missing)} have no evaluation samples",
                )
            )
        outcomes = tuple(checks.outcomes)
        reasons = tuple(c.reason for c in outcomes if not c.passed and c.reason is not None)
        return Verdict(
            passed=not reasons, reasons=reasons, checks=outcomes, thresholds=self.thresholds()
        )

    def thresholds(self) -> dict[str, float | int]:
        """The enabled numeric thresholds (what an attestation records beside its verdict)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }

    def _output_checks(self, result: MetricsResult, checks: _Checks) -> None:
        acc = result.accuracy
        skipped = dict(result.skipped)
        checks.upper(
            "max_forget_accuracy", "forget accuracy", acc.forget_accuracy, self.max_forget_accuracy
        )
        checks.upper(
            "max_retain_drop",
            "retain accuracy drop",
            acc.retain_drop,
            self.max_retain_drop,
            "the unfiltered model was not measured beside it",
        )
        checks.upper(
            "max_parity",
            "ONNX parity max |Δlogit|",
            None if result.parity is None else result.parity.max_abs_logit_diff,
            self.max_parity,
            "no exported ONNX model was compared with it (where none is expected, turn the "
            'check off: max_parity = "off")',
        )
        checks.lower(
            "min_zrf",
            "ZRF",
            None if result.zrf is None else result.zrf.zrf,
            self.min_zrf,
            skipped.get("zrf", ""),
        )
        checks.lower(
            "min_mia_efficacy",
            "MIA efficacy",
            None if result.mia is None else result.mia.efficacy,
            self.min_mia_efficacy,
            skipped.get("mia", ""),
        )
        checks.upper(
            "max_probe_auc",
            "feature probe AUC",
            None if result.probe is None else result.probe.auc,
            self.max_probe_auc,
            skipped.get("probe", ""),
        )
        # The median run; a run that never reached the threshold took at least max_steps.
        checks.lower(
            "min_relearn_steps",
            "relearn steps",
            None if result.relearn is None else float(result.relearn.model.steps),
            None if self.min_relearn_steps is None else float(self.min_relearn_steps),
            skipped.get("relearn", ""),
        )

    def _depth_checks(self, result: MetricsResult, checks: _Checks) -> None:
        depth = result.depth
        how = "" if depth is not None else "no depth reference was attached to the result"
        checks.lower(
            "min_relearn_ratio",
            "relearn ratio to the reference",
            None if depth is None else depth.relearn_ratio,
            self.min_relearn_ratio,
            how,
        )
        checks.upper(
            "max_probe_auc_gap",
            "probe AUC gap to the reference",
            None if depth is None else depth.probe_auc_gap,
            self.max_probe_auc_gap,
            how or _gap_missing(result),
        )

    def check(self, result: MetricsResult, *, phase: Phase | str = "mask") -> None:
        """``None`` if ``result`` passes; :class:`~lethe_audit.errors.PolicyError` with the
        reasons if not."""
        verdict = self.evaluate(result, phase=phase)
        if not verdict.passed:
            raise verdict.error()
