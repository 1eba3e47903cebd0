"""Verification policies: small composable checks over a verified log (or receipt).

A policy has ``verify(log: LogView) -> None`` and raises
:class:`~lethe_audit.errors.PolicyError` naming the entry or checkpoint at fault. Compose them
with :class:`AllOf` and :class:`AnyOf` (after sigstore-python's verification policies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from lethe_audit.errors import FormatError, NothingToCheckError, PolicyError
from lethe_audit.statements import UNLEARNING_V1, parse_rfc3339
from lethe_audit.tlog import Checkpoint
from lethe_audit.verify._entry import VerifiedEntry


class LogView:
    """What policies see: a verified log (a bundle) or a single verified entry (a receipt).

    ``complete`` is False for receipts: only one entry and one checkpoint are known.
    """

    def __init__(
        self,
        *,
        origin: str,
        size: int,
        root: bytes,
        checkpoints: Sequence[Checkpoint],
        entries: Callable[[], Iterator[VerifiedEntry]],
        root_at: Callable[[int], bytes] | None,
        complete: bool,
    ) -> None:
        self.origin = origin
        self.size = size
        self.root = root
        self.checkpoints = tuple(checkpoints)
        self._entries = entries
        self._root_at = root_at
        self.complete = complete

    def entries(self) -> Iterator[VerifiedEntry]:
        """The verified entries, in index order."""
        return self._entries()

    def root_at(self, size: int) -> bytes:
        """The tree root after the first ``size`` entries (complete logs only)."""
        if size == self.size:
            return self.root
        if self._root_at is None:
            raise PolicyError(
                f"the root at size {size} is unknown: this check needs a full bundle",
                policy="root_at",
                size=size,
            )
        return self._root_at(size)


@runtime_checkable
class Policy(Protocol):
    """A verification policy: returns None or raises PolicyError."""

    def verify(self, log: LogView) -> None: ...


def _name(p: object) -> str:
    return type(p).__name__


class AllOf:
    """Every policy must pass (the first failure is raised)."""

    def __init__(self, *policies: Policy) -> None:
        self.policies = policies

    def verify(self, log: LogView) -> None:
        for p in self.policies:
            p.verify(log)


class AnyOf:
    """At least one policy must pass."""

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("AnyOf needs at least one policy")
        self.policies = policies

    def verify(self, log: LogView) -> None:
        failures = []
        for p in self.policies:
            try:
                p.verify(log)
                return
            except PolicyError as e:
                failures.append(f"{_name(p)}: {e}")
        raise PolicyError("no policy passed: " + "; ".join(failures), policy="AnyOf")


def _unlearning(log: LogView, outcomes: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for e in log.entries():
        if e.predicate_type == UNLEARNING_V1 and e.statement.predicate["outcome"] in outcomes:
            yield e.index, dict(e.statement.predicate)


def _nothing_to_check(log: LogView, policy: str, outcomes: Sequence[str]) -> NothingToCheckError:
    where = "log" if log.complete else "receipt"
    kinds = " or ".join(repr(o) for o in outcomes)
    return NothingToCheckError(
        f"{policy}: nothing to check: the {where} holds no unlearning attestation with outcome "
        f"{kinds} (a lifecycle event or a failed apply carries no metrics or deadline to "
        "check); nothing checked is not a pass",
        policy=policy,
        size=log.size,
    )


#: At most this many metric names are listed in an error.
_MAX_NAMES = 40


def _metric_names(metrics: Any) -> str:
    """The dotted paths of the numbers in ``metrics`` (what ``MetricThreshold`` can check)."""
    from collections import deque

    names: list[str] = []
    todo: deque[tuple[str, Any]] = deque([("", metrics)])
    while todo and len(names) <= _MAX_NAMES:
        prefix, obj = todo.popleft()
        if type(obj) in (int, float) and prefix:
            names.append(prefix)
        elif isinstance(obj, dict):
            todo.extend((f"{prefix}.{k}" if prefix else str(k), v) for k, v in obj.items())
    if not names:
        return "none (no numeric metric)"
    more = ", ..." if len(names) > _MAX_NAMES else ""
    return ", ".join(sorted(names[:_MAX_NAMES])) + more


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(path)
        obj = obj[part]
    return obj


@dataclass(frozen=True)
class MetricThreshold:
    """Every unlearning attestation (by default only ``applied`` ones) reports ``metric``
    (a dotted path into ``predicate.metrics``) within ``[min, max]``."""

    metric: str
    max: float | None = None
    min: float | None = None
    outcomes: tuple[str, ...] = ("applied",)

    def __post_init__(self) -> None:
        if self.max is None and self.min is None:
            raise ValueError("MetricThreshold needs max, min or both")

    def verify(self, log: LogView) -> None:
        policy = f"MetricThreshold({self.metric})"
        checked = 0
        for index, p in _unlearning(log, self.outcomes):
            checked += 1
            try:
                value = _lookup(p["metrics"], self.metric)
            except KeyError:
                raise PolicyError(
                    f"entry {index} does not report metric {self.metric!r}; its metrics are "
                    f"{_metric_names(p['metrics'])} (a dotted path into predicate.metrics)",
                    policy=policy,
                    index=index,
                ) from None
            if type(value) not in (int, float):
                raise PolicyError(
                    f"entry {index}: metric {self.metric!r} is {value!r}, not a number",
                    policy=policy,
                    index=index,
                )
            if self.max is not None and value > self.max:
                raise PolicyError(
                    f"entry {index}: {self.metric} = {value} exceeds {self.max}",
                    policy=policy,
                    index=index,
                )
            if self.min is not None and value < self.min:
                raise PolicyError(
                    f"entry {index}: {self.metric} = {value} is below {self.min}",
                    policy=policy,
                    index=index,
                )
        if not checked:
            raise _nothing_to_check(log, policy, self.outcomes)


@dataclass(frozen=True)
class DeadlinesMet:
    """Every request an applied attestation covers was applied by its ``due_at``."""

    def verify(self, log: LogView) -> None:
        checked = 0
        for index, p in _unlearning(log, ("applied",)):
            checked += 1
            applied = parse_rfc3339(p["applied_at"])
            for r in p["requests"]:
                if applied > parse_rfc3339(r["due_at"]):
                    raise PolicyError(
                        f"entry {index}: request {r['id']} was applied at {p['applied_at']}, "
                        f"after its due date {r['due_at']}",
                        policy="DeadlinesMet",
                        index=index,
                    )
        if not checked:
            raise _nothing_to_check(log, "DeadlinesMet", ("applied",))


class ConsistentWith:
    """The log extends a checkpoint the auditor saw earlier (its own, already trusted record):
    same origin, at least as long, and the same root at that size (nothing was rewritten)."""

    def __init__(self, checkpoint: Checkpoint | str) -> None:
        if isinstance(checkpoint, str):
            from lethe_audit import note

            try:
                text = note.parse(checkpoint).text if "\n\n" in checkpoint else checkpoint
                checkpoint = Checkpoint.parse(text)
            except FormatError as e:
                raise ValueError(f"not a checkpoint: {e}") from None
        self.checkpoint = checkpoint

    def verify(self, log: LogView) -> None:
        cp = self.checkpoint
        policy = "ConsistentWith"
        if cp.origin != log.origin:
            raise PolicyError(
                f"the earlier checkpoint is for log {cp.origin!r}, this is {log.origin!r}",
                policy=policy,
                size=cp.size,
            )
        if log.size < cp.size:
            raise PolicyError(
                f"the log has {log.size} entries but an earlier checkpoint had {cp.size}: "
                "history was truncated",
                policy=policy,
                size=cp.size,
            )
        if log.root_at(cp.size) != cp.root:
            raise PolicyError(
                f"the first {cp.size} entries no longer give the root of the earlier checkpoint: "
                "history was rewritten",
                policy=policy,
                size=cp.size,
            )
