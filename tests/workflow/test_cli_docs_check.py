"""tests/_cli_docs.py catches what issue 15 found: `apply --help` naming exit 73 while the code
exits 132, and a docs table that is not the error map."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from tests._cli_docs import check_documented


class FooError(Exception):
    pass


def _group(help_text: str) -> click.Group:
    @click.group()
    def tool() -> None:
        """A tool."""

    @tool.command("apply")
    def apply() -> None:
        pass

    apply.help = help_text
    return tool


DOC = """# tool

| Code | Error | Meaning |
| --- | --- | --- |
| 0 | - | success |
| 132 | `FooError` | foo |

### `tool apply`
Apply. Exits 132 when it fails.
"""
NO_CODES = DOC.replace("Exits 132 when", "Fails")


def test_matching_help_docs_and_map_pass(tmp_path: Path) -> None:
    (tmp_path / "cli.md").write_text(DOC)
    group = _group("Exits 132 when it fails.")
    check_documented(tmp_path / "cli.md", group, "tool", {FooError: 132})


@pytest.mark.parametrize(
    ("help_text", "doc", "codes", "says"),
    [
        ("Exits 73 when it fails.", DOC, {FooError: 132}, "unknown"),  # issue 15's apply --help
        ("Exits 0, 132 when it fails.", NO_CODES, {FooError: 132}, "not"),
        ("Exits 132 when it fails.", DOC, {FooError: 19}, "table"),
    ],
)
def test_a_stale_code_fails(
    tmp_path: Path, help_text: str, doc: str, codes: dict[type[BaseException], int], says: str
) -> None:
    (tmp_path / "cli.md").write_text(doc)
    with pytest.raises(AssertionError, match=says):
        check_documented(tmp_path / "cli.md", _group(help_text), "tool", codes)
