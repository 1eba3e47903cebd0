"""Every `lethe-audit` file argument on a missing file, a directory, an empty file, binary
garbage and a FIFO (issue 14, item 11): a one-line error, the documented exit code, no
traceback, no hang. Plus the listed hostile inputs that used to crash with a traceback.

FIFO cases run the real CLI in a subprocess; its timeout is only a safety net against a hang.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lethe_audit import note
from lethe_audit.cli import EXIT_CODES, main
from tests.audit._audit_helpers import attestation, event

KINDS = ["missing", "directory", "empty", "garbage", "fifo"]
GARBAGE = bytes(range(256)) * 8 + b"\xff\xfe\x00\x1b[2J"


class Env:
    """A real log (SQLite), its key directory, an exported bundle, a receipt and a model."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"sqlite:///{root / 'log.db'}"
        self.keys = root / "keys"
        self.bundle = root / "bundle"
        self.receipt = root / "r.tlog-proof"
        self.model = root / "m.onnx"
        self.vkey = ""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    e = Env(tmp_path_factory.mktemp("bad-files"))
    ok(["db", "upgrade", e.url])
    ok(["keys", "generate", str(e.keys), "--name", "example.org/lethe-bad-files"])
    e.vkey = json.loads(ok(["keys", "list", str(e.keys), "--json"]))["keys"][0]["vkey"]
    ok(["log", "init", "--db", e.url, "--keys", str(e.keys)])
    ok(
        [
            "log",
            "append",
            "--db",
            e.url,
            "--keys",
            str(e.keys),
            "--event",
            "request.received",
            "--request-id",
            "req-1",
        ]
    )
    ok(["log", "export", "--db", e.url, str(e.bundle)])
    ok(["log", "receipt", "--db", e.url, "0", "-o", str(e.receipt)])
    from lethe_audit.keys import KeyRing
    from lethe_audit.model import sign_model
    from tests.audit.test_model_verify import metadata, tiny_model

    signer = KeyRing.open(e.keys).signers()[0]
    e.model.write_bytes(sign_model(tiny_model(), metadata(), signer).SerializeToString())
    return e


def ok(args: list[str]) -> str:
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, (args, r.output)
    return str(r.stdout)


def _make(kind: str, path: Path) -> Path:
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(GARBAGE)
    elif kind == "fifo":
        os.mkfifo(path)
    return path


