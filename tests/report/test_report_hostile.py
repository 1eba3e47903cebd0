"""Reports under attack: a tampered model next to a good bundle, hostile file names in the
copy-paste commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from lethe_audit import errors as E
from lethe_audit.cli import EXIT_CODES, main
from lethe_audit.report import build_report
from tests.report import _bundles as B
from tests.report.test_report import attested_model  # noqa: F401  (the fixture)


def _tampered(model: Path, out: Path) -> Path:
    """The attested model with one weight changed: what a hostile distributor ships."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_model_from_string(model.read_bytes())
    w = m.graph.initializer[0]
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] += 1.0
    w.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), w.name))
    out.write_bytes(m.SerializeToString())
    return out


def test_report_with_a_tampered_model_fails_with_the_model_error(
    attested_model: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    p = attested_model
    bad = _tampered(p["model"], tmp_path / "tiny.onnx")
    report = build_report(p["bundle"], [B.vkey()], model=bad, eval_data=p["same"])
    assert not report.passed
    assert isinstance(report.error, E.ModelVerificationError) and report.error.what == "content"
    assert report.headline.startswith("Verification FAILED for the model tiny.onnx")
    assert report.data["verification"]["error"]["type"] == "ModelVerificationError"
    out = tmp_path / "r.html"
    res = CliRunner().invoke(
        main,
        ["report", str(p["bundle"]), "--key", B.vkey(), "--model", str(bad),
         "--eval-data", str(p["same"]), "-o", str(out)],
    )  # fmt: skip
    assert res.exit_code == EXIT_CODES[E.ModelVerificationError] == 50, res.output
    assert "Verification passed" not in res.output
    assert "Verification FAILED for the model tiny.onnx" in res.output
    assert "Verification passed" not in out.read_text()
    check = CliRunner().invoke(main, ["model", "verify", str(bad), "--key", B.vkey()])
    assert check.exit_code == 50  # the same code as `model verify`
