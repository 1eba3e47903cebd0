"""Policies that find nothing to check must not pass: a hostile operator hands out a receipt of
a lifecycle event, or of a failed apply, as if it proved a compliant deletion."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lethe_audit import note, store
from lethe_audit.cli import EXIT_CODES, main
from lethe_audit.errors import NothingToCheckError, PolicyError
from lethe_audit.log import AuditLog
from lethe_audit.verify import DeadlinesMet, MetricThreshold, verify_bundle, verify_receipt
from tests.audit._audit_helpers import attestation, event


def _log(tmp_path: Path, signer: note.Signer) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[signer])
    log.initialize()
    return log


def test_receipts_without_an_applied_attestation_fail_metric_and_deadline_policies(
    tmp_path: Path,
) -> None:
    signer = note.Signer.generate("example.org/lethe-policy")
    log = _log(tmp_path, signer)
    log.append(event(0))  # entry 0: request.received, no metrics
    failed = dataclasses.replace(attestation(1, forget=0.9), outcome="failed")
    log.append(failed)  # entry 1: a failed apply
    log.append(attestation(2, forget=0.0))  # entry 2: the honest applied one
    v = [signer.verifier()]
    policies = [MetricThreshold("forget_accuracy", max=0.01)]
    for index in (0, 1):
        for policy in (MetricThreshold("forget_accuracy", max=0.01), DeadlinesMet()):
            with pytest.raises(NothingToCheckError, match="nothing to check") as e:
                verify_receipt(log.receipt(index), v, policies=[policy])
            assert isinstance(e.value, PolicyError)
    verify_receipt(log.receipt(2), v, policies=[*policies, DeadlinesMet()])

    code = EXIT_CODES[NothingToCheckError]
    assert code not in (0, EXIT_CODES[PolicyError])
    for index in (0, 1):
        path = tmp_path / f"r{index}.tlog-proof"
        path.write_text(log.receipt(index))
        res = CliRunner().invoke(
            main,
            ["receipt", "verify", str(path), "--key", signer.vkey, "--metric",
             "forget_accuracy<=0.01", "--deadlines", "--json"],
        )  # fmt: skip
        assert res.exit_code == code, res.output
        assert json.loads(res.stdout)["error"]["type"] == "NothingToCheckError"


def test_log_without_applies_fails_metric_policies(tmp_path: Path) -> None:
    signer = note.Signer.generate("example.org/lethe-policy")
    log = _log(tmp_path, signer)
    log.append(event(0))
    bundle = log.export_bundle(tmp_path / "b")
    with pytest.raises(NothingToCheckError):
        verify_bundle(bundle, [signer.verifier()], policies=[DeadlinesMet()])
    verify_bundle(bundle, [signer.verifier()])  # no policy asked: nothing to fail