# Each command: its arguments around the hostile file F, and the exit code per kind
# (2: click usage error, e.g. a missing file or a directory where a file is needed).
FILE_ARGS: dict[str, tuple[Callable[[Env, str], list[str]], dict[str, int]]] = {
    "verify BUNDLE": (
        lambda e, f: ["verify", f, "--key", e.vkey],
        {"missing": 2, "directory": 17, "empty": 17, "garbage": 17, "fifo": 17},
    ),
    "verify --checkpoint": (
        lambda e, f: ["verify", str(e.bundle), "--key", e.vkey, "--checkpoint", f],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "report BUNDLE": (
        lambda e, f: ["report", f, "--key", e.vkey, "-o", str(e.root / "out.json")],
        {"missing": 2, "directory": 17, "empty": 17, "garbage": 17, "fifo": 17},
    ),
    "report --model/--eval-data": (
        lambda e, f: (
            [
                "report",
                str(e.bundle),
                "--key",
                e.vkey,
                "-o",
                str(e.root / "o.json"),
                "--model",
                f,
                "--eval-data",
                f,
            ]
        ),
        {"missing": 2, "directory": 2, "empty": 60, "garbage": 60, "fifo": 3},
    ),
    "receipt verify": (
        lambda e, f: ["receipt", "verify", f, "--key", e.vkey],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "receipt show": (
        lambda e, f: ["receipt", "show", f, "--key", e.vkey],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "model verify": (
        lambda e, f: ["model", "verify", f, "--key", e.vkey],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "model verify --receipt": (
        lambda e, f: ["model", "verify", str(e.model), "--key", e.vkey, "--receipt", f],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "model info": (
        lambda e, f: ["model", "info", f],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "log append FILE": (
        lambda e, f: ["log", "append", "--db", e.url, "--keys", str(e.keys), f],
        {"missing": 2, "directory": 2, "empty": 3, "garbage": 3, "fifo": 3},
    ),
    "log export --attach": (
        lambda e, f: ["log", "export", "--db", e.url, str(e.root / f"x{len(f)}"), "--attach", f],
        {"missing": 2, "directory": 2, "fifo": 31},  # empty and binary attachments are fine
    ),
    "--passphrase-file": (
        lambda e, f: (
            [
                "keys",
                "generate",
                str(e.root / f"k{len(f)}"),
                "--name",
                "a.example/x",
                "--passphrase-file",
                f,
            ]
        ),
        {"missing": 2, "directory": 2, "empty": 30, "garbage": 30, "fifo": 30},
    ),
    "--key-file": (
        lambda e, f: ["receipt", "verify", str(e.receipt), "--key-file", f],
        {"missing": 2, "directory": 2, "empty": 30, "garbage": 30, "fifo": 30},
    ),
    "--key-dir": (
        lambda e, f: ["receipt", "verify", str(e.receipt), "--key-dir", f],
        {"missing": 2, "directory": 30, "empty": 2, "garbage": 2, "fifo": 30},
    ),
}
CASES = [(cmd, kind) for cmd, (_, codes) in FILE_ARGS.items() for kind in KINDS if kind in codes]


def _assert_one_line_error(code: int, want: int, out: str, err: str) -> None:
    assert code == want, (code, want, out, err)
    assert want in {*EXIT_CODES.values(), 2}
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if want == 2:  # click: usage, a hint, then the one error line
        assert lines[-1].startswith("Error: "), err
    else:  # one error line, last (a report first says where it wrote the failed report)
        assert lines[-1].startswith("lethe-audit: error: "), err
        assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("wrote ")), err


@pytest.mark.parametrize(("command", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_file_arguments(env: Env, tmp_path: Path, command: str, kind: str) -> None:
    build, codes = FILE_ARGS[command]
    f = _make(kind, tmp_path / f"hostile-{kind}")
    args = build(env, str(f))
    if command == "--key-dir" and kind == "directory":
        (f / "keyring.json").write_bytes(GARBAGE)  # a directory whose keyring is garbage
    if kind == "fifo":
        r = subprocess.run(
            [sys.executable, "-m", "lethe_audit.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        _assert_one_line_error(r.returncode, codes[kind], r.stdout, r.stderr)
        return
    r = CliRunner().invoke(main, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    _assert_one_line_error(r.exit_code, codes[kind], r.stdout, r.stderr)


# --- the listed item-11 cases ----------------------------------------------------------------


def _run(args: list[str]) -> Any:
    r = CliRunner().invoke(main, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    return r


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(extra="x"),
        lambda d: d["files"]["entries.jsonl"].update(bytes="abc"),
        lambda d: d["attachments"].append(
            {"path": "attachments/a", "sha256": "0" * 64, "bytes": 1e999}
        ),
        lambda d: d.update(root="\u00e9\u00e9\u00e9="),
        lambda d: d.update(size="HUGE"),
        lambda d: d.update(version="HUGE"),
    ],
    ids=[
        "extra-string",
        "bytes-string",
        "bytes-inf",
        "root-non-ascii",
        "huge-size",
        "huge-version",
    ],
)
def test_hostile_manifest_fields(env: Env, tmp_path: Path, change: Any) -> None:
    b = Path(shutil.copytree(env.bundle, tmp_path / "b"))
    doc = json.loads((b / "manifest.json").read_text())
    change(doc)
    text = json.dumps(doc).replace('"HUGE"', "9" * 5000)  # beyond Python's int() digit limit
    (b / "manifest.json").write_text(text)
    assert _run(["verify", str(b), "--key", env.vkey]).exit_code == 17


def test_non_utf8_manifest(env: Env, tmp_path: Path) -> None:
    b = Path(shutil.copytree(env.bundle, tmp_path / "b"))
    (b / "manifest.json").write_bytes(b"\xff\xfe{}")
    assert _run(["verify", str(b), "--key", env.vkey]).exit_code == 17
    r = _run(["report", str(b), "--key", env.vkey, "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 17 and (tmp_path / "r.json").is_file()


def test_keys_json_with_a_list_as_vkey(env: Env, tmp_path: Path) -> None:
    """keys.json is unsigned and informational: verify accepts it, and report must not crash."""
    b = Path(shutil.copytree(env.bundle, tmp_path / "b"))
    doc = json.loads((b / "keys.json").read_text())
    doc["keys"][0]["vkey"] = ["not", "a", "string"]
    doc["keys"].append({"vkey": {"x": 1}, "status": 5})
    (b / "keys.json").write_text(json.dumps(doc))
    from tests.audit.test_audit_verify import _reseal

    _reseal(b)
    assert _run(["verify", str(b), "--key", env.vkey]).exit_code == 0
    r = _run(["report", str(b), "--key", env.vkey, "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output


def test_keyring_with_a_non_string_vkey(env: Env, tmp_path: Path) -> None:
    k = Path(shutil.copytree(env.keys, tmp_path / "k"))
    doc = json.loads((k / "keyring.json").read_text())
    doc["keys"][0]["vkey"] = 12345
    (k / "keyring.json").write_text(json.dumps(doc))
    assert _run(["keys", "list", str(k)]).exit_code == 30
    assert _run(["receipt", "verify", str(env.receipt), "--key-dir", str(k)]).exit_code == 30


@pytest.mark.parametrize("size", ["\u00b2", "9" * 5000, "-1", "01"])
def test_model_info_on_hostile_log_size(env: Env, tmp_path: Path, size: str) -> None:
    import onnx

    m = onnx.load(str(env.model))
    for p in m.metadata_props:
        if p.key == "lethe.log.size":
            p.value = size
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    r = _run(["model", "info", str(path)])
    assert r.exit_code == 3 and "lethe.log.size" in r.stderr


def _garbage_db(tmp_path: Path) -> str:
    p = tmp_path / "garbage.db"
    p.write_bytes(GARBAGE * 4)
    return f"sqlite:///{p}"


def _unreachable_pg() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing?connect_timeout=2"


@pytest.mark.parametrize("which", ["garbage-sqlite", "unreachable-postgresql"])
def test_database_errors_are_store_errors(env: Env, tmp_path: Path, which: str) -> None:
    url = _garbage_db(tmp_path) if which == "garbage-sqlite" else _unreachable_pg()
    store_codes = {
        v
        for k, v in EXIT_CODES.items()
        if k.__name__.endswith(("StoreError", "SchemaError", "LogStateError"))
    }
    for args in (
        ["db", "current", url],
        ["log", "head", "--db", url],
        ["log", "init", "--db", url, "--keys", str(env.keys)],
        [
            "keys",
            "rotate",
            str(Path(shutil.copytree(env.keys, tmp_path / f"k-{len(url)}"))),
            "--db",
            url,
        ],
    ):
        r = _run(args)
        assert r.exit_code in store_codes, (args, r.exit_code, r.output)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("lethe-audit: error: "), r.stderr


def test_log_receipt_into_a_missing_directory(env: Env, tmp_path: Path) -> None:
    r = _run(["log", "receipt", "--db", env.url, "0", "-o", str(tmp_path / "no" / "r.tlog-proof")])
    assert r.exit_code == 31 and "cannot write" in r.stderr


def test_short_per_class_arrays_in_signed_metrics(
    tmp_path: Path, sqlite_url: str, log_factory: Any, signer: note.Signer
) -> None:
    """A signed attestation whose metrics hold per-class arrays shorter than its class count:
    the report and the receipt page describe it (or name the problem), never crash."""
    import dataclasses

    from tests.report._bundles import metrics

    m = metrics((3, 7))
    m["accuracy"]["per_class"] = m["accuracy"]["per_class"][:2]
    m["accuracy"]["base_per_class"] = []
    m["accuracy"]["class_counts"] = [1]
    log = log_factory(sqlite_url)
    log.append(event(0))
    att = dataclasses.replace(attestation(1), metrics=m)
    log.append(att)
    bundle = log.export_bundle(tmp_path / "b")
    receipt = tmp_path / "r.tlog-proof"
    receipt.write_text(log.receipt(1), encoding="utf-8")
    vkey = signer.verifier().vkey
    for fmt in ("json", "html"):
        r = _run(["report", str(bundle), "--key", vkey, "-o", str(tmp_path / f"r.{fmt}")])
        assert r.exit_code == 0, r.output
    r = _run(["receipt", "show", str(receipt), "--key", vkey])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("depth", [400, 900, 5000])
def test_deeply_nested_signed_metrics(tmp_path: Path, signer: note.Signer, depth: int) -> None:
    """The operator's key signs a statement whose metrics nest ``depth`` levels (written by
    hand: json.dumps itself refuses such depths): a typed error, not a RecursionError."""
    from lethe_audit import statements as S
    from lethe_audit import tlog

    doc = attestation(1).to_statement().to_dict()
    doc["predicate"]["metrics"] = {"deep": "DEEP"}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    payload = text.replace('"DEEP"', '{"a":' * depth + "0" + "}" * depth).encode()
    leaf = S.sign_envelope(payload, signer).to_json()
    cp = tlog.Checkpoint(signer.name, 1, tlog.root([tlog.leaf_hash(leaf)]))
    proof = tlog.TlogProof.create(0, [], tlog.sign_checkpoint(cp, signer), extra=leaf)
    receipt = tmp_path / "deep.tlog-proof"
    receipt.write_text(proof.to_text(), encoding="utf-8")
    vkey = signer.verifier().vkey
    r = _run(["receipt", "verify", str(receipt), "--key", vkey])
    assert r.exit_code in (3, 4, 16), r.output  # not well-formed / not canonical
    assert "nested" in r.stderr
    r = _run(["receipt", "show", str(receipt), "--key", vkey])
    assert r.exit_code in (3, 4, 16, 60), r.output  # 60: no page can be made of it


def _parser_cases() -> list[tuple[str, Callable[[], object]]]:
    from lethe_audit import statements as S
    from lethe_audit import tlog

    s = note.Signer.from_seed("example.org/p", bytes(32))
    cp = tlog.sign_checkpoint(tlog.Checkpoint(s.name, 0, tlog.root([])), s)
    env = S.sign_statement(event(0).to_statement(), s).to_json().decode()
    big = "9" * 5000
    return [
        (
            "tlog-proof extra non-ASCII",
            lambda: tlog.TlogProof.parse(
                f"c2sp.org/tlog-proof@v1\nextra \u00e9\u00e9\u00e9\u00e9\nindex 0\n\n{cp}"
            ),
        ),
        (
            "tlog-proof hash non-ASCII",
            lambda: tlog.TlogProof.parse(
                f"c2sp.org/tlog-proof@v1\nindex 0\n\u00b2\u00b2\u00b2\u00b2\n\n{cp}"
            ),
        ),
        (
            "tlog-proof index 5000 digits",
            lambda: tlog.TlogProof.parse(f"c2sp.org/tlog-proof@v1\nindex {big}\n\n{cp}"),
        ),
        ("checkpoint size 5000 digits", lambda: tlog.Checkpoint.parse(f"{s.name}\n{big}\nAAAA\n")),
        (
            "checkpoint root non-ASCII",
            lambda: tlog.Checkpoint.parse(f"{s.name}\n1\n\u00e9\u00e9\u00e9\u00e9\n"),
        ),
        (
            "DSSE payload non-ASCII",
            lambda: S.Envelope.from_json(
                env.replace('"payload":"', '"payload":"\u00e9').encode(), require_canonical=False
            ),
        ),
        (
            "DSSE sig non-ASCII",
            lambda: S.Envelope.from_json(
                env.replace('"sig":"', '"sig":"\u00e9').encode(), require_canonical=False
            ),
        ),
        (
            "DSSE keyid lone surrogate",
            lambda: S.Envelope.from_json(
                env.replace('"keyid":"', '"keyid":"\\ud800').encode(), require_canonical=False
            ),
        ),
        ("canonical JSON 5000 deep", lambda: S.loads_canonical(b"[" * 5000 + b"]" * 5000, "x")),
        ("canonical JSON of 5000-deep value", lambda: S.canonical_json(_deep(5000))),
        ("note with lone surrogate", lambda: note.parse(cp.replace(s.name, "\ud800", 1))),
        ("vkey not a string", lambda: note.Verifier.from_vkey(["x"])),  # type: ignore[arg-type]
    ]


def _deep(n: int) -> object:
    out: object = 0
    for _ in range(n):
        out = [out]
    return out


@pytest.mark.parametrize(("name", "call"), _parser_cases(), ids=[n for n, _ in _parser_cases()])
def test_parsers_raise_typed_errors(name: str, call: Callable[[], object]) -> None:
    from lethe_audit.errors import FormatError

    with pytest.raises(FormatError):
        call()
