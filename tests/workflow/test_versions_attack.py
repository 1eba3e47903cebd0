"""Attacks on model versions: skipping an inherited deletion with an attestation the
measurement cannot back, looping or forking the supersession chain, rolling back to an apply
that forgets less.

Real components: the digits resnet18 (and the cached one retrained without class 3), SQLite,
the signed log.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from lethe.errors import (
    InconsistentStateError,
    InheritedDeletionsPendingError,
    ModelRegistrationError,
    RollbackError,
    TrainedWithoutRefusedError,
    UnknownModelError,
)
from lethe.workflow import Lethe
from lethe_audit.store import ModelRow

from .conftest import MODEL
from .test_model_versions import FORGET, V2, _applied_v1, _events
from .test_model_versions import without_class as without_class  # a fixture

OTHER = 5  # a class the retrained model still recognises


def _subset(data, keep):  # type: ignore[no-untyped-def]
    from lethe.data import ImageArrays

    return ImageArrays(data.x[keep], data.y[keep], data.classes, name="crafted-eval")


def _register(lt: Lethe, digits, checkpoint: Path, eval_data) -> None:  # type: ignore[no-untyped-def]
    train, _ = digits.data()
    lt.register_model(
        V2, checkpoint, eval_data=eval_data, train_data=train, export_onnx=False,
        supersedes=MODEL, force=True,
    )  # fmt: skip


def _file_and_approve(lt: Lethe, cls: int, who: str) -> str:
    r = lt.file(subject=who, classes=[cls], legal_basis="gdpr-17-1-b", model=MODEL)
    lt.approve(r.id, actor="dpo")
    return r.id


def test_eval_data_without_the_class_cannot_make_an_attestation_vacuous(  # type: ignore[no-untyped-def]
    lt: Lethe, digits
) -> None:
    """v2 is v1's own weights (it recognises class 3) registered with eval data that has no 3s:
    the attestation is measured on v1's eval data too, and refused."""
    _applied_v1(lt)
    _, test = digits.data()
    _register(lt, digits, digits.model_path, _subset(test, test.y != FORGET))
    size = lt.log.size()
    with pytest.raises(TrainedWithoutRefusedError, match="still recognises"):
        lt.attest_trained_without(V2, [FORGET], reason="retrained without the 3s (a lie)")
    assert lt.log.size() == size and lt.inherited(V2)[0].status == "pending"
    with pytest.raises(InheritedDeletionsPendingError):
        lt.erase(V2, progress=False)


def test_a_few_easy_samples_cannot_hide_a_recognised_class_in_the_mean(  # type: ignore[no-untyped-def]
    lt: Lethe, digits, without_class: Path
) -> None:
    """v2 really lacks class 3 but still knows class 5; its eval data is 40 copies of the 3s and
    a single 5: the mean over both classes would be ~0.003 (under 0.01), the per-class one for 5
    is not, and v1's eval data has all its 5s."""
    _applied_v1(lt)
    _file_and_approve(lt, OTHER, "bob@example.com")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    _, test = digits.data()
    threes = np.flatnonzero(test.y == FORGET)
    one_five = np.flatnonzero(test.y == OTHER)[:1]
    crafted = _subset(test, np.concatenate([np.tile(threes, 40), one_five]))
    _register(lt, digits, without_class, crafted)
    size = lt.log.size()
    with pytest.raises(TrainedWithoutRefusedError, match="still recognises") as e:
        lt.attest_trained_without(V2, [FORGET, OTHER], reason="no 3s and no 5s (half a lie)")
    assert "'5'" in str(e.value)  # the per-class numbers name the class it still knows
    assert lt.log.size() == size
    assert {d.status for d in lt.inherited(V2)} == {"pending"}


