"""Runtime invariants are typed errors, not ``assert`` (which ``python -O`` removes): each
check below fires with its error class whatever the interpreter's optimisation level, and no
``assert`` statement is left in ``sdk/`` or ``audit/``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_assert_statements_in_the_packages() -> None:
    found = []
    for pkg in ("sdk/lethe", "audit/lethe_audit"):
        for f in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Assert):
                    found.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"assert statements (removed by python -O) in {found}"


def test_erase_refuses_a_model_whose_stage_is_not_what_it_listed() -> None:
    """A user model whose get_submodule disagrees with named_modules: a FilterError naming
    the module (before: an assert, gone under -O, then a crash further down)."""
    from torch import nn

    from lethe.errors import FilterError
    from lethe.filters._erase import _find_cut

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stage = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
            self.head = nn.Linear(4, 2)

        def get_submodule(self, target: str) -> nn.Module:
            return self.head if target == "stage" else super().get_submodule(target)

    model = Odd()
    order = [n for n, _ in model.named_modules() if n]
    with pytest.raises(FilterError, match=r"'stage' is a Linear, not the nn\.Sequential"):
        _find_cut(model, order, None)


def test_a_bundle_sink_is_a_directory_or_an_archive(tmp_path: Path) -> None:
    from lethe_audit.log._export import _Sink

    with pytest.raises(ValueError, match="exactly one"):
        _Sink(None, None)


def test_from_jsonable_rebuilds_only_dataclasses() -> None:
    from lethe_audit.metrics._serial import from_jsonable

    with pytest.raises(TypeError, match="rebuilds dataclasses"):
        from_jsonable(int, {})


def test_accuracy_without_coverage_is_a_typed_error() -> None:
    """The accuracy step relies on check_coverage; skipped, it raises EvaluationSetError."""
    from lethe_audit.errors import EvaluationSetError
    from lethe_audit.metrics import ImageSet
    from lethe_audit.metrics._evaluate import _Evaluation

    data = ImageSet(np.zeros((4, 2), np.float32), np.array([0, 0, 2, 2]), 3)
    run = _Evaluation(data, (1,), seed=0, progress=False)  # class 1 has no samples
    z: Any = np.zeros((4, 3))
    with pytest.raises(EvaluationSetError, match="both the forgotten and the retained"):
        run.accuracy(z, None, ())


def test_the_checks_hold_under_python_O() -> None:
    """Under -O asserts vanish; the typed checks do not."""
    code = (
        "from lethe_audit.metrics._serial import from_jsonable\n"
        "try:\n    from_jsonable(int, {})\nexcept TypeError:\n    print('typed')\n"
    )
    env_path = f"{ROOT / 'sdk'}:{ROOT / 'audit'}"
    out = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path},
        check=True,
    )
    assert out.stdout.strip() == "typed"
