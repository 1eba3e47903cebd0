"""The `lethe` admin CLI through click's CliRunner, and its reference docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from lethe.cli import main
from lethe.cli._errors import EXIT_CODES
from lethe_audit.cli import main as audit_main
from tests._cli_docs import check_documented

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def run(project: Path, *args: str, code: int = 0) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["--project", str(project), *args, "--json"])
    assert result.exit_code == code, (result.output, result.exception)
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["ok"] is (code == 0)
    return doc


def test_docs_describe_every_command_option_and_exit_code() -> None:
    check_documented(DOC, main, "lethe", {e: c for e, c in EXIT_CODES.items() if c >= 100})


def test_exit_codes_are_distinct_per_error_class() -> None:
    codes = list(EXIT_CODES.values())
    assert len(codes) == len(set(codes)), "two error classes share an exit code"
    assert all(0 < c < 256 for c in codes)


def test_admin_flow_through_the_cli(project_dir: Path, tmp_path: Path) -> None:
    p = project_dir
    assert [m["name"] for m in run(p, "model", "list")["models"]] == ["digits"]
    assert run(p, "model", "show")["model"]["spec"]["arch"] == "resnet18"
    assert run(p, "filters", "show")["manifest"]["format"] == "lethe/filter-bank/v1"
    figs = run(p, "filters", "explain", "-o", str(tmp_path / "figs"), "--classes", "3,5")["files"]
    assert len(figs) > 3 and all(Path(f).is_file() for f in figs)
    file_a = ["request", "file", "--subject", "a@example.com", "--class", "3"]
    file_a += ["--legal-basis", "gdpr-17-1-b", "--idempotency-key", "cli-1"]
    a = run(p, *file_a)["request"]
    assert a["status"] == "received" and len(a["subject_key"]) == 64
    again = run(p, *file_a)["request"]
    assert again["id"] == a["id"]
    b = run(
        p,
        "request",
        "file",
        "--subject",
        "b@example.com",
        "--class",
        "8",
        "--legal-basis",
        "gdpr-17-1-a",
    )["request"]
    assert (
        run(p, "request", "approve", a["id"], "--actor", "dpo")["request"]["status"] == "approved"
    )
    rejected = run(p, "request", "reject", b["id"], "--actor", "dpo", "--reason", "duplicate")
    assert rejected["request"]["status"] == "rejected"
    assert run(p, "request", "shred", b["id"], "--actor", "dpo")["request"]["shredded_at"]
    assert [r["id"] for r in run(p, "request", "list", "--status", "approved")["requests"]] == [
        a["id"]
    ]
    assert run(p, "request", "show", a["id"])["request"]["classes"] == [3]

    # Without a depth reference the default (mask + erase) is refused before anything runs.
    refused = run(p, "apply", "--quiet", code=134)
    assert "lethe model reference digits" in refused["error"]["message"]
    assert run(p, "request", "show", a["id"])["request"]["status"] == "approved"
    applied = run(p, "apply", "--phase", "mask", "--no-relearn", "--quiet")["apply"]
    assert applied["passed"] and applied["forgotten_classes"] == [3]
    assert applied["phase"] == "mask" and applied["depth"] == "masked, not yet erased"
    shown = run(p, "request", "show", a["id"])["request"]
    assert shown["status"] == "applied" and shown["depth"] == "masked, not yet erased"
    assert run(p, "erase", "--model", "digits", code=134)["error"]["type"] == (
        "MissingReferenceError"
    )
    assert (
        run(p, "apply", "--phase", "mask")["applied"] is False
    )  # nothing waits: exit 0 with a message
    receipt = tmp_path / "a.tlog-proof"
    run(p, "receipt", a["id"], "-o", str(receipt))
    vkey = run(p, "keys", "show")["keys"][0]["vkey"]
    ok = CliRunner().invoke(audit_main, ["receipt", "verify", str(receipt), "--key", vkey])
    assert ok.exit_code == 0, ok.output
    assert run(p, "log", "verify")["verified"] is True
    kinds = [e["kind"] for e in run(p, "log", "show", "--limit", "100")["entries"]]
    assert "unlearning.applied" in kinds and "request.rejected" in kinds
    assert run(p, "log", "checkpoint")["checkpoint"].startswith("test.example/lethe-log\n")

    onnx = run(p, "export", "onnx", "-o", str(tmp_path / "m.onnx"))
    assert onnx["variant"] == "fp32" and Path(onnx["path"]).is_file()
    ev = run(p, "export", "eval-data", "-o", str(tmp_path / "eval.npz"))
    assert ev["dataset_digest"] == applied["metrics"]["accuracy"]["dataset_digest"]
    q = run(p, "export", "onnx", "-o", str(tmp_path / "m8.onnx"), "--quantize", "int8")
    assert q["variant"] == "int8" and q["int8_bytes"] < q["fp32_bytes"] / 2
    assert q["metrics"]["forget_accuracy"] <= 0.01 and q["metrics"]["passed"]
    check = CliRunner().invoke(audit_main, ["model", "verify", q["path"], "--key", vkey])
    assert check.exit_code == 0, check.output
    # one feed line, step by step, from the export, the signed metadata and `model show`
    assert onnx["feed"].startswith("pixels/255 -> [0, 1]; 1 channel") and "; " in onnx["feed"]
    assert f"feed: {onnx['feed']}\n" in check.output
    show = CliRunner().invoke(main, ["--project", str(p), "model", "show"])
    assert f"feed:        {onnx['feed']}\n" in show.output, show.output

    rot = run(p, "keys", "rotate")
    assert len(rot["new"]) == 1
    assert len([k for k in run(p, "keys", "show")["keys"] if k["status"] == "active"]) == 2
    assert run(p, "log", "verify")["verified"] is True


def test_errors_map_to_their_exit_codes(project_dir: Path) -> None:
    p = project_dir
    base = ["request", "file", "--subject", "x@example.com", "--legal-basis", "gdpr-17-1-b"]
    assert run(p, *base, "--class", "3", "--sample", "img1.png", code=126)["error"]["type"] == (
        "SampleLevelRequestError"
    )
    assert run(p, *base, "--class", "zebra", code=125)["error"]["type"] == "UnknownClassError"
    assert (
        run(p, "request", "show", "req-missing", code=127)["error"]["type"] == "UnknownRequestError"
    )
    r = run(p, *base, "--class", "2")["request"]
    run(p, "request", "reject", r["id"], "--actor", "dpo", "--reason", "no")
    assert run(p, "request", "approve", r["id"], "--actor", "dpo", code=128)
    assert run(p, "receipt", r["id"], "-o", "/dev/null", code=133)
    assert run(p, "model", "show", "nope", code=122)
    empty = p.parent / "not-a-project"
    empty.mkdir()
    assert run(empty, "model", "list", code=121)["error"]["type"] == "ProjectError"
    assert list(empty.iterdir()) == []


def test_failed_policy_exits_with_the_policy_error_and_publishes_nothing(project_dir: Path) -> None:
    p = project_dir
    r = run(
        p,
        "request",
        "file",
        "--subject",
        "y@example.com",
        "--class",
        "6",
        "--legal-basis",
        "gdpr-17-1-b",
    )["request"]
    run(p, "request", "approve", r["id"], "--actor", "dpo")
    doc = run(
        p, "apply", "--phase", "mask", "--no-relearn", "--quiet", "--min-zrf", "0.999", code=19
    )
    # one policy-failure error, the same class and code as lethe-audit's
    assert doc["ok"] is False and doc["error"]["type"] == "PolicyError"
    assert doc["error"]["exit_code"] == 19 and "zrf" in doc["error"]["message"].lower()
    out = doc["apply"]
    assert out["outcome"] == "failed" and out["verdict"]["reasons"]
    assert run(p, "request", "show", r["id"])["request"]["status"] == "failed"
    assert run(p, "model", "show")["published"] is None


def test_init_and_db_upgrade(tmp_path: Path) -> None:
    p = tmp_path / "fresh"
    info = run(p, "init", "--origin", "example.org/fresh-log")
    assert info["log_size"] == 0 and info["origin"] == "example.org/fresh-log"
    assert (p / "lethe.toml").is_file() and (p / "keys" / "keyring.json").is_file()
    again = run(p, "init")
    assert again["vkeys"] == info["vkeys"]  # idempotent: the key is kept
    assert run(p, "db", "upgrade")["revisions"]
    assert run(p, "keys", "generate", code=121)["error"]["type"] == "ProjectError"


def test_filters_train_attaches_a_new_bank(project_dir: Path) -> None:
    p = project_dir
    before = run(p, "model", "show")["model"]["bank_digest"]
    out = run(
        p, "filters", "train", "--epochs", "1", "--batch-size", "256", "--seed", "5", "--quiet"
    )
    assert out["bank_digest"] != before and len(out["epochs"]) == 1
    assert run(p, "model", "show")["model"]["bank_digest"] == out["bank_digest"]
    assert run(p, "filters", "show")["manifest"]["train_config"]["seed"] == 5
    assert not (p / "models" / "digits" / "filter-train.ckpt").exists()  # cleaned up


def test_log_export_writes_the_full_bundle_with_figures(project_dir: Path, tmp_path: Path) -> None:
    """`lethe log export` writes what Lethe.export_bundle writes: the figures included."""
    import zipfile

    from lethe.workflow import Lethe

    from .conftest import MODEL

    with Lethe.open(project_dir) as lt:
        r = lt.file(subject="a@example.com", classes=[3], legal_basis="gdpr-17-1-b")
        lt.approve(r.id, actor="dpo")
        assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
        api = lt.export_bundle(tmp_path / "api.zip")
    out = tmp_path / "bundle.zip"
    doc = run(project_dir, "log", "export", "-o", str(out))
    assert doc["path"] == str(out) and doc["figures"] is True and doc["size"] >= 4
    names = sorted(zipfile.ZipFile(out).namelist())
    assert names == sorted(zipfile.ZipFile(api).namelist())
    figures = [n for n in names if "attachments/" in n]
    assert figures, names  # the filter-bank figures of the apply
    bare = run(project_dir, "log", "export", "-o", str(tmp_path / "bare.zip"), "--no-figures")
    assert not [n for n in zipfile.ZipFile(bare["path"]).namelist() if "attachments/" in n]
    vkey = run(project_dir, "keys", "show")["keys"][0]["vkey"]
    ok = CliRunner().invoke(audit_main, ["verify", str(out), "--key", vkey])
    assert ok.exit_code == 0, ok.output
    again = CliRunner().invoke(
        main, ["--project", str(project_dir), "log", "export", "-o", str(out)]
    )
    assert again.exit_code != 0 and "exists" in again.output
