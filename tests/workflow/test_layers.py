"""The workflow's layers used without the Lethe facade: a ProjectStore, the AuditLog and the
services built on them (DEVELOPERS.md "The layers of lethe.workflow"); the typed vocabulary;
runtime invariants as typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lethe.errors import (
    InconsistentStateError,
    PolicyError,
    PolicyFailedError,
    UnknownModelError,
    UnknownRequestError,
)
from lethe.workflow import (
    ApplyService,
    ModelService,
    ProjectStore,
    ReferenceService,
    RequestService,
    Settings,
)
from lethe_audit.errors import PolicyViolationError
from lethe_audit.keys import KeyRing
from lethe_audit.log import AuditLog
from lethe_audit.statements import (
    ApplyOutcome,
    Envelope,
    EventType,
    Phase,
    RequestStatus,
    Statement,
)
from lethe_audit.store import ApplyRow, RequestRow
from lethe_audit.verify import parse_receipt

from .conftest import MODEL


class _Services:
    def __init__(self, project_dir: Path) -> None:
        settings = Settings.load(project_dir, env={})
        self.store = ProjectStore(settings)
        ring = KeyRing.open(settings.keys)
        self.log = AuditLog(self.store.engine, signers=ring.signers())
        self.models = ModelService(self.store, self.log)
        self.requests = RequestService(self.store, self.log)
        self.references = ReferenceService(self.store, self.log, self.models)
        self.applies = ApplyService(self.store, self.log, self.models, self.references)


@pytest.fixture
def services(project_dir: Path) -> Iterator[_Services]:
    built = _Services(project_dir)
    try:
        yield built
    finally:
        built.store.close()


def _events(log: AuditLog) -> list[str]:
    out = []
    for _, raw in log.iter_entries():
        p = Statement.from_envelope(Envelope.from_json(raw)).predicate
        out.append(p.get("event") or f"unlearning.{p['outcome']}")
    return out


def test_a_mask_apply_from_the_services_alone(services: _Services) -> None:
    """Store + log + services, no Lethe: file, approve, apply; typed results all the way."""
    req = services.requests.file(subject="a@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    assert req.status == RequestStatus.RECEIVED
    services.requests.approve(req.id, actor="dpo")
    res = services.applies.apply(MODEL, phase="mask", relearn=False, progress=False)
    assert res.passed and res.outcome == ApplyOutcome.APPLIED and res.phase == Phase.MASK
    assert res.verdict.passed and res.verdict.thresholds["max_forget_accuracy"] == 0.01
    assert res.metrics.accuracy.forget_accuracy <= 0.01
    assert services.requests.get(req.id).status == RequestStatus.APPLIED
    parse_receipt(services.applies.receipt(req.id))  # raises unless a well-formed receipt
    events = _events(services.log)
    assert {EventType.REQUEST_RECEIVED, EventType.REQUEST_APPROVED} <= set(events)
    assert events[-2:] == ["unlearning.applied", EventType.APPLY_FIGURES]


def test_store_lookups_raise_typed_errors(services: _Services) -> None:
    store = services.store
    with store.read() as s:
        with pytest.raises(UnknownModelError, match="registered: digits"):
            store.model_row(s, "nope")
        with pytest.raises(UnknownRequestError):
            store.request_row(s, "req-missing")
        with pytest.raises(InconsistentStateError, match="restore it from a backup"):
            store.apply_row(s, "apply-missing")
        assert store.model_row(s, None).name == MODEL  # the only one


def test_a_dangling_apply_id_is_a_typed_error_not_an_assert(services: _Services) -> None:
    req = services.requests.file(subject="b@example.com", classes=[5], legal_basis="gdpr-17-1-b")
    with services.store.write() as s:  # what a partial restore can leave behind
        row = s.execute(select(RequestRow).where(RequestRow.id == req.id)).scalar_one()
        row.status, row.apply_id = RequestStatus.APPLIED.value, "apply-gone"
    with pytest.raises(InconsistentStateError):
        services.applies.receipt(req.id)
    with services.store.read() as s:
        assert s.get(ApplyRow, "apply-gone") is None


def test_vocabulary_members_are_the_stored_strings() -> None:
    assert [s.value for s in RequestStatus] == [
        "received",
        "approved",
        "rejected",
        "applied",
        "failed",
        "superseded",
    ]
    assert RequestStatus("failed").is_open and RequestStatus.SUPERSEDED.is_done
    assert str(Phase.ERASE) == "erase" and f"{ApplyOutcome.FAILED}" == "failed"
    assert EventType("model.exported") is EventType.MODEL_EXPORTED


def test_one_policy_failure_error() -> None:
    assert PolicyFailedError is PolicyError and PolicyViolationError is PolicyError
    err: Any = PolicyError("policy failed: x", policy="metrics", reasons=("x",))
    assert err.reasons == ("x",) and err.policy == "metrics" and err.index is None
