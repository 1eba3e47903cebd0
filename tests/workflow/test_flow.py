"""The deletion workflow end to end through the Python API (SQLite; PostgreSQL in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lethe.errors import (
    IdempotencyConflictError,
    InvalidTransitionError,
    NothingToApplyError,
    ReceiptUnavailableError,
    RequestError,
    SampleLevelRequestError,
    UnknownClassError,
    UnknownModelError,
    UnknownRequestError,
)
from lethe.workflow import Lethe
from lethe_audit.metrics import Policy
from lethe_audit.model import verify_model
from lethe_audit.statements import Envelope, Statement, hmac_commitment
from lethe_audit.verify import parse_receipt, verify_bundle, verify_receipt

from .conftest import MODEL


def _statements(lt: Lethe) -> list[Statement]:
    return [Statement.from_envelope(Envelope.from_json(raw)) for _, raw in lt.log.iter_entries()]


def _flow(lt: Lethe, tmp_path: Path) -> None:
    a = lt.file(
        subject="alice@example.com", classes=["3"], legal_basis="gdpr-17-1-b", idempotency_key="k-a"
    )
    b = lt.file(subject="bob@example.com", classes=[7], legal_basis="gdpr-17-1-a")
    assert a.status == b.status == "received" and a.classes == (3,) and b.classes == (7,)
    assert a.subject_commitment == hmac_commitment(
        bytes.fromhex(a.subject_key or ""), "alice@example.com"
    )
    assert (a.due_at - a.received_at).days == 30
    with pytest.raises(ReceiptUnavailableError):
        lt.receipt(a.id)
    lt.approve(a.id, actor="dpo", reason="verified")
    lt.approve(b.id, actor="dpo")
    res = lt.apply(MODEL, phase="mask", relearn=False, progress=False)
    assert res.passed, res.verdict
    assert res.forgotten_classes == (3, 7)
    assert set(res.new_request_ids) == {a.id, b.id}
    acc = res.metrics.accuracy  # a typed MetricsResult, the one the policy judged
    assert acc.forget_accuracy <= 0.01 and acc.base_retain_accuracy is not None
    assert acc.retain_accuracy >= acc.base_retain_accuracy - 0.02
    assert res.metrics.parity is not None and res.metrics.parity.max_abs_logit_diff <= 1e-4
    assert res.verdict.passed and res.verdict.thresholds["max_forget_accuracy"] == 0.01
    assert lt.applies(MODEL)[-1].metrics == res.metrics  # stored and read back unchanged
    for r in (a, b):
        got = lt.get(r.id)
        assert got.status == "applied" and got.apply_id == res.id and got.applied_at is not None
    # Published artefacts: the signed ONNX model verifies with its receipt, offline.
    pub = lt.published(MODEL)
    assert pub is not None and pub["onnx"].exists() and pub["checkpoint"].exists()
    assert (lt.model_dir(MODEL) / "published").resolve() == pub["dir"].resolve()
    receipt = lt.receipt(a.id)
    verify_receipt(receipt, lt.verifiers())
    verify_model(pub["onnx"], lt.verifiers(), receipt=receipt)
    pred = parse_receipt(receipt).statement.predicate
    assert pred["outcome"] == "applied" and {r["id"] for r in pred["requests"]} == {a.id, b.id}

    # A later request: the earlier ones are covered again (superseded), nothing is lost.
    with pytest.raises(NothingToApplyError):
        lt.apply(MODEL, phase="mask", relearn=False, progress=False)
    c = lt.file(subject="carol@example.com", classes=[1], legal_basis="gdpr-17-1-b")
    lt.approve(c.id, actor="dpo")
    res2 = lt.apply(MODEL, phase="mask", relearn=False, progress=False)
    assert res2.passed and res2.forgotten_classes == (1, 3, 7)
    assert lt.get(a.id).status == "superseded" and lt.get(a.id).apply_id == res2.id
    assert lt.get(c.id).status == "applied"
    assert parse_receipt(lt.receipt(a.id)).index == res2.log_index
    assert lt.published(MODEL)["dir"].name == res2.id  # type: ignore[index]
    events = [s.predicate.get("event") for s in _statements(lt)]
    assert events.count("request.received") == 3 and events.count("request.approved") == 3
    assert events.count("request.superseded") == 2 and events.count("apply.figures") == 2

    lt.verify_log()
    bundle = lt.export_bundle(tmp_path / "bundle.zip")
    verify_bundle(bundle, lt.verifiers())


def test_whole_flow_on_sqlite(lt: Lethe, tmp_path: Path) -> None:
    _flow(lt, tmp_path)


@pytest.mark.postgres
def test_whole_flow_on_postgresql(pg_project: Path, tmp_path: Path) -> None:
    with Lethe.open(pg_project) as lt:
        assert lt.engine.dialect.name == "postgresql"
        _flow(lt, tmp_path)


def test_failed_policy_publishes_nothing_and_logs_the_attempt(lt: Lethe) -> None:
    r = lt.file(subject="dave@example.com", classes=[5], legal_basis="gdpr-17-1-b")
    lt.approve(r.id, actor="dpo")
    size = lt.log.size()
    impossible = Policy(min_zrf=0.999)  # the filtered model would have to act randomly
    res = lt.apply(MODEL, phase="mask", relearn=False, progress=False, policy=impossible)
    assert not res.passed and res.outcome == "failed"
    assert res.onnx_path is None and lt.published(MODEL) is None
    assert not (lt.model_dir(MODEL) / "published").exists()
    assert not (lt.model_dir(MODEL) / "applies").exists() or not any(
        (lt.model_dir(MODEL) / "applies").iterdir()
    )
    got = lt.get(r.id)
    assert got.status == "failed" and got.failure_reason == "; ".join(res.verdict.reasons)
    assert "zrf" in (got.failure_reason or "").lower()
    assert lt.log.size() == size + 1
    failed = _statements(lt)[-1].predicate
    assert failed["outcome"] == "failed" and failed["policy"]["passed"] is False
    assert failed["onnx"] is None and failed["policy"]["failures"]
    with pytest.raises(ReceiptUnavailableError):
        lt.receipt(r.id)
    # Approving again retries; with the default policy it passes.
    lt.approve(r.id, actor="dpo", reason="retry with the default policy")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    assert lt.get(r.id).status == "applied"
    lt.verify_log()


def test_idempotency_and_transitions(lt: Lethe) -> None:
    a = lt.file(
        subject="erin@example.com", classes=[2], legal_basis="gdpr-17-1-b", idempotency_key="abc"
    )
    again = lt.file(
        subject="erin@example.com", classes=["2"], legal_basis="gdpr-17-1-b", idempotency_key="abc"
    )
    assert again.id == a.id
    assert len(lt.list()) == 1
    with pytest.raises(IdempotencyConflictError):
        lt.file(
            subject="erin@example.com",
            classes=[4],
            legal_basis="gdpr-17-1-b",
            idempotency_key="abc",
        )
    lt.reject(a.id, actor="dpo", reason="not our customer")
    with pytest.raises(InvalidTransitionError, match="rejected"):
        lt.approve(a.id, actor="dpo")
    assert [r.id for r in lt.list(status="rejected")] == [a.id]
    assert lt.list(status=["received", "approved"]) == []


def test_bad_requests_get_typed_errors(lt: Lethe) -> None:
    ok = {"subject": "x@example.com", "legal_basis": "gdpr-17-1-b"}
    with pytest.raises(UnknownClassError, match="no class 'cat'"):
        lt.file(classes=["cat"], **ok)
    with pytest.raises(UnknownClassError):
        lt.file(classes=[10], **ok)
    with pytest.raises(SampleLevelRequestError, match="whole classes"):
        lt.file(classes=[1], samples=["img_0042.png"], **ok)
    with pytest.raises(UnknownModelError, match="no registered model"):
        lt.file(classes=[1], model="imagenet", **ok)
    with pytest.raises(RequestError, match="legal basis"):
        lt.file(subject="x@example.com", classes=[1], legal_basis="because Alice Smith asked")
    with pytest.raises(RequestError, match="subject is empty"):
        lt.file(subject="  ", classes=[1], legal_basis="gdpr-17-1-b")
    with pytest.raises(RequestError, match="every class"):
        lt.file(classes=list(range(10)), **ok)
    with pytest.raises(UnknownRequestError):
        lt.get("req-nope")
    with pytest.raises(RequestError, match="actor"):
        lt.approve(lt.file(classes=[1], **ok).id, actor=" ")
    assert len(lt.list()) == 1  # only the last, valid request was stored


def test_shred_destroys_the_link_and_is_logged(lt: Lethe) -> None:
    r = lt.file(subject="frank@example.com", classes=[6], legal_basis="gdpr-17-1-b")
    assert r.subject_key is not None
    s = lt.shred(r.id, actor="dpo")
    assert s.subject_key is None and s.shredded and s.status == "received"
    assert s.subject_commitment == r.subject_commitment  # kept, but now unlinkable
    assert _statements(lt)[-1].predicate["event"] == "request.shredded"
    assert lt.shred(r.id, actor="dpo").shredded  # idempotent
    lt.approve(r.id, actor="dpo")  # the deletion itself still goes ahead
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed


def test_overdue_listing(lt: Lethe) -> None:
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from lethe_audit.store import RequestRow

    late = lt.file(subject="g@example.com", classes=[8], legal_basis="gdpr-17-1-b")
    lt.file(subject="h@example.com", classes=[9], legal_basis="gdpr-17-1-b")
    with lt.engine.begin() as conn:
        past = datetime.now(timezone.utc) - timedelta(days=1)
        conn.execute(update(RequestRow).where(RequestRow.id == late.id).values(due_at=past))
    assert [r.id for r in lt.list(overdue=True)] == [late.id]
    assert lt.get(late.id).overdue and lt.get(late.id).to_dict()["overdue"] is True


def test_register_refuses_bad_input(lt: Lethe, tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    from lethe.errors import BankModelMismatchError, ModelRegistrationError
    from lethe.filters import FilterBank
    from lethe.models import ModelSpec, create_model, save_checkpoint

    _, test = digits.data()
    with pytest.raises(ModelRegistrationError, match="already registered"):
        lt.register_model(MODEL, digits.model_path, eval_data=test)
    with pytest.raises(ModelRegistrationError, match="lower-case"):
        lt.register_model("Bad Name", digits.model_path, eval_data=test)
    other = create_model(ModelSpec("resnet18", 10, 1, (32, 32)), seed=9)
    ckpt = save_checkpoint(
        other, ModelSpec("resnet18", 10, 1, (32, 32)), tmp_path / "o.safetensors",
        trained_by="lethe",
    )  # fmt: skip
    info = lt.register_model("other", ckpt, eval_data=test, export_onnx=False, force=True)
    assert info.bank_digest is None
    with pytest.raises(BankModelMismatchError):
        lt.attach_bank("other", digits.bank_path)
    bank = FilterBank.init(other, 10).save(tmp_path / "b.safetensors")
    assert lt.attach_bank("other", bank).bank_digest is not None
    models = {m.name: m for m in lt.models()}
    assert set(models) == {MODEL, "other"}
    assert json.loads(json.dumps(models[MODEL].to_dict()))["spec"]["arch"] == "resnet18"
