"""Keeping a CLI reference in sync with the click commands (sqlite-utils' test_docs idea)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import click


def commands(group: click.Group, prefix: str) -> dict[str, click.Command]:
    """Every leaf command of ``group`` by its full path (``prefix sub cmd``)."""
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out.update(commands(cmd, path))
        else:
            out[path] = cmd
    return out


def check_documented(doc: Path, group: click.Group, prefix: str, exit_codes: Iterable[int]) -> None:
    """Every command has a ``### `path` `` section naming each of its options and arguments,
    no section documents a command that does not exist, the group's own options appear, and
    every exit code is in the table."""
    text = doc.read_text(encoding="utf-8")
    sections = {
        m.group(1): m.group(2)
        for m in re.finditer(
            rf"^### `({re.escape(prefix)}[^`]*)`\n(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S
        )
    }
    cmds = commands(group, prefix)
    assert set(sections) == set(cmds), (
        f"{doc.name} and the click commands differ: only documented "
        f"{sorted(set(sections) - set(cmds))}, only in code {sorted(set(cmds) - set(sections))}"
    )
    for path, cmd in cmds.items():
        body = sections[path]
        for param in cmd.params:
            if isinstance(param, click.Option):
                for flag in [*param.opts, *param.secondary_opts]:
                    if flag not in ("-h", "--help"):
                        assert f"`{flag}" in body, f"{path}: option {flag} is not documented"
            elif isinstance(param, click.Argument):
                assert (param.name or "").upper() in body, f"{path}: argument {param.name} missing"
        assert (cmd.help or "").strip(), f"{path} has no --help text"
    for param in group.params:
        for flag in getattr(param, "opts", []):
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in text, f"global option {flag} is not documented"
    for code in set(exit_codes):
        assert f"| {code} |" in text, f"exit code {code} is not in the table"
