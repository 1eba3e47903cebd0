"""`lethe_audit.report`: the report model (golden JSON), figures, tampering, privacy, CLI."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import lethe_audit
from lethe_audit import errors as E
from lethe_audit import note
from lethe_audit import statements as S
from lethe_audit.cli import EXIT_CODES, main
from lethe_audit.report import REPORT_FORMAT, build_report, report_dict, write_report
from tests.report import _bundles as B
from tests.report._tools import pdf_text, poppler

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("LETHE_REGEN_GOLDEN") == "1"


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop what depends on the run, not on the log: export time and tool version."""
    out = copy.deepcopy(doc)
    out["generator"] = "lethe-audit VERSION"
    out["bundle"]["created_at"] = "CREATED_AT"
    out["bundle"]["generator"] = "lethe-audit VERSION"
    return json.loads(json.dumps(out))


def check_golden(name: str, doc: dict[str, Any]) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.is_file(), f"{path} is missing: regenerate with LETHE_REGEN_GOLDEN=1"
    want = json.loads(path.read_text(encoding="utf-8"))
    assert doc == want, (
        f"the report model differs from {path.name}; if the change is intended, regenerate it "
        "with LETHE_REGEN_GOLDEN=1 and review the diff"
    )


class _Text(HTMLParser):
    """Visible text of an HTML page, one line per block (head and style skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._skip = 0
        self._buf = ""

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("head", "style", "script", "title"):
            self._skip += 1
        self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self._skip -= 1
        self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._buf += data

    def _flush(self) -> None:
        text = " ".join(self._buf.split())
        if text:
            self.lines.append(text)
        self._buf = ""


def first_line(html: str) -> str:
    p = _Text()
    p.feed(html)
    p.close()
    return p.lines[0]


def path_markers(*extra: Path) -> list[str]:
    repo = Path(lethe_audit.__file__).resolve().parents[2]
    marks = {str(repo), str(Path.home()), sys.prefix, "/tmp/", "/home/", "/root/", "/work/"}
    marks.update(str(p) for p in extra)
    return sorted(m for m in marks if len(m) > 1)


def personal_data() -> list[str]:
    out = list(B.SUBJECTS.values())
    out += [k.hex() for k in B.SUBJECT_KEYS.values()]
    out += B.CLASS_NAMES
    out += [s.split("@")[0] for s in B.SUBJECTS.values()]
    return out


def assert_clean(label: str, text: str, *extra: Path) -> None:
    for bad in personal_data():
        assert bad not in text, f"{label} contains personal data {bad!r}"
    for mark in path_markers(*extra):
        assert mark not in text, f"{label} contains the local path {mark!r}"


# --- the report model --------------------------------------------------------------------------


def test_golden_json_report(fixed: Any) -> None:
    report = build_report(fixed.bundle, [B.vkey()], now=B.NOW)
    assert report.passed and report.error is None
    doc = normalise(report.to_dict())
    assert doc["format"] == REPORT_FORMAT
    assert next(iter(json.loads(report.to_json()))) == "headline"
    check_golden("report.json", doc)


def test_report_reads_the_story(fixed: Any) -> None:
    doc = report_dict(fixed.bundle, B.vkey(), now=B.NOW)
    assert doc["headline"].startswith("Verification passed: all 13 log entries")
    reqs = {r["id"]: r for r in doc["requests"]}
    a, b, c, d = (reqs[x] for x in (B.REQ_A, B.REQ_B, B.REQ_C, B.REQ_D))
    assert (a["status"], a["deadline"]["state"], a["overdue"]) == ("applied", "met", False)
    assert (b["status"], b["deadline"]["state"], b["overdue"]) == ("applied", "late", True)
    assert b["deadline"]["days"] == pytest.approx(32.12, abs=0.01)  # 2024-04-01 -> 05-03 12:00
    assert (c["status"], c["rejected_at"]) == ("rejected", "2024-05-02T10:07:00Z")
    assert (d["status"], d["deadline"]["state"], d["failed_applies"]) == ("failed", "overdue", [11])
    assert b["shredded_at"] == "2024-05-20T00:00:00Z" and a["shredded_at"] is None
    assert a["apply_index"] == b["apply_index"] == 9 and a["classes"] == [3]
    assert doc["summary"] == {
        "requests": 4,
        "applied": 2,
        "masked_only": 2,
        "erased": 0,
        "failed": 1,
        "rejected": 1,
        "pending": 0,
        "overdue": 2,
        "shredded": 1,
        "applies": 1,
        "failed_applies": 1,
    }
    applied, failed = doc["applies"]
    assert applied["inclusion"]["verified"] and applied["inclusion"]["checkpoint_size"] == 13
    assert failed["inclusion"]["verified"]
    m = applied["metrics"]
    rows = {r["metric"]: r for r in m["rows"]}
    assert rows["forget_accuracy"]["after"] == 0.0
    assert rows["forget_accuracy"]["before"] == pytest.approx(81 / 82)
    assert rows["retain_accuracy"]["delta"] == pytest.approx(-1 / 322)
    assert [c["class"] for c in m["per_class"] if c["forgotten"]] == [3, 7]
    assert m["recheck"]["passed"] and m["recheck"]["agrees_with_log"]
    assert failed["policy"]["failures"] == ["forget accuracy 0.06504 > 0.01"]
    assert not failed["metrics"]["recheck"]["passed"]
    assert failed["metrics"]["recheck"]["agrees_with_log"]
    # The same log as a .zip gives the same report.
    zipped = report_dict(fixed.bundle_zip, [B.vkey()], now=B.NOW)
    zipped["bundle"]["name"] = doc["bundle"]["name"]
    assert zipped == doc


def test_untrusted_key_fails_and_trusts_nothing(fixed: Any) -> None:
    stranger = note.Signer.from_seed(B.ORIGIN, bytes(32)).vkey
    report = build_report(fixed.bundle, [stranger], now=B.NOW)
    assert isinstance(report.error, E.SignatureError)
    assert report.headline.startswith("Verification FAILED at entry 0: no signature by a trusted")
    assert report.data["log"]["checkpoint_size"] is None
    assert report.data["applies"] == [] and report.data["requests"] == []
    assert report.data["log"]["keys"][0]["trusted"] is False


# --- figures ----------------------------------------------------------------------------------


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_authenticated_figures_are_shown_others_listed(fixed: Any) -> None:
    report = build_report(fixed.bundle, [B.vkey()], now=B.NOW)
    applied = report.data["applies"][0]
    assert [f["kind"] for f in applied["figures"]] == ["alpha_summary", "channel_overlap"]
    assert all(f["event_index"] == 10 and f["embedded"] for f in applied["figures"])
    rows = {Path(a["path"]).name: a for a in report.data["log"]["attachments"]}
    assert not rows[f"{B.APPLY_ID}.extra.png"]["authenticated"]
    assert "differs" in rows[f"{B.APPLY_ID}.extra.png"]["reason"]
    assert not rows["operator-notes.txt"]["authenticated"]
    html = report.to_html()
    # The apply covers two requests: it is shown in full in the first one's section, and the
    # second one's section refers to it with a summary of its own class.
    srcs = _img_sources(html)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert html.count(f'together with request <a href="#request-{B.REQ_A}">') == 1
    assert "class 7 100.00% → 0.00%" in html
    shown = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert shown == {
        (B.DATA / f"{k}.png").read_bytes() for k in ("alpha_summary", "channel_overlap")
    }
    assert "unauthenticated" in html
    assert report.to_pdf().startswith(b"%PDF")


def test_figure_with_a_changed_file_is_not_shown(fixed: Any, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(fixed.bundle, bundle)
    fig = bundle / "attachments" / f"{B.APPLY_ID}.alpha_summary.png"
    fig.write_bytes(B.DATA.joinpath("channel_overlap.png").read_bytes())
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    # The manifest no longer matches: verification fails, and the figure is unauthenticated.
    assert isinstance(report.error, E.BundleError)
    assert [f["kind"] for f in report.data["applies"][0]["figures"]] == ["channel_overlap"]
    assert len(set(_img_sources(report.to_html()))) == 1


def test_report_without_figures_or_attachments(fixed: Any) -> None:
    report = build_report(fixed.plain, [B.vkey()], now=B.NOW)
    assert report.passed
    assert all(a["figures"] == [] for a in report.data["applies"])
    assert report.data["log"]["attachments"] == []
    assert report.data["warnings"] == []
    html = report.to_html()
    assert "<img" not in html and "The bundle has no attachments." in html
    assert report.to_pdf().startswith(b"%PDF")
    # Same story otherwise: requests and metrics match the bundle with figures.
    full = build_report(fixed.bundle, [B.vkey()], now=B.NOW).data
    assert [r["status"] for r in report.data["requests"]] == [r["status"] for r in full["requests"]]
    assert report.data["applies"][0]["metrics"] == full["applies"][0]["metrics"]


# --- tampering ---------------------------------------------------------------------------------


def _edit_entry(bundle: Path, index: int) -> None:
    path = bundle / "entries.jsonl"
    lines = path.read_bytes().split(b"\n")
    env = json.loads(lines[index])
    statement = json.loads(base64.b64decode(env["payload"]))
    statement["predicate"]["details"]["classes"] = [9]
    env["payload"] = base64.b64encode(S.canonical_json(statement)).decode("ascii")
    lines[index] = S.canonical_json(env)
    path.write_bytes(b"\n".join(lines))


def _fix_manifest(bundle: Path) -> None:
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    for name in doc["files"]:
        data = (bundle / name).read_bytes()
        doc["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@pytest.mark.parametrize("manifest_fixed", [False, True], ids=["as-edited", "manifest-fixed"])
def test_tampered_entry_yields_a_report_naming_it(
    fixed: Any, tmp_path: Path, manifest_fixed: bool
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(fixed.bundle, bundle)
    _edit_entry(bundle, 4)
    if manifest_fixed:
        _fix_manifest(bundle)
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    want = "Verification FAILED at entry 4: "
    assert report.headline.startswith(want), report.headline
    if manifest_fixed:
        assert isinstance(report.error, E.SignatureError) and report.error.index == 4
        assert report.data["verification"]["located"] is None
    else:
        assert isinstance(report.error, E.BundleError)
        assert report.data["verification"]["located"]["index"] == 4
    assert not report.data["verification"]["passed"]
    # Every format says it first.
    assert json.loads(report.to_json())["headline"] == report.headline
    assert (
        report.to_json().splitlines()[0].startswith('{"headline": "Verification FAILED at entry 4')
    )
    html = report.to_html()
    assert first_line(html).startswith(want)
    assert f"<title>{want}" in html
    # The tampered request is not trusted; the others still show.
    assert B.REQ_D not in {r["id"] for r in report.data["requests"]} or all(
        ev["index"] != 4 for r in report.data["requests"] for ev in r["events"]
    )
    # The CLI writes the report, then exits with the verification error's code.
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", str(bundle), "--key", B.vkey(), "-o", str(out)])
    code = EXIT_CODES[E.SignatureError] if manifest_fixed else EXIT_CODES[E.BundleError]
    assert res.exit_code == code, res.output
    assert first_line(out.read_text(encoding="utf-8")).startswith(want)
    with pytest.raises(E.VerificationError):
        write_report(bundle, [B.vkey()], tmp_path / "r.json", strict=True)
    assert json.loads((tmp_path / "r.json").read_text())["headline"].startswith(want)
    pdf = tmp_path / "r.pdf"
    write_report(bundle, [B.vkey()], pdf)
    if poppler_available():
        assert pdf_text(pdf).strip().splitlines()[0].strip().startswith("Verification FAILED at")


def poppler_available() -> bool:
    return shutil.which("pdftotext") is not None


def test_removed_entry_names_the_checkpoint(fixed: Any, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(fixed.bundle, bundle)
    path = bundle / "entries.jsonl"
    lines = path.read_bytes().split(b"\n")
    del lines[12]
    path.write_bytes(b"\n".join(lines))
    _fix_manifest(bundle)
    report = build_report(bundle, [B.vkey()], now=B.NOW)
    assert isinstance(report.error, E.CheckpointError)
    assert "size 13" in report.headline and report.headline.startswith("Verification FAILED")


# --- privacy -----------------------------------------------------------------------------------


def test_no_personal_data_or_local_paths_in_any_report(fixed: Any, tmp_path: Path) -> None:
    outputs = {}
    for fmt in ("html", "json", "pdf"):
        out = tmp_path / f"report.{fmt}"
        write_report(fixed.bundle, [B.vkey()], out)
        outputs[fmt] = out
    for fmt in ("html", "json"):
        assert_clean(fmt, outputs[fmt].read_text(encoding="utf-8"), fixed.root, tmp_path)
    raw = outputs["pdf"].read_bytes()
    assert_clean("pdf bytes", raw.decode("latin-1"), fixed.root, tmp_path)
    if poppler_available():
        text = pdf_text(outputs["pdf"])
        assert "Verification passed" in text and B.REQ_A in text
        assert_clean("pdf text", text, fixed.root, tmp_path)
    else:
        poppler("pdftotext")  # skips with the reason


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_report_formats_and_json(fixed: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    for name, magic in (("r.html", b"<!DOCTYPE html>"), ("r.pdf", b"%PDF"), ("r.json", b"{")):
        out = tmp_path / name
        res = runner.invoke(
            main, ["report", str(fixed.bundle_zip), "--key", B.vkey(), "-o", str(out)]
        )
        assert res.exit_code == 0, res.output
        assert out.read_bytes().startswith(magic)
        # The verdict prints last: the trusted keys and the file written come first.
        assert res.output.splitlines()[-1].startswith("Verification passed")
        assert res.output.startswith("trusted keys: ")
    out = tmp_path / "report.data"
    res = runner.invoke(
        main,
        [
            "report",
            str(fixed.bundle),
            "--key",
            B.vkey(),
            "-o",
            str(out),
            "--format",
            "json",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["ok"] and info["format"] == "json" and info["summary"]["requests"] == 4
    assert json.loads(out.read_text())["format"] == REPORT_FORMAT
    res = runner.invoke(
        main,
        ["report", str(fixed.bundle), "--key", B.vkey(), "-o", str(out), "--model", str(out)],
    )
    assert res.exit_code == 2
    res = runner.invoke(
        main,
        ["report", str(fixed.bundle), "--key", B.vkey(), "-o", str(out), "--origin", "other.org/x"],
    )
    assert res.exit_code == EXIT_CODES[E.CheckpointError]


# --- re-measuring an ONNX model ----------------------------------------------------------------


def _tiny_classifier() -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3, 4), np.float32)
    w[0, 0] = w[1, 1] = w[2, 2] = 5.0
    b = np.array([0.0, 0.0, -100.0], np.float32)  # class 2 is never predicted: forgotten
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(b, "fc.bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _eval_data(seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(0.0, 0.1, size=(y.size, 1, 2, 2)).astype(np.float32)
    x.reshape(y.size, 4)[np.arange(y.size), y] += 1.0
    return x, y


@pytest.fixture(scope="module")
def attested_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lethe_audit import store
    from lethe_audit.log import AuditLog
    from lethe_audit.metrics import ImageSet, OnnxBackend, evaluate
    from lethe_audit.model import ModelMetadata, content_hash, sign_model

    root = tmp_path_factory.mktemp("report-onnx")
    url = f"sqlite:///{root / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[B.signer()])
    try:
        log.initialize()
        rid = "req-onnx-0001"
        log.append(S.LifecycleEvent("request.approved", "2024-05-02T00:00:00Z", request_id=rid))
        cp = log.head()
        meta = ModelMetadata(
            model_name="tiny",
            base_digest="sha256:" + "1a" * 32,
            folded_digest="sha256:" + "2b" * 32,
            log_origin=cp.origin,
            log_size=cp.size,
            log_root=base64.b64encode(cp.root).decode("ascii"),
            requests=(rid,),
            forgotten_classes=(2,),
            lethe_version="0.1.0",
        )
        signed = sign_model(_tiny_classifier(), meta, [B.signer()])
        blob = signed.SerializeToString()
        x, y = _eval_data(0)
        logged = evaluate(
            OnnxBackend(blob), ImageSet(x, y, 3), forget=[2], seed=0, progress=False
        ).to_dict()
        att = S.UnlearningAttestation(
            outcome="applied",
            requests=(
                S.RequestRecord(
                    rid,
                    S.hmac_commitment(b"k" * 32, "someone"),
                    (2,),
                    "gdpr-17-1-a",
                    "2024-05-01T00:00:00Z",
                    "2024-05-31T00:00:00Z",
                    "2024-05-02T00:00:00Z",
                ),
            ),
            forgotten_classes=(2,),
            applied_at="2024-05-03T00:00:00Z",
            model=S.ModelRef("tiny", meta.base_digest, meta.folded_digest),
            filter_bank_digest="sha256:" + "3c" * 32,
            method=S.MethodRef("weight-filtering", "0.1.0", {}),
            metrics=logged,
            policy=S.PolicyVerdict({"max_forget_accuracy": 0.01}, True, ()),
            onnx=S.OnnxRef(hashlib.sha256(blob).hexdigest(), content_hash(signed)),
        )
        log.append(att.to_statement(onnx_name="tiny.onnx"))
        bundle = log.export_bundle(root / "bundle")
    finally:
        log.engine.dispose()
    model = root / "tiny.onnx"
    model.write_bytes(blob)
    same = root / "eval.npz"
    np.savez(same, x=x, y=y)
    other = root / "other.npz"
    x2, y2 = _eval_data(1)
    x2[y2 == 0] = x2[y2 == 1]  # class 0 now looks like class 1: accuracy differs from the log
    np.savez(other, x=x2, y=y2)
    return {"bundle": bundle, "model": model, "same": same, "other": other, "root": root}


def test_remeasure_agrees_with_the_log(attested_model: dict[str, Path]) -> None:
    p = attested_model
    report = build_report(p["bundle"], [B.vkey()], model=p["model"], eval_data=p["same"])
    rm = report.data["remeasure"]
    assert rm["model"]["signature"]["verified"] and rm["model"]["matches_attestation"]
    assert rm["model"]["attestation_index"] == 1
    assert rm["eval_data"]["digest_matches"]
    assert rm["agrees"] and rm["passed"]
    rows = {r["metric"]: r for r in rm["rows"]}
    assert rows["forget_accuracy"]["measured"] == rows["forget_accuracy"]["logged"] == 0.0
    assert rows["retain_accuracy"]["measured"] == 1.0 and rows["retain_accuracy"]["equal"]
    html = report.to_html()
    assert "agrees with the log" in html and "equals the logged digest" in html
    assert_clean("remeasure html", html, p["root"])
    assert report.to_pdf().startswith(b"%PDF")


def test_remeasure_on_other_data_shows_the_difference(attested_model: dict[str, Path]) -> None:
    p = attested_model
    rm = build_report(p["bundle"], [B.vkey()], model=p["model"], eval_data=p["other"]).data[
        "remeasure"
    ]
    assert not rm["eval_data"]["digest_matches"] and not rm["agrees"]
    pc = {c["class"]: c for c in rm["per_class"]}
    assert pc[0]["measured"] == 0.0 and pc[0]["difference"] == -1.0
    rows = {r["metric"]: r for r in rm["rows"]}
    assert rows["retain_accuracy"]["differing_samples"] == 40


def test_remeasure_of_an_unsigned_model_and_bad_data(
    attested_model: dict[str, Path], tmp_path: Path
) -> None:
    import onnx

    p = attested_model
    bare = tmp_path / "bare.onnx"
    onnx.save(_tiny_classifier(), str(bare))
    rm = build_report(p["bundle"], [B.vkey()], model=bare, eval_data=p["same"]).data["remeasure"]
    assert not rm["model"]["signature"]["verified"]
    assert "not signed" in rm["model"]["signature"]["message"]
    # Same graph and weights: the content hash (which leaves metadata out) still matches.
    assert rm["model"]["matches_attestation"] and rm["agrees"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 1, 2, 2), np.float64), y=np.zeros(3, np.int64))
    with pytest.raises(E.ReportError, match="float32"):
        build_report(p["bundle"], [B.vkey()], model=p["model"], eval_data=bad)
    res = CliRunner().invoke(
        main,
        [
            "report",
            str(p["bundle"]),
            "--key",
            B.vkey(),
            "--model",
            str(p["model"]),
            "--eval-data",
            str(bad),
            "-o",
            str(tmp_path / "x.html"),
        ],
    )
    assert res.exit_code == EXIT_CODES[E.ReportError]
    with pytest.raises(E.ReportError, match="both"):
        build_report(p["bundle"], [B.vkey()], model=p["model"])


# An import hook, not ``sys.modules[name] = None``: scipy (via scikit-learn, used by the
# feature probe) looks torch up in sys.modules and would trip over a None entry, which a
# machine without torch never has.
TORCH_FREE = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "lethe"):
            raise ImportError(f"{name} is blocked: lethe_audit must not need it")
        return None
sys.meta_path.insert(0, Block())
from pathlib import Path
from lethe_audit.report import build_receipt_page, build_report
bundle, onnx_bundle, model, data, receipt, vkey = sys.argv[1:7]
r = build_report(bundle, [vkey])
assert r.to_pdf().startswith(b"%PDF") and r.to_html() and r.to_json()
r = build_report(onnx_bundle, [vkey], model=model, eval_data=data)
assert r.data["remeasure"]["agrees"] and r.to_pdf().startswith(b"%PDF")
page = build_receipt_page(Path(receipt), [vkey], request_id=sys.argv[7])
assert page.to_html() and page.to_text()
leaked = [m for m in ("torch", "timm", "lethe") if m in sys.modules]
assert not leaked, leaked
print("ok")
"""


def test_reports_need_no_torch(fixed: Any, attested_model: dict[str, Path]) -> None:
    import subprocess

    root = Path(lethe_audit.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    args = [
        fixed.bundle,
        attested_model["bundle"],
        attested_model["model"],
        attested_model["same"],
        fixed.receipts["applied"],
        B.vkey(),
        B.REQ_A,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
