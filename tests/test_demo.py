"""`lethe demo --json`: the README's main command, end to end on the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lethe.cli import main

FIELDS = (
    "base_accuracy", "forgotten_classes", "forget_accuracy", "retain_accuracy", "zrf",
    "mia_efficacy", "probe_auc", "relearn_steps", "policy_passed", "onnx_parity", "onnx_path",
    "log_size", "log_verified", "receipt_verified", "project_dir",
    "erase_forget_accuracy", "erase_retain_accuracy", "erase_relearn_steps",
    "reference_relearn_steps", "relearn_ratio", "erase_probe_auc", "reference_probe_auc",
    "probe_auc_gap", "erase_seconds", "reference_retrain_seconds", "erase_policy_passed",
    "erase_onnx_path",
)  # fmt: skip


def test_demo_json_has_the_promised_fields_with_plausible_values(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    result = CliRunner().invoke(
        main,
        ["demo", "--json", "--dir", str(project), "--base-epochs", "8", "--filter-epochs", "8"],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    for field in FIELDS:
        assert field in out, field
    assert out["base_accuracy"] > 0.9
    assert out["forgotten_classes"] == [3, 7]
    assert out["forget_accuracy"] <= 0.01
    assert out["retain_accuracy"] >= out["base_retain_accuracy"] - 0.02
    assert out["policy_passed"] is True
    assert 0.3 <= out["zrf"] <= 1.0 and 0.0 <= out["mia_efficacy"] <= 1.0
    assert 0.5 <= out["probe_auc"] <= 1.0 and out["relearn_steps"] >= 0
    assert out["onnx_parity"] <= 1e-4 and Path(out["onnx_path"]).is_file()
    assert out["log_verified"] and out["receipt_verified"] and out["onnx_verified"]
    # received x2, approved x2, registered, bank, attestation, figures
    assert out["log_size"] >= 8
    assert out["project_dir"] == str(project)
    assert Path(out["receipt_path"]).is_file() and Path(out["bundle_path"]).exists()
    assert out["report_path"] and Path(out["report_path"]).read_text().startswith("<!DOCTYPE html>")
    # Phase 2 beside the depth reference: deeper than the mask, retain kept, ratio consistent.
    assert out["erase_forget_accuracy"] <= 0.05
    assert out["erase_retain_accuracy"] >= out["base_retain_accuracy"] - 0.03
    assert out["erase_relearn_steps"] > out["relearn_steps"]
    assert out["relearn_ratio"] == pytest.approx(
        out["erase_relearn_steps"] / out["reference_relearn_steps"]
    )
    gap = out["erase_probe_auc"] - out["reference_probe_auc"]
    assert out["probe_auc_gap"] == pytest.approx(gap)
    assert out["erase_seconds"] > 0 and out["reference_retrain_seconds"] > 0
    if out["erase_policy_passed"]:
        assert Path(out["erase_onnx_path"]).is_file()
    else:  # the masked model stays published and the receipt vouches for it
        assert out["erase_onnx_path"] is None