def test_an_honest_attestation_is_measured_on_the_superseded_models_eval_data(  # type: ignore[no-untyped-def]
    lt: Lethe, digits, without_class: Path
) -> None:
    """The natural case: v2 was trained without the 3s and its eval data has none either; the
    measurement uses v1's 3s (and says so in the log) instead of refusing for lack of data."""
    rid = _applied_v1(lt)
    _, test = digits.data()
    _register(lt, digits, without_class, _subset(test, test.y != FORGET))
    res = lt.attest_trained_without(V2, [FORGET], reason="the 2026-12 data set has no 3s")
    assert res.request_ids == (rid,) and max(res.per_class.values()) <= res.threshold
    (ev,) = [p for p in _events(lt) if p.get("event") == "model.attested_without"]
    assert ev["details"]["measured_on"] == [V2, MODEL]
    assert ev["details"]["per_class_forget_accuracy"] == res.per_class
    lt.verify_log()


def test_the_supersession_chain_cannot_loop_or_leave_the_project(lt: Lethe, digits) -> None:  # type: ignore[no-untyped-def]
    _no_loops(lt, digits)


@pytest.mark.postgres
def test_on_postgresql_the_supersession_chain_cannot_loop(pg_project: Path, digits) -> None:  # type: ignore[no-untyped-def]
    with Lethe.open(pg_project) as lt:
        assert lt.engine.dialect.name == "postgresql"
        _no_loops(lt, digits)


def _no_loops(lt: Lethe, digits) -> None:  # type: ignore[no-untyped-def]
    _, test = digits.data()
    for bad in ("../digits", "DIGITS", "digits\x00", "nope"):
        with pytest.raises((UnknownModelError, ModelRegistrationError)):
            lt.register_model("digits-v9", digits.model_path, eval_data=test, supersedes=bad,
                              export_onnx=False)  # fmt: skip
    lt.register_model(V2, digits.model_path, eval_data=test, export_onnx=False, supersedes=MODEL)
    # v1 cannot be registered again as v2's successor (A -> B -> A): its name is taken
    with pytest.raises(ModelRegistrationError, match="already registered"):
        lt.register_model(MODEL, digits.model_path, eval_data=test, supersedes=V2)
    # a loop written into the database is detected, typed, never followed forever
    with Session(lt.engine) as s, s.begin():
        s.execute(update(ModelRow).where(ModelRow.name == MODEL).values(supersedes=V2))
    with pytest.raises(InconsistentStateError, match="loops"):
        lt.inherited(V2)
    with pytest.raises(InconsistentStateError, match="loops"):
        lt.export_onnx(V2, Path(lt.model_dir(V2)) / "x.onnx")


def test_rollback_cannot_drop_a_deletion_the_new_version_inherited(lt: Lethe, digits) -> None:  # type: ignore[no-untyped-def]
    """v2 (v1's weights, its bank) publishes an apply forgetting {5}; then v1's deletion of 3
    comes in and v2's next apply folds it: rolling v2 back to the first apply is refused, and so
    is a rollback while a newly inherited deletion is pending."""
    train, test = digits.data()
    lt.register_model(V2, digits.model_path, eval_data=test, train_data=train,
                      export_onnx=False, supersedes=MODEL, bank=digits.bank_path)  # fmt: skip
    r5 = lt.file(subject="bob@example.com", classes=[OTHER], legal_basis="gdpr-17-1-b", model=V2)
    lt.approve(r5.id, actor="dpo")
    first = lt.apply(V2, phase="mask", relearn=False, progress=False)
    assert first.passed and first.forgotten_classes == (OTHER,)
    _file_and_approve(lt, FORGET, "alice@example.com")  # for v1: now pending for v2
    with pytest.raises(InheritedDeletionsPendingError):
        lt.rollback(first.id)
    second = lt.apply(V2, phase="mask", relearn=False, progress=False)
    assert second.passed and set(second.forgotten_classes) == {FORGET, OTHER}
    size = lt.log.size()
    with pytest.raises(RollbackError, match=r"bring classes \[3\] back"):
        lt.rollback(first.id)
    assert lt.log.size() == size and lt.model(V2).current_apply_id == second.id
