"""The structure DESIGN §10.12 asks for stays (issue 15): no import cycle inside `lethe` or
`lethe_audit`, no private cross-package import, no function over 80 lines (the shared
`structure.py` tool beside the repository), and no module importing another subpackage's
private module (`lethe.cli` -> `lethe.workflow._x`, `lethe_audit.report` -> `verify._x`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "structure.py"
PACKAGES = {"lethe": ROOT / "sdk" / "lethe", "lethe_audit": ROOT / "audit" / "lethe_audit"}


@pytest.mark.skipif(not TOOL.is_file(), reason=f"{TOOL} is not beside this checkout")
def test_the_structure_tool_finds_nothing() -> None:
    # The tool prints "structure: no cycles, ..." and exits 0, or "N structure problems: a; b"
    # (each "import cycle: ...", "X imports private Y" or "K functions over 80 lines, ...").
    run = subprocess.run(
        [sys.executable, str(TOOL)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    out = run.stdout + run.stderr
    assert "import cycle" not in out, out
    assert "imports private" not in out, out
    assert "functions over 80 lines" not in out, out
    assert run.returncode == 0 and out.startswith("structure: no cycles"), out


def _module(pkg: str, root: Path, f: Path) -> tuple[str, bool]:
    parts = [pkg, *f.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _imports(tree: ast.AST, here: str, is_pkg: bool) -> list[tuple[int, str]]:
    """Every module a file imports (function-level too; ``TYPE_CHECKING`` blocks included:
    the rule is about names, not only about what runs)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".") if is_pkg else here.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _private_owner(mod: str) -> str | None:
    """The package a private module belongs to (``lethe.workflow`` for
    ``lethe.workflow._store``), None for a public path."""
    segs = mod.split(".")
    for i, s in enumerate(segs[1:], 1):
        if s.startswith("_") and not s.startswith("__"):
            return ".".join(segs[:i])
    return None


def test_no_module_imports_another_subpackages_private_module() -> None:
    found = []
    for pkg, root in PACKAGES.items():
        for f in root.rglob("*.py"):
            here, is_pkg = _module(pkg, root, f)
            for line, mod in _imports(ast.parse(f.read_text(encoding="utf-8")), here, is_pkg):
                if mod.split(".")[0] not in PACKAGES:
                    continue
                owner = _private_owner(mod)
                if owner is not None and here != owner and not here.startswith(owner + "."):
                    found.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not found, "import the subpackage's public name instead:\n" + "\n".join(found)
