"""One verdict type: ``Verdict`` with one JSON form; ``PolicyVerdict`` is only its serialised
form inside signed statements (made by ``to_policy_verdict``)."""

from __future__ import annotations

import json

import pytest

from lethe_audit.errors import ResultFormatError
from lethe_audit.metrics import CheckOutcome, Verdict
from lethe_audit.statements import PolicyVerdict


def _failed() -> Verdict:
    check = CheckOutcome("max_forget_accuracy", False, 0.2, 0.01, "forget accuracy 0.2 > 0.01")
    ok = CheckOutcome("max_retain_drop", True, 0.0, 0.02, None)
    return Verdict(
        passed=False,
        reasons=("forget accuracy 0.2 > 0.01",),
        checks=(check, ok),
        thresholds={"max_forget_accuracy": 0.01, "max_retain_drop": 0.02},
    )


def test_the_json_form_round_trips_with_its_checks() -> None:
    verdict = _failed()
    data = json.loads(json.dumps(verdict.to_dict()))
    assert set(data) == {"passed", "reasons", "checks", "thresholds"}
    assert Verdict.from_dict(data) == verdict


def test_a_verdict_stored_without_checks_still_reads() -> None:
    old = {"passed": False, "reasons": ["forget accuracy 0.2 > 0.01"], "thresholds": {"x": 1}}
    verdict = Verdict.from_dict(old)
    assert verdict.checks == () and verdict.reasons == ("forget accuracy 0.2 > 0.01",)
    assert verdict.thresholds == {"x": 1} and not verdict.passed
    with pytest.raises(ResultFormatError, match="unknown keys"):
        Verdict.from_dict({**old, "failures": []})
    with pytest.raises(ResultFormatError, match="passed"):
        Verdict.from_dict({"reasons": []})


def test_the_statement_form_is_made_from_the_verdict() -> None:
    verdict = _failed()
    pv = verdict.to_policy_verdict()
    assert isinstance(pv, PolicyVerdict)
    assert pv.to_dict() == {
        "thresholds": {"max_forget_accuracy": 0.01, "max_retain_drop": 0.02},
        "passed": False,
        "failures": ["forget accuracy 0.2 > 0.01"],
    }
