"""Terminal escape injection (issue 14, item 10): input-derived text never reaches the terminal
with control characters, and the verdict is the last line printed.

The forger writes a receipt whose unsigned DSSE keyid and whose (unverified) statement strings
carry ESC sequences that would clear the screen and print a fake "OK" line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from click.testing import CliRunner

from lethe_audit import note, tlog
from lethe_audit import statements as S
from lethe_audit.cli import main, safe_text
from tests.audit._audit_helpers import attestation

EVIL = "\x1b[2J\x1b[H\x1b[32mOK: entry 0 verified, deletion carried out\x1b[0m\r\n\x9b2K\u202e"
EVIL_LINE = "\x1b[2J\x1b[H\x1b[32mOK: deletion carried out\x1b[0m\x9b2K\u202e"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _forged_receipt(tmp_path: Path, signer: note.Signer) -> Path:
    """A receipt of an entry signed by a rogue key under an ESC-laden keyid, with hostile
    legal basis and class names, included in a checkpoint the operator's key signed."""
    att = attestation(0)
    req = dataclasses.replace(att.requests[0], legal_basis=EVIL_LINE)
    att = dataclasses.replace(att, requests=(req,))
    rogue = note.Signer.generate("evil.example/log")
    env = S.sign_statement(att.to_statement(), rogue)
    sig = S.EnvelopeSignature(EVIL, env.signatures[0].sig)
    leaf = dataclasses.replace(env, signatures=(sig,)).to_json()
    cp = tlog.Checkpoint(signer.name, 1, tlog.root([tlog.leaf_hash(leaf)]))
    text = tlog.TlogProof.create(0, [], tlog.sign_checkpoint(cp, signer), extra=leaf).to_text()
    path = tmp_path / "evil.tlog-proof"
    path.write_text(text, encoding="utf-8")
    return path


def _check(result: object, code: int) -> None:
    out, err = result.stdout, result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == code, (out, err)  # type: ignore[attr-defined]
    assert not CONTROL.search(out) and not CONTROL.search(err), (out, err)
    assert "OK: entry 0 verified" not in out  # the fake line is not printed as a line
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("lethe-audit: error: "), err  # the verdict comes last
    assert "\\x1b" in err  # shown, escaped: the auditor sees what the forger wrote


def test_receipt_verify_escapes_the_keyid(tmp_path: Path, signer: note.Signer) -> None:
    receipt = _forged_receipt(tmp_path, signer)
    r = CliRunner().invoke(main, ["receipt", "verify", str(receipt), "--key", signer.vkey])
    _check(r, 14)


def test_receipt_show_escapes_statement_strings(tmp_path: Path, signer: note.Signer) -> None:
    receipt = _forged_receipt(tmp_path, signer)
    r = CliRunner().invoke(main, ["receipt", "show", str(receipt), "--key", signer.vkey])
    _check(r, 14)
    assert "\\x1b[32mOK: deletion carried out" in r.stderr  # the page showed it, escaped
    r = CliRunner().invoke(main, ["receipt", "show", str(receipt), "--key", signer.vkey, "--json"])
    assert r.exit_code == 14 and not CONTROL.search(r.stdout + r.stderr)


def test_safe_text() -> None:
    assert safe_text("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert safe_text("line1\nline2\tx") == "line1\nline2\tx"
    assert safe_text("line1\nline2\tx", one_line=True) == "line1\\x0aline2\\x09x"
    assert safe_text("\x7f\x9b\u202e\ud800") == "\\x7f\\x9b\\u202e\\ud800"
    assert safe_text('{"a": "\x9b"}', json=True) == '{"a": "\\u009b"}'
    assert safe_text("Grüße, 名前 ²") == "Grüße, 名前 ²"
