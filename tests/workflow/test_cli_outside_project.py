"""Outside an initialised project every `lethe` command fails with one line, exit 121 and
`{"ok": false}` under --json, says to run `lethe init`, and creates nothing (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lethe.cli import main

COMMANDS = [
    ("request", "list"),
    ("request", "show", "req-x"),
    ("request", "file", "--subject", "a@example.com", "--class", "1", "--legal-basis", "x-1"),
    ("request", "approve", "req-x", "--actor", "dpo"),
    ("model", "list"),
    ("filters", "show"),
    ("apply",),
    ("erase",),
    ("log", "verify"),
    ("log", "show"),
    ("keys", "show"),
    ("keys", "generate"),
    ("keys", "rotate"),
    ("db", "upgrade"),
    ("receipt", "req-x", "-o", "r.tlog-proof"),
]


@pytest.mark.parametrize("missing", [False, True], ids=["empty-folder", "mistyped-project"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_commands_outside_a_project_fail_in_one_line_and_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], missing: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("LETHE_PROJECT_DIR", "LETHE_DATABASE_URL", "LETHE_KEY_DIR", "LETHE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    where = tmp_path / "mistyped" if missing else tmp_path
    result = CliRunner().invoke(main, ["--project", str(where), *args, "--json"])
    assert result.exit_code == 121, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["error"]["type"] == "ProjectError"
    assert "lethe --project" in doc["error"]["message"] and "init" in doc["error"]["message"]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("lethe: error: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ("request", "list", "--bogus"),
        ("request", "approve"),
        ("nosuch",),
        ("request", "list"),
        ("--config", "no-such-lethe.toml", "request", "list"),  # the group's own options too
    ],
)
def test_a_bad_command_line_is_one_line_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    if args == ("request", "list"):
        args = (*args, "--status", "nope")
    result = CliRunner().invoke(main, ["--project", str(tmp_path), *args, "--json"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.count("\n") == 1 and "--help`" in result.stderr
    assert json.loads(result.stdout)["error"]["exit_code"] == 2
    assert list(tmp_path.iterdir()) == []
