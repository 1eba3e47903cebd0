"""Model versions that keep their deletions (issue 16): a retrained model registered with
``supersedes`` inherits the standing deletions of the old one, cannot be published until they
are applied to it (or it is attested, and measured, to have been trained without them), and
the log shows the chain; rolling back never republishes an apply that forgets less.

Real components throughout: the digits resnet18 and its bank, SQLite and PostgreSQL, the
signed log verified offline by lethe_audit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lethe.errors import (
    ClassMismatchError,
    InheritedDeletionsPendingError,
    ModelRegistrationError,
    RollbackError,
    TrainedWithoutRefusedError,
    UnknownModelError,
)
from lethe.workflow import Lethe
from lethe_audit.statements import Envelope, Statement
from lethe_audit.verify import verify_bundle

from .conftest import MODEL

V2 = "digits-v2"
FORGET = 3


def _events(lt: Lethe) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for _, raw in lt.log.iter_entries():
        p = Statement.from_envelope(Envelope.from_json(raw)).predicate
        out.append(p)
    return out


def _applied_v1(lt: Lethe) -> str:
    r = lt.file(subject="alice@example.com", classes=[FORGET], legal_basis="gdpr-17-1-b")
    lt.approve(r.id, actor="dpo")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    return r.id


def _register_v2(lt: Lethe, digits, checkpoint: Path | None = None, **kw) -> None:  # type: ignore[no-untyped-def]
    train, test = digits.data()
    lt.register_model(
        V2,
        checkpoint or digits.model_path,
        eval_data=test,
        train_data=train,
        export_onnx=False,
        supersedes=MODEL,
        **kw,
    )


def _chain(lt: Lethe, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rid = _applied_v1(lt)
    # v2: retrained (here: the same weights, so it still recognises the class), registered as
    # the successor: the deletion applied to v1 is pending for v2.
    _register_v2(lt, digits, bank=digits.bank_path)
    assert lt.model(V2).supersedes == MODEL
    (inh,) = lt.inherited(V2)
    assert (inh.request_id, inh.from_model, inh.status) == (rid, MODEL, "pending")
    assert inh.classes == (FORGET,) and lt.get(rid).status == "applied"  # still applied for v1
    # v2 cannot be published: erase and export are refused, naming what to do.
    with pytest.raises(InheritedDeletionsPendingError, match=f"lethe apply {V2}"):
        lt.erase(V2, progress=False)
    with pytest.raises(InheritedDeletionsPendingError):
        lt.export_onnx(V2, tmp_path / "v2.onnx")
    # "Trained without the class" is refused: v2 still recognises it; nothing is logged.
    size = lt.log.size()
    with pytest.raises(TrainedWithoutRefusedError, match="still recognises"):
        lt.attest_trained_without(V2, [FORGET], reason="retrained on the 2026-12 data set")
    assert lt.log.size() == size and lt.inherited(V2)[0].status == "pending"
    # The normal apply of v2 includes the inherited class although v2 has no request itself.
    res = lt.apply(V2, phase="mask", relearn=False, progress=False)
    assert res.passed and res.forgotten_classes == (FORGET,) and rid in res.request_ids
    assert res.metrics.accuracy.forget_accuracy <= 0.01
    (inh,) = lt.inherited(V2)
    assert (inh.status, inh.apply_id) == ("applied", res.id)
    assert lt.get(rid).status == "applied" and lt.get(rid).apply_id != res.id  # v1's own
    exported = lt.export_onnx(V2, tmp_path / "v2.onnx")
    assert Path(exported.path).is_file()
    # The log shows the chain: v2 supersedes v1 (both base digests), then v2's attestation
    # covers v1's request; the bundle verifies offline.
    events = _events(lt)
    (sup,) = [p for p in events if p.get("event") == "model.superseded"]
    d = sup["details"]
    assert (d["model"], d["supersedes"]) == (V2, MODEL)
    assert d["base_digest"] == f"sha256:{lt.model(V2).base_digest}"
    assert d["supersedes_base_digest"] == f"sha256:{lt.model(MODEL).base_digest}"
    assert d["inherited_requests"] == [rid] and d["inherited_classes"] == [FORGET]
    att = [p for p in events if p.get("model", {}).get("name") == V2 and "outcome" in p]
    assert [r["id"] for r in att[-1]["requests"]] == [rid] and att[-1]["outcome"] == "applied"
    bundle = lt.export_bundle(tmp_path / "bundle.zip")
    verify_bundle(bundle, lt.verifiers(), origin=lt.log.origin())
    from click.testing import CliRunner

    from lethe_audit.cli import main as audit_main

    ok = CliRunner().invoke(
        audit_main, ["verify", str(bundle), "--key", lt.keyring.entries[0].vkey]
    )
    assert ok.exit_code == 0, ok.output
    from lethe_audit.report import build_report

    report = build_report(bundle, lt.verifiers(), origin=lt.log.origin())
    assert report.error is None and '"kind": "model.superseded"' in report.to_json()


def test_chain_on_sqlite(lt: Lethe, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _chain(lt, digits, tmp_path)


@pytest.mark.postgres
def test_chain_on_postgresql(pg_project: Path, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Lethe.open(pg_project) as lt:
        assert lt.engine.dialect.name == "postgresql"
        _chain(lt, digits, tmp_path)


def test_supersession_is_checked(lt: Lethe, digits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownModelError, match="no registered model named 'nope'"):
        lt.register_model(V2, digits.model_path, eval_data="digits", supersedes="nope")
    from lethe.data import ImageArrays

    _, test = digits.data()
    renamed = ImageArrays(test.x, test.y, tuple(f"c{i}" for i in range(10)), name="renamed")
    with pytest.raises(ClassMismatchError, match="same order"):
        lt.register_model(V2, digits.model_path, eval_data=renamed, supersedes=MODEL)
    assert [m.name for m in lt.models()] == [MODEL]  # nothing registered
    _register_v2(lt, digits)
    with pytest.raises(ModelRegistrationError, match=f"already superseded by '{V2}'"):
        lt.register_model("digits-v3", digits.model_path, eval_data=test, supersedes=MODEL)
    assert lt.inherited(V2) == []  # nothing stood when v2 came


# -- trained without the class: attested and measured ------------------------------------------


@pytest.fixture(scope="session")
def without_class(digits) -> Path:  # type: ignore[no-untyped-def]
    """The digits resnet18 retrained without class 3 (the fixture's recipe; cached, shared
    with the filters' erase test)."""
    from tests.conftest import digits_without_3

    assert FORGET == 3
    return digits_without_3(digits)


def _attest(lt: Lethe, digits, without_class: Path) -> None:  # type: ignore[no-untyped-def]
    rid = _applied_v1(lt)
    _register_v2(lt, digits, checkpoint=without_class)
    assert lt.inherited(V2)[0].status == "pending"
    size = lt.log.size()
    res = lt.attest_trained_without(
        V2, [str(FORGET)], reason="v2 was trained on the 2026-12 data set, which has no 3s"
    )
    assert res.request_ids == (rid,) and res.forget_accuracy <= res.threshold == 0.01
    assert lt.log.size() == size + 1
    (inh,) = lt.inherited(V2)
    assert inh.status == "attested" and inh.reason and "no 3s" in inh.reason
    (ev,) = [p for p in _events(lt) if p.get("event") == "model.attested_without"]
    assert ev["details"]["classes"] == [FORGET] and ev["details"]["requests"] == [rid]
    assert ev["details"]["forget_accuracy"] == res.forget_accuracy
    # class ids, never class names, in the log; measured on v2's and v1's eval data
    assert ev["details"]["per_class_forget_accuracy"] == {str(FORGET): res.forget_accuracy}
    assert ev["details"]["measured_on"] == [V2, MODEL]
    assert ev["details"]["base_digest"] == f"sha256:{lt.model(V2).base_digest}"
    lt.verify_log()


def test_attest_without_is_measured_on_sqlite(lt: Lethe, digits, without_class: Path) -> None:  # type: ignore[no-untyped-def]
    _attest(lt, digits, without_class)


@pytest.mark.postgres
def test_attest_without_is_measured_on_postgresql(
    pg_project: Path,
    digits,  # type: ignore[no-untyped-def]
    without_class: Path,
) -> None:
    with Lethe.open(pg_project) as lt:
        _attest(lt, digits, without_class)


# -- rollback -----------------------------------------------------------------------------------


def test_rollback_never_forgets_less(lt: Lethe, tmp_path: Path) -> None:
    a = lt.file(subject="a@example.com", classes=[FORGET], legal_basis="gdpr-17-1-b")
    lt.approve(a.id, actor="dpo")
    first = lt.apply(MODEL, phase="mask", relearn=False, progress=False)  # forgets {3}
    b = lt.file(subject="b@example.com", classes=[5], legal_basis="gdpr-17-1-b")
    lt.approve(b.id, actor="dpo")
    second = lt.apply(MODEL, phase="mask", relearn=False, progress=False)  # forgets {3, 5}
    c = lt.file(subject="c@example.com", classes=[5], legal_basis="gdpr-17-1-b")
    lt.approve(c.id, actor="dpo")
    third = lt.apply(MODEL, phase="mask", relearn=False, progress=False)  # {3, 5} again
    assert first.forgotten_classes == (3,) and second.forgotten_classes == third.forgotten_classes
    size = lt.log.size()
    with pytest.raises(RollbackError, match=r"bring classes \[5\] back"):
        lt.rollback(first.id)
    with pytest.raises(RollbackError, match="publishes now"):
        lt.rollback(third.id)
    assert lt.log.size() == size and lt.published(MODEL)["dir"].name == third.id  # type: ignore[index]
    back = lt.rollback(second.id)
    assert back.id == second.id and lt.model(MODEL).current_apply_id == second.id
    assert (lt.model_dir(MODEL) / "published").resolve().name == second.id
    (ev,) = [p for p in _events(lt) if p.get("event") == "apply.rolled_back"]
    assert (ev["details"]["from_apply_id"], ev["details"]["to_apply_id"]) == (third.id, second.id)
    verify_bundle(lt.export_bundle(tmp_path / "b.zip"), lt.verifiers(), origin=lt.log.origin())


# -- progress without a terminal -----------------------------------------------------------------


def test_apply_prints_progress_lines_when_stderr_is_a_pipe(project_dir: Path) -> None:
    with Lethe.open(project_dir) as lt:
        r = lt.file(subject="a@example.com", classes=[FORGET], legal_basis="gdpr-17-1-b")
        lt.approve(r.id, actor="dpo")
    run = "from lethe.cli import main; main()"
    cmd = [sys.executable, "-c", run, "--project", str(project_dir), "apply", MODEL]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [*cmd, "--phase", "mask", "--no-relearn", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(f"apply {MODEL}: 1 request(s)" in x for x in lines), lines
    verdict = [x for x in lines if x.startswith(f"apply {MODEL}: forget acc")]
    res = json.loads(done.stdout)["apply"]
    acc = res["metrics"]["accuracy"]
    assert verdict == [
        f"apply {MODEL}: forget acc {acc['forget_accuracy']:.4f}, retain acc "
        f"{acc['retain_accuracy']:.4f}: policy passed"
    ]
    assert f"apply {MODEL}: published" in lines


def test_the_cli_commands(project_dir: Path, digits) -> None:  # type: ignore[no-untyped-def]
    """`model register --supersedes`, `model pending`, the publish gate's exit code, `model
    attest-without` refused (175), `model rollback` refused (176), through the CLI."""
    from tests.workflow.test_cli import run

    with Lethe.open(project_dir) as lt:
        rid = _applied_v1(lt)
        first = lt.applies(MODEL)[-1].id
    import numpy as np

    train, test = digits.data()
    for arr, file in ((test, "ev.npz"), (train, "tr.npz")):
        np.savez(project_dir / file, x=arr.x, y=arr.y, classes=np.asarray(arr.classes, dtype=str))
    reg = run(
        project_dir, "model", "register", V2, "--checkpoint", str(digits.model_path),
        "--eval-data", str(project_dir / "ev.npz"), "--train-data", str(project_dir / "tr.npz"),
        "--bank", str(digits.bank_path), "--no-onnx", "--supersedes", MODEL,
    )  # fmt: skip
    assert reg["model"]["supersedes"] == MODEL and reg["inherited"][0]["request_id"] == rid
    pending = run(project_dir, "model", "pending", V2)
    assert pending["pending"] == 1 and pending["inherited"][0]["status"] == "pending"
    gate = run(project_dir, "erase", "--model", V2, code=174)
    assert gate["error"]["type"] == "InheritedDeletionsPendingError"
    run(project_dir, "model", "attest-without", V2, "--classes", "3", "--reason", "r", code=175)
    bad = run(project_dir, "model", "rollback", "--to", "apply-nope", code=176)
    assert "no apply with id" in bad["error"]["message"]
    same = run(project_dir, "model", "rollback", "--to", first, code=176)
    assert "publishes now" in same["error"]["message"]


def test_erase_logs_one_line_per_epoch_with_the_reports_numbers(
    digits,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `lethe erase` prints when stderr is not a terminal: one line per epoch, the loss
    the report keeps and the bar's step count."""
    import logging

    from lethe.data import to_dataset
    from lethe.filters import EraseConfig, erase

    model, spec, _ = digits.load()
    train, _ = digits.data()
    cfg = EraseConfig(epochs=2, batch_size=256)
    with caplog.at_level(logging.INFO, logger="lethe.filters"):
        _, report = erase(model, to_dataset(train, spec.preprocess), [FORGET], config=cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("erase epoch")]
    per_epoch = -(-report.retain_samples // 256)
    assert lines == [
        f"erase epoch {e + 1}/2 (step {(e + 1) * per_epoch}/{2 * per_epoch}): loss {loss:.4f}"
        for e, loss in enumerate(report.epoch_losses)
    ]
