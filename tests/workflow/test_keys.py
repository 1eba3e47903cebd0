"""The log's keys through the public API (`Lethe.rotate_key`, `Lethe.generate_key`; the CLI's
`lethe keys rotate` / `generate` are one call each): a rotation is registered in the log, the
facade and the export service see the new keyring at once, and the log still verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lethe.cli import main
from lethe.errors import ProjectError
from lethe.workflow import KeyRotation, Lethe, NewKey


def _events(lt: Lethe) -> list[dict[str, object]]:
    from lethe_audit.statements import Envelope, Statement

    out = []
    for _, raw in lt.log.iter_entries(0, None):
        p = Statement.from_envelope(Envelope.from_json(raw)).predicate
        if p.get("event") == "key.rotated":
            out.append(dict(p["details"]))
    return out


def test_rotate_adds_then_retires_and_the_log_verifies(tmp_path: Path) -> None:
    with Lethe.init(tmp_path / "p", origin="test.example/keys") as lt:
        (first,) = [e.vkey for e in lt.keyring.active()]
        added = lt.rotate_key()
        assert isinstance(added, KeyRotation) and added.retired == ()
        (second,) = added.new
        assert {e.vkey for e in lt.keyring.active()} == {first, second}  # the facade's view
        lt.verify_log()  # the export service verifies with the new keyring too
        done = lt.rotate_key(retire_old=True)
        (third,) = done.new
        assert set(done.retired) == {first, second}
        assert [e.vkey for e in lt.keyring.active()] == [third]
        assert {first, second, third} <= {v.vkey for v in lt.verifiers()}
        lt.verify_log()
        actions = [(e["action"], e["key"]) for e in _events(lt)]
        assert actions[0] == ("added", second) and ("added", third) in actions
        assert {k for a, k in actions if a == "retired"} == {first, second}
    with Lethe.open(tmp_path / "p") as again:  # the keyring on disk matches
        assert [e.vkey for e in again.keyring.active()] == [third]
        again.verify_log()


def test_generate_makes_the_first_key_only(tmp_path: Path) -> None:
    project = tmp_path / "p"
    Lethe.init(project, origin="test.example/keys").close()
    with pytest.raises(ProjectError, match="already holds the log keys; rotate them"):
        Lethe.generate_key(project)
    shutil.rmtree(project / "keys")
    key = Lethe.generate_key(project, origin="test.example/new")
    assert isinstance(key, NewKey) and (Path(key.key_dir) / "keyring.json").is_file()
    assert key.vkey.startswith("test.example/new+")


def test_the_cli_is_one_call_each(tmp_path: Path) -> None:
    project = tmp_path / "p"
    Lethe.init(project, origin="test.example/keys").close()
    res = CliRunner().invoke(main, ["--project", str(project), "keys", "rotate", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and len(doc["new"]) == 1 and doc["retired"] == []
    args = ["--project", str(project), "keys", "rotate", "--retire-old", "--json"]
    doc = json.loads(CliRunner().invoke(main, args).stdout)
    assert len(doc["new"]) == 1 and len(doc["retired"]) == 2
    res = CliRunner().invoke(main, ["--project", str(project), "keys", "generate", "--json"])
    assert res.exit_code != 0 and "rotate them instead" in res.stderr
