"""The workflow's results carry the vocabulary's enums (DESIGN §10.11): a request's status is a
RequestStatus, an apply's outcome and phase an ApplyOutcome and a Phase. They are StrEnums, so
they equal the stored strings and their JSON is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from lethe.workflow import ApplyResult, DeletionRequest, Lethe
from lethe_audit.statements import ApplyOutcome, Phase, RequestStatus

from .conftest import MODEL


def test_the_result_fields_are_typed_with_the_enums() -> None:
    assert DeletionRequest.__annotations__["status"] == "RequestStatus"
    assert ApplyResult.__annotations__["outcome"] == "ApplyOutcome"
    assert ApplyResult.__annotations__["phase"] == "Phase"
    assert ApplyResult.__dataclass_fields__["phase"].default is Phase.MASK


def test_a_request_read_back_has_an_enum_status(project_dir: Path) -> None:
    with Lethe.open(project_dir) as lt:
        req = lt.file(subject="vic@example.com", classes=[2], legal_basis="gdpr-17-1-b")
        assert type(req.status) is RequestStatus and req.status == "received"
        approved = lt.approve(req.id, actor="dpo")
        assert approved.status is RequestStatus.APPROVED
        assert type(lt.get(req.id).status) is RequestStatus
        assert all(type(r.status) is RequestStatus for r in lt.list(model=MODEL))
        doc = json.loads(json.dumps(approved.to_dict(), default=str))
        assert doc["status"] == "approved"  # the JSON is the plain string, as before
    assert ApplyOutcome.APPLIED == "applied" and Phase.ERASE == "erase"
