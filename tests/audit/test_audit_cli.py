"""`lethe-audit` end to end (in-process click runner), exit codes, and the docs staying in sync."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from lethe_audit import errors as E
from lethe_audit import statements as S
from lethe_audit import store
from lethe_audit.cli import EXIT_CODES, exit_code, main
from lethe_audit.keys import KeyRing
from tests._cli_docs import check_documented
from tests.audit._audit_helpers import attestation

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli-audit.md"


def run(*args: str, code: int = 0, input: str | None = None) -> Any:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == code, (
        result.output,
        result.stderr if hasattr(result, "stderr") else "",
    )
    return result


def run_json(*args: str, code: int = 0) -> dict[str, Any]:
    out = run(*args, "--json", code=code).stdout
    doc: dict[str, Any] = json.loads(out)
    assert doc["ok"] is (code == 0)
    return doc


def test_full_flow(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lethe.db'}"
    keys = tmp_path / "keys"
    assert run_json("db", "upgrade", url)["revision"] == list(store.head_revisions())
    assert run_json("db", "current", url)["at_head"] is True
    key = run_json("keys", "generate", str(keys), "--name", "example.org/lethe-cli")["key"]
    assert (keys / key["file"]).stat().st_mode & 0o777 == 0o600
    assert run_json("keys", "list", str(keys))["keys"][0]["vkey"] == key["vkey"]
    assert (
        "example.org/lethe-cli\n0\n"
        in run_json("log", "init", "--db", url, "--keys", str(keys))["checkpoint"]
    )
    r = run_json(
        "log", "append", "--db", url, "--keys", str(keys), "--event", "request.received",
        "--request-id", "req-1", "--detail", "classes=[1,2]", "--at", "2024-05-01T12:00:00Z",
    )  # fmt: skip
    assert (r["index"], r["size"], r["duplicate"]) == (0, 1, False)
    again = run_json(
        "log", "append", "--db", url, "--keys", str(keys), "--event", "request.received",
        "--request-id", "req-1", "--detail", "classes=[1,2]", "--at", "2024-05-01T12:00:00Z",
    )  # fmt: skip
    assert (again["index"], again["duplicate"]) == (0, True)
    stmt = tmp_path / "stmt.json"
    stmt.write_text(json.dumps(attestation(3).to_statement().to_dict(), indent=2))
    assert run_json("log", "append", "--db", url, "--keys", str(keys), str(stmt))["index"] == 1
    signer = KeyRing.open(keys).signers()[0]
    env = S.sign_statement(attestation(4).to_statement(), signer)
    envelope_file = tmp_path / "env.json"
    envelope_file.write_bytes(env.to_json())
    r = run("log", "append", "--db", url, "--keys", str(keys), "-", input=envelope_file.read_text())
    assert "appended entry 2" in r.stdout
    head = run_json("log", "head", "--db", url)
    assert head["size"] == 3
    receipt = tmp_path / "r.tlog-proof"
    run("log", "receipt", "--db", url, "1", "-o", str(receipt))
    assert receipt.read_text().startswith("c2sp.org/tlog-proof@v1\nextra ")
    run("log", "receipt", "--db", url, "1", "-o", str(receipt), code=31)
    vkey_file = keys / f"log-{key['key_id']}.vkey"
    ok = run_json(
        "receipt",
        "verify",
        str(receipt),
        "--key-file",
        str(vkey_file),
        "--metric",
        "forget_accuracy<=0.01",
    )
    assert (ok["index"], ok["predicate_type"]) == (1, "urn:lethe:attestation:unlearning:v1")
    assert run("log", "receipt", "--db", url, "0").stdout.startswith("c2sp.org/tlog-proof@v1")
    bundle = tmp_path / "bundle.zip"
    fig = tmp_path / "fig.png"
    fig.write_bytes(b"png")
    run("log", "export", "--db", url, str(bundle), "--attach", str(fig), "--no-progress")
    saved = tmp_path / "seen.checkpoint"
    saved.write_text(head["checkpoint"])
    done = run_json(
        "verify", str(bundle), "--key", key["vkey"], "--checkpoint", str(saved),
        "--metric", "retain_accuracy>=0.9", "--deadlines", "--workers", "1",
    )  # fmt: skip
    assert (done["size"], done["origin"]) == (3, "example.org/lethe-cli")
    assert "OK: 3 entries" in run("verify", str(bundle), "--key-dir", str(keys)).stdout

    # Failures exit with the error map's code and a JSON error document.
    fail = run_json(
        "verify", str(bundle), "--key-dir", str(keys), "--metric", "forget_accuracy>=0.5", code=19
    )
    assert fail["error"]["type"] == "PolicyError" and fail["error"]["index"] == 1
    stranger = KeyRing.create(tmp_path / "other", name="example.org/lethe-cli").entries[0].vkey
    bad = run_json("receipt", "verify", str(receipt), "--key", stranger, code=14)
    assert bad["error"]["size"] == 3
    res = run("verify", str(bundle), "--key", "not-a-vkey", code=2)
    assert "--key" in res.output

    # Rotation through the CLI.
    rot = run_json("keys", "rotate", str(keys), "--db", url)
    assert rot["index"] == 3
    retired = run_json("keys", "retire", str(keys), key["key_id"], "--db", url)
    assert retired["key"]["status"] == "retired"
    run("log", "append", "--db", url, "--keys", str(keys), "--event", "log.note")
    run("log", "export", "--db", url, str(tmp_path / "b2"))
    run("verify", str(tmp_path / "b2"), "--key-dir", str(keys))  # the directory trusts both keys
    run("verify", str(tmp_path / "b2"), "--key", key["vkey"], code=14)


def test_error_codes_and_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    err = run_json("log", "head", "--db", url, code=21)
    assert "lethe-audit db upgrade" in err["error"]["message"]
    run("db", "upgrade", url)
    assert run_json("log", "head", "--db", url, code=22)["error"]["type"] == "LogStateError"
    run("keys", "list", str(tmp_path / "nothing"), code=30)
    enc = tmp_path / "enc"
    run(
        "keys",
        "generate",
        str(enc),
        "--name",
        "example.org/x",
        "--passphrase-env",
        "LETHE_TEST_PW",
        code=30,
    )
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret\n")
    run("keys", "generate", str(enc), "--name", "example.org/x", "--passphrase-file", str(pw))
    run("log", "init", "--db", url, "--keys", str(enc), code=30)  # encrypted, no passphrase
    run("log", "init", "--db", url, "--keys", str(enc), "--passphrase-file", str(pw))
    run("log", "append", "--db", url, "--keys", str(enc), "--passphrase-file", str(pw), code=2)
    bad = tmp_path / "bad.json"
    bad.write_text('{"_type": "https://in-toto.io/Statement/v1", "subject": []}')
    run(
        "log",
        "append",
        "--db",
        url,
        "--keys",
        str(enc),
        "--passphrase-file",
        str(pw),
        str(bad),
        code=4,
    )
    run("verify", str(tmp_path), "--key-dir", str(enc), code=17)


def test_every_error_class_has_its_own_exit_code() -> None:
    classes = [getattr(E, n) for n in E.__all__ if isinstance(getattr(E, n), type)]
    assert set(EXIT_CODES) <= set(classes)
    assert all(exit_code(c.__new__(c)) not in (0, 2) for c in classes)
    codes = list(EXIT_CODES.values())
    assert len(codes) == len(set(codes)) and 0 not in codes and 2 not in codes
    for c in (E.VerificationError, E.FormatError, E.StoreError, E.KeyFileError, E.ExportError):
        assert {sub for sub in classes if issubclass(sub, c)} <= set(EXIT_CODES)

    class NewError(E.SignatureError):
        pass

    assert exit_code(NewError("x")) == EXIT_CODES[E.SignatureError]


def test_docs_describe_every_command_and_option() -> None:
    check_documented(DOC, main, "lethe-audit", EXIT_CODES.values())
