"""Keeping a CLI reference in sync with the click commands (sqlite-utils' test_docs idea).

:func:`check_documented` is the one check both CLIs' tests run (tests/workflow/test_cli.py for
`lethe` against docs/cli.md, tests/audit/test_audit_cli.py for `lethe-audit` against
docs/cli-audit.md): every command has a section naming each option and argument, the exit-code
table is the error map, and every exit code a command's ``--help`` names is the map's and is in
that command's section too. After adding a command or option, run the two tests; write a code in
a docstring as ``{ErrorName}`` under ``@exit_codes_in_help`` (lethe.cli._context) so ``--help``
always prints the map's number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import click

#: How a text names an exit code: "exits 132", "exit code 126", "(exit 132)", "134 when ...",
#: "134 without ...".
_CODE = re.compile(
    r"\bexit(?:s|ing)?(?: with)?(?: code)?\s+(\d{1,3})\b|\b(\d{1,3})\s+(?:when|without|if)\b"
)


def named_codes(text: str) -> set[int]:
    """The exit codes a help text or a docs section names (see ``_CODE``)."""
    return {int(a or b) for a, b in _CODE.findall(text)}


def table_codes(text: str) -> dict[int, str]:
    """The ``| code | `ErrorName` | ... |`` rows of a docs exit-code table."""
    return {int(c): n for c, n in re.findall(r"^\| (\d+) \| `(\w+)` \|", text, re.M)}


def help_text(cmd: click.Command, path: str) -> str:
    """What ``path --help`` prints."""
    with click.Context(cmd, info_name=path) as ctx:
        return cmd.get_help(ctx)


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


def check_documented(
    doc: Path,
    group: click.Group,
    prefix: str,
    exit_codes: Iterable[int] | Mapping[type[BaseException], int],
) -> None:
    """Every command has a ``### `path` `` section naming each of its options and arguments,
    no section documents a command that does not exist, the group's own options appear, every
    exit code is in the table (given the map itself: the table rows from its lowest code up
    are exactly the map, code and error name), and every code a ``--help`` names is a known
    code that its docs section names too."""
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
    for code in set(exit_codes.values() if isinstance(exit_codes, Mapping) else exit_codes):
        assert f"| {code} |" in text, f"exit code {code} is not in the table"
    if isinstance(exit_codes, Mapping):
        _check_table(doc, text, exit_codes)
    known = {0, 2, *table_codes(text)}
    for path, cmd in cmds.items():
        said = named_codes(help_text(cmd, path))
        assert said <= known, f"`{path} --help` names exit codes {sorted(said - known)}: unknown"
        missing = said - named_codes(sections[path])
        assert not missing, f"`{path} --help` names exit codes {sorted(missing)}; {doc.name} not"


def _check_table(doc: Path, text: str, exit_codes: Mapping[type[BaseException], int]) -> None:
    want = {code: cls.__name__ for cls, code in exit_codes.items()}
    rows = {c: n for c, n in table_codes(text).items() if c >= min(want)}
    assert rows == want, (
        f"{doc.name}'s exit-code table and the map differ: only in the docs "
        f"{sorted(set(rows.items()) - set(want.items()))}, only in the map "
        f"{sorted(set(want.items()) - set(rows.items()))}"
    )
