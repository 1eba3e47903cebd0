"""What both phases of an apply share: their context, the ``published`` symlink, crash repair,
and turning committed rows into :class:`ApplyResult` objects.

Crash safety (DESIGN §5): an apply's artefacts are written (fsynced) into a fresh
``models/<name>/applies/<apply id>/`` folder *before* the one database transaction that appends
the signed attestation and points the requests and the model at the new apply. Until that
commit nothing refers to the folder; after it, everything does. The ``published`` symlink
(what edge distribution reads) is swapped atomically after the commit and repaired from the
database by the next apply (:func:`reconcile`) if a crash fell in between.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from lethe._io import fsync_dir
from lethe.errors import ApplyLockLostError, InconsistentStateError, PublishedLinkError
from lethe.workflow._lock import LOST_LOCK
from lethe.workflow._store import ProjectStore
from lethe.workflow._time import utc
from lethe.workflow._types import ApplyResult
from lethe_audit.errors import StoreError
from lethe_audit.log import AuditLog
from lethe_audit.statements import RequestRecord, rfc3339
from lethe_audit.store import ApplyRow, RequestRow, is_transient

if TYPE_CHECKING:
    from lethe.workflow._models import ModelService
    from lethe.workflow._reference import ReferenceService

__all__ = [
    "METHOD_NAME",
    "PARITY_SAMPLES",
    "ApplyContext",
    "apply_result",
    "committed",
    "lethe_version",
    "logged_steps",
    "new_apply_id",
    "not_committed",
    "published_paths",
    "read_result",
    "reconcile",
    "request_record",
    "state_bytes",
    "swap_link",
]

METHOD_NAME = "weight-filtering"
_log = logging.getLogger("lethe.workflow")
#: What each step of an apply (or erase) says in the progress lines (logger ``lethe.workflow``,
#: INFO): ``lethe apply`` / ``lethe erase`` print them when stderr is not a terminal.
_STEP_LINES = {
    "before_fold": "folding the filters into a copy of the weights and exporting ONNX",
    "after_fold": "folded and exported; measuring (accuracy, parity, MIA, relearn)",
    "artifacts_written": "artefacts written (signed ONNX, checkpoint, figures)",
    "committed": "committed: attestation logged",
    "published": "published",
    "failure_logged": "the failed attempt is logged; nothing published",
    "erase_start": "re-training the masked weights",
    "erase_trained": "re-trained; exporting and measuring (relearn, probe, depth)",
    "erase_artifacts_written": "artefacts written (signed ONNX, checkpoint)",
    "erase_committed": "committed: attestation logged",
    "erase_published": "published (erased)",
    "erase_failure_logged": "the failed attempt is logged; the masked model stays published",
}
#: Inputs of the export's gross parity check (``evaluate`` measures parity on all of them).
PARITY_SAMPLES = 32


@dataclass(frozen=True)
class ApplyContext:
    """What an apply or erase works with: the store, the log, and the services it reads."""

    store: ProjectStore
    log: AuditLog
    models: ModelService
    references: ReferenceService


def logged_steps(
    what: str, name: str, fault: Callable[[str], None] | None
) -> Callable[[str], None]:
    """The step callback of an apply: one progress line per step (``what name: ...``), then
    ``fault`` (tests' crash injection), if any."""

    def step(s: str) -> None:
        line = _STEP_LINES.get(s)
        if line is not None:
            _log.info("%s %s: %s", what, name, line)
        if fault is not None:
            fault(s)

    return step


def lethe_version() -> str:
    from lethe import __version__

    return __version__


def request_record(row: RequestRow) -> RequestRecord:
    """A request as the attestation records it (ids and times only)."""
    if row.decided_at is None:
        raise InconsistentStateError(
            f"request {row.id} is covered by an apply but was never approved"
        )
    return RequestRecord(
        id=row.id,
        subject_commitment=row.subject_commitment,
        classes=tuple(json.loads(row.classes)),
        legal_basis=row.legal_basis,
        received_at=rfc3339(utc(row.received_at)),
        due_at=rfc3339(utc(row.due_at)),
        approved_at=rfc3339(utc(row.decided_at)),
    )


# -- the published symlink --------------------------------------------------------------------


def swap_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a real folder there is set aside first)."""
    copied = _set_aside_copy(link, target) if link.is_dir() and not link.is_symlink() else None
    tmp = link.with_name(f".published.{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)
    if copied is not None:
        shutil.rmtree(copied, ignore_errors=True)


def _set_aside_copy(link: Path, target: str) -> Path:
    """``published`` is a real folder: the project was copied with symlinks followed (``cp -rL``,
    some backup tools). The database names the published apply, so when that apply's own folder
    exists the copy is redundant: move it aside (removed once the symlink is back)."""
    if not (link.parent / target).is_dir():
        raise PublishedLinkError(
            f"{link} is a folder, not the symlink Lethe keeps (was the project copied with "
            f"symlinks followed, e.g. `cp -rL`?), and {link.parent / target}, the apply the "
            f"database says is published, is missing: restore that folder from {link} "
            f"(`mv {link} {link.parent / target}`) and run `lethe apply` again"
        )
    aside = link.with_name(f".published.copy-{secrets.token_hex(4)}")
    os.rename(link, aside)
    return aside


def reconcile(store: ProjectStore, name: str) -> None:
    """Make the filesystem agree with the database (the source of truth) after a crash."""
    mdir = store.model_dir(name)
    with store.read() as s:
        current = store.model_row(s, name).current_apply_id
        stmt = select(ApplyRow.id).where(ApplyRow.model_name == name)
        known = set(s.execute(stmt).scalars())
    applies = mdir / "applies"
    if applies.is_dir():
        for d in applies.iterdir():
            # Written by an apply that never committed: nothing refers to it.
            if d.is_dir() and d.name not in known:
                shutil.rmtree(d, ignore_errors=True)
    link = store.published_link(name)
    for stale in mdir.glob(".published.*"):
        if stale.is_dir() and not stale.is_symlink():  # a copy set aside by swap_link
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if current is None:
        return
    target = f"applies/{current}"
    if not link.is_symlink() or os.readlink(link) != target:
        swap_link(link, target)


def published_paths(store: ProjectStore, name: str) -> dict[str, Path] | None:
    with store.read() as s:
        current = store.model_row(s, name).current_apply_id
    if current is None:
        return None
    d = store.apply_dir(name, current)
    return {"dir": d, "checkpoint": d / "model.safetensors", "onnx": d / "model.onnx"}


# -- results ----------------------------------------------------------------------------------


def apply_result(
    store: ProjectStore, log: AuditLog, row: ApplyRow, *, checkpoint: str | None = None
) -> ApplyResult:
    """The :class:`ApplyResult` of a row (``checkpoint``: the log's, read when not given)."""
    paths: tuple[str | None, str | None] = (None, None)
    if row.artifact_dir:
        d = store.abs(row.artifact_dir)
        paths = (str(d / "model.safetensors"), str(d / "model.onnx"))
    cp = checkpoint if checkpoint is not None else log.checkpoint()
    return ApplyResult.from_row(row, checkpoint=cp, paths=paths)


def read_result(ctx: ApplyContext, apply_id: str) -> ApplyResult:
    """A committed apply read back (retried on transient failures)."""

    def run() -> ApplyResult:
        with ctx.store.read() as s:
            return apply_result(ctx.store, ctx.log, ctx.store.apply_row(s, apply_id))

    return ctx.store.retry(run, what=f"reading apply {apply_id}")


def committed(store: ProjectStore, apply_id: str, error: StoreError) -> bool:
    """Whether the apply's transaction committed although its COMMIT reported ``error`` (the
    connection can die after the server committed, before the client heard of it)."""

    def run() -> bool:
        with store.read() as s:
            return s.get(ApplyRow, apply_id) is not None

    try:
        return store.retry(run, what="checking whether the apply committed")
    except StoreError as e2:
        raise StoreError(
            f"{error}; whether apply {apply_id} committed is unknown ({e2}): run `lethe apply` "
            "again once the database is reachable (it repairs the files either way)"
        ) from error


def not_committed(error: StoreError, lock_conn: Connection | None) -> Exception:
    """The error to raise for an apply whose transaction did not commit."""
    if lock_conn is not None and is_transient(error):
        return ApplyLockLostError(f"{LOST_LOCK} ({error})")
    return StoreError(
        f"{error}; the apply stopped before its commit: nothing was published, run "
        "`lethe apply` again"
    )


def new_apply_id() -> str:
    return "apply-" + secrets.token_hex(8)


def state_bytes(model: Any) -> int:
    """Bytes of a torch model's state dict (what its checkpoint needs on disk)."""
    return int(sum(t.numel() * t.element_size() for t in model.state_dict().values()))
