"""The `lethe-audit` distribution alone: built from ``audit/`` into a fresh virtual environment,
pip resolves no torch, and the core commands verify what the SDK produced in this test.

Both wheels (``lethe-audit`` from ``audit/``, ``lethe-sdk`` from the root) are built once, from
a copy of the tree, without build isolation (this interpreter's setuptools). One environment
without pip of its own (this interpreter's pip installs into it with ``--python``) gets the core
wheel, is measured and used (bundle, receipt, fp32 and int8 model; the commands of a missing
extra exit 70 naming it), then gets the extras one at a time, each with the line the docs give
for it (``pip install './audit[report]'`` in the copy of the source, then ``pip install
'lethe-audit[remeasure]'`` and ``[store]``), is measured after each and runs what the extra
adds (``report``, ``report --model --eval-data`` and the edge loader, ``db upgrade``).
A second one gets ``[edge]`` alone (onnxruntime, no scikit-learn or SciPy) and runs the edge
loader there; a third gets ``[openssf]`` alone (core + model-signing, pyOpenSSL), is measured, and
checks the SDK's exported model there with ``lethe-audit model verify --openssf`` and with
``model_signing``'s own command-line verifier (which refuses a copy with one flipped weight
byte). The sizes are printed and written to ``benchmarks/results/audit-size.json`` (MB of
10^6 bytes of file contents in site-packages; these venvs hold no pip or setuptools).
Installs from the package index through pip's own cache (a second run downloads nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lethe_audit._extras import install_line
from lethe_audit.keys import OPENSSF_PUBLIC_FILE
from tests.workflow.conftest import (  # noqa: F401  (fixtures)
    MODEL,
    lt,
    project_dir,
    project_template,
)

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "torchvision", "timm", "lethe-sdk", "onnxscript"}

pytestmark = pytest.mark.slow


def _pip(env: Path, *args: str, cwd: Path | None = None) -> None:
    """This interpreter's pip, acting on ``env`` (which has no pip of its own)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python"]
    res = subprocess.run(
        [*cmd, str(env / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=cwd,
    )
    assert res.returncode == 0, (
        f"pip {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )


def _installed(env: Path) -> set[str]:
    py = str(env / "bin" / "python")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", py, "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {p["name"].lower().replace("_", "-") for p in json.loads(out)}


_TOOLING = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel")


def _site_mb(env: Path) -> float:
    """MB of the environment's site-packages, without pip's own tooling (what ``du -s`` of
    site-packages shows, less pip/setuptools, which every venv has)."""
    site = next((env / "lib").glob("python3*/site-packages"))
    total = 0
    for f in site.rglob("*"):
        top = f.relative_to(site).parts[0]
        if f.is_file() and not f.is_symlink() and top.split("-")[0] not in _TOOLING:
            total += f.stat().st_size
    return total / 1e6


#: The auditor's environment, not this checkout: no PYTHONPATH (the subprocesses also run
#: with their venv as working directory, outside the tree).
_CLEAN = {**os.environ, "PYTHONPATH": ""}


def _run(env: Path, *args: str) -> dict[str, Any]:
    exe = env / "bin" / "lethe-audit"
    res = subprocess.run(
        [str(exe), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_CLEAN,
        cwd=env,
    )
    assert res.returncode == 0, f"lethe-audit {args[0]} exited {res.returncode}: {res.stderr}"
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["ok"] is True
    return doc


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built once from a copy of the tree (audit/, migrations/ its link points at,
    sdk/, the root pyproject and README): ``{"audit": ..., "sdk": ..., "src": the copy}``."""
    work = tmp_path_factory.mktemp("dist-src")
    src = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("audit", "migrations", "sdk"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    out = work / "wheels"
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps"]
    cmd += ["--no-build-isolation", "-w", str(out), str(src / "audit"), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    built = {w.name.split("-")[0]: w for w in out.glob("*.whl")}
    return {"audit": built["lethe_audit"], "sdk": built["lethe_sdk"], "src": src}


@pytest.fixture(scope="module")
def audit_env(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Path:
    """A fresh venv (no pip of its own) with only the lethe-audit wheel installed."""
    env = tmp_path_factory.mktemp("audit-dist") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    _pip(env, "install", str(wheels["audit"]))
    return env


def test_the_sdk_wheel_depends_on_lethe_audit_and_does_not_ship_it(
    wheels: dict[str, Path],
) -> None:
    import zipfile

    from lethe_audit._version import __version__

    with zipfile.ZipFile(wheels["sdk"]) as z:
        names = z.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in z.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist: lethe-audit")
        ]
    pins = [re.fullmatch(r"lethe-audit\[([a-z,]+)\]==(\S+)", r) for r in requires]
    assert len(pins) == 1 and pins[0] is not None, requires
    assert set(pins[0][1].split(",")) == {"report", "remeasure", "store", "openssf"}
    assert pins[0][2] == __version__
    assert any(n.startswith("lethe/") for n in names)
    assert not any(n.startswith(("lethe_audit/", "migrations/")) for n in names)
    with zipfile.ZipFile(wheels["audit"]) as z:
        names = z.namelist()
    assert any(n.startswith("lethe_audit/") for n in names)
    assert not any(n.startswith("lethe/") for n in names)


@dataclass(frozen=True)
class _Made:
    """What the SDK (this interpreter) produced for the auditor's environment to check."""

    bundle: Path
    receipt: Path
    model: Path  # the published fp32 file
    int8: Path  # `export_onnx(quantize="int8")`, bound to the request's receipt
    exported: Path  # `export_onnx` (with its OpenSSF signature beside it)
    eval_data: Path  # `export_eval_data`
    vkey: str


def _produce(lt: Any, tmp_path: Path) -> _Made:  # noqa: F811
    req = lt.file(subject="alice@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    lt.approve(req.id, actor="dpo")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    receipt = tmp_path / "receipt.tlog-proof"
    receipt.write_text(lt.receipt(req.id))
    int8 = lt.export_onnx(MODEL, tmp_path / "int8" / "m8.onnx", quantize="int8")
    exported = lt.export_onnx(MODEL, tmp_path / "exported" / "m.onnx")  # with m.onnx.sig
    return _Made(
        bundle=lt.export_bundle(tmp_path / "bundle.zip"),
        receipt=receipt,
        model=Path(lt.published(MODEL)["onnx"]),
        int8=Path(int8.path),
        exported=Path(exported.path),
        eval_data=Path(lt.export_eval_data(MODEL, tmp_path / "eval.npz").path),
        vkey=lt.verifiers()[0].vkey,
    )


def _fails_naming(env: Path, extra: str, *args: str) -> None:
    """``lethe-audit ARGS`` exits 70 with one line naming the missing extra."""
    exe = str(env / "bin" / "lethe-audit")
    res = subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=600, env=_CLEAN, cwd=env
    )
    assert res.returncode == 70, (args, res.returncode, res.stderr)
    assert f"pip install 'lethe-audit[{extra}]'" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


#: The edge recipe: load_verified, then one inference on zeros.
_EDGE = (
    "import sys, numpy as np\n"
    "from lethe_audit.model import load_verified\n"
    "s = load_verified(sys.argv[1], sys.argv[2], receipt=open(sys.argv[3], 'rb').read())\n"
    "name = s.get_inputs()[0].name\n"
    "shape = [1 if not isinstance(d, int) else d for d in s.get_inputs()[0].shape]\n"
    "print(s.run(None, {name: np.zeros(shape, np.float32)})[0].shape)\n"
)


def _edge(env: Path, m: _Made) -> subprocess.CompletedProcess[str]:
    """The edge recipe in ``env``'s own interpreter (no PYTHONPATH, run outside the tree)."""
    argv = [str(env / "bin" / "python"), "-c", _EDGE, str(m.model), m.vkey, str(m.receipt)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=_CLEAN, cwd=env)


def test_core_install_verifies_what_the_sdk_produced(
    audit_env: Path,
    wheels: dict[str, Path],
    lt: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    installed = _installed(audit_env)
    assert "lethe-audit" in installed
    assert not installed & HEAVY, f"the core install pulled {installed & HEAVY}"
    for extra_only in ("sqlalchemy", "jinja2", "matplotlib", "onnxruntime", "scikit-learn"):
        assert extra_only not in installed  # core = onnx, cryptography, numpy, rfc8785, click
    core_mb = _site_mb(audit_env)
    wheel = wheels["audit"].name
    sizes = [{"install": "core", "pip": f"pip install {wheel}", "mb": round(core_mb, 1)}]
    print(f"\nlethe-audit core: {core_mb:.0f} MB of site-packages (without pip/setuptools)")
    assert core_mb <= 150, f"the core install is {core_mb:.0f} MB (target 150)"

    m = _produce(lt, tmp_path)
    assert _run(audit_env, "verify", str(m.bundle), "--key", m.vkey)["ok"]
    assert _run(audit_env, "receipt", "verify", str(m.receipt), "--key", m.vkey)["ok"]
    for model in (m.model, m.int8):  # the int8 file is bound to the same request's receipt
        doc = _run(audit_env, "model", "verify", str(model), "--key", m.vkey, "--receipt",
                   str(m.receipt))  # fmt: skip
        assert doc["ok"]

    # A command that needs an extra says which one, in one line, with its own exit code.
    _fails_naming(audit_env, "report", "report", str(m.bundle), "--key", m.vkey, "-o",
                  str(tmp_path / "r.html"))  # fmt: skip
    db = f"sqlite:///{tmp_path / 'log.db'}"
    _fails_naming(audit_env, "store", "db", "upgrade", db)
    _fails_naming(audit_env, "store", "log", "export", "--db", db, str(tmp_path / "b.zip"))
    no_ort = _edge(audit_env, m)  # the edge loader needs onnxruntime: the core names it
    assert no_ort.returncode != 0 and "pip install 'lethe-audit[edge]'" in no_ort.stderr
    edge = _check_edge_extra(audit_env, wheels, m)
    sizes.append({"install": "core + [edge]", "pip": f"pip install '{wheel}[edge]'",
                  "mb": round(edge, 1), "added_mb": round(edge - core_mb, 1)})  # fmt: skip

    sizes += _grow(audit_env, wheels, m, tmp_path)
    openssf = _check_openssf_extra(audit_env, wheels, m.exported, _openssf_pub(lt), m.vkey,
                                   m.receipt)  # fmt: skip
    sizes.append({"install": "core + [openssf]", "pip": f"pip install '{wheel}[openssf]'",
                  "mb": round(openssf, 1), "added_mb": round(openssf - core_mb, 1)})  # fmt: skip
    _write_sizes(sizes)


def _openssf_pub(lt: Any) -> Path:  # noqa: F811
    return Path(lt.store.settings.keys / OPENSSF_PUBLIC_FILE)


def _step(env: Path, name: str, pip_args: list[str], shown: str, cwd: Path | None = None) -> dict:
    """Install one more extra into ``env``; its size and what it added."""
    before, mb_before = _installed(env), _site_mb(env)
    _pip(env, *pip_args, cwd=cwd)
    after, mb = _installed(env), _site_mb(env)
    assert not after & HEAVY, f"{name} pulled {after & HEAVY}"
    print(f"lethe-audit {name}: {mb:.0f} MB of site-packages (+{mb - mb_before:.0f} MB)")
    added = sorted(after - before)
    return {"install": name, "pip": shown, "mb": round(mb, 1),
            "added_mb": round(mb - mb_before, 1), "added": added}  # fmt: skip


def _grow(env: Path, wheels: dict[str, Path], m: _Made, tmp_path: Path) -> list[dict]:
    """The extras one by one, each with the line the docs give for it: the auditor's
    ``pip install './audit[report]'`` run in a copy of Lethe's source (built as pip builds it
    there: in an isolated environment), then ``pip install 'lethe-audit[EXTRA]'`` (the
    line a missing extra names: pip keeps the installed lethe-audit, which is on no index)."""
    line = shlex.split(install_line("report"))
    assert line[:2] == ["pip", "install"]
    steps = [_step(env, "core + [report]", ["install", *line[2:]],
                   shlex.join(line), cwd=wheels["src"])]  # fmt: skip
    _run(env, "report", str(m.bundle), "--key", m.vkey, "-o", str(tmp_path / "plain.html"))

    steps.append(_step(env, "core + [report,remeasure]", ["install", "lethe-audit[remeasure]"],
                       "pip install 'lethe-audit[remeasure]'"))  # fmt: skip
    assert steps[-1]["mb"] <= 600, f"core + [report,remeasure] is {steps[-1]['mb']} MB (600)"
    out = tmp_path / "report.html"
    doc = _run(env, "report", str(m.bundle), "--key", m.vkey, "-o", str(out), "--model",
               str(m.model), "--eval-data", str(m.eval_data))  # fmt: skip
    assert doc["remeasured"] is True and out.stat().st_size > 0
    ran = _edge(env, m)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("(1, ")  # the verified model's logits for one image

    steps.append(_step(env, "core + [report,remeasure,store]", ["install", "lethe-audit[store]"],
                       "pip install 'lethe-audit[store]'"))  # fmt: skip
    _run(env, "db", "upgrade", f"sqlite:///{tmp_path / 'log.db'}")  # migrations shipped too
    return steps


def _write_sizes(sizes: list[dict]) -> None:
    """Print the sizes and write them to ``benchmarks/results/audit-size.json`` (what
    docs/benchmarks.md's "lethe-audit install size" table is updated from)."""
    import platform
    from datetime import datetime, timezone

    doc = {
        "format": "lethe-bench/audit-size/v1",
        "measured_by": "tests/test_audit_dist.py",
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "unit": "MB = 10^6 bytes of file contents under site-packages of a venv created "
        "without pip (pip and setuptools are not in it, nor counted)",
        "targets_mb": {"core": 150, "core + [report,remeasure]": 600},
        "installs": sizes,
    }
    print(json.dumps(doc["installs"], indent=1))
    out = REPO / "benchmarks" / "results" / "audit-size.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")


def _fresh_with_extra(
    core_env: Path, wheels: dict[str, Path], extra: str
) -> tuple[Path, set[str], float]:
    """A fresh environment beside ``core_env`` with ``lethe-audit[extra]`` alone: the env, what
    it holds (never torch and friends) and its size in MB."""
    env = core_env.parent / f"{extra}-venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    _pip(env, "install", f"{wheels['audit']}[{extra}]")
    installed = _installed(env)
    assert not installed & HEAVY, f"[{extra}] pulled {installed & HEAVY}"
    return env, installed, _site_mb(env)


def _check_edge_extra(core_env: Path, wheels: dict[str, Path], m: _Made) -> float:
    """``lethe-audit[edge]`` in a fresh environment: onnxruntime without scikit-learn or
    scipy, and the edge recipe runs there; its size."""
    env, installed, mb = _fresh_with_extra(core_env, wheels, "edge")
    assert "onnxruntime" in installed
    assert not installed & {"scikit-learn", "scipy", "jinja2", "sqlalchemy"}, installed
    print(f"lethe-audit[edge]: {mb:.0f} MB of site-packages (core + onnxruntime)")
    ran = _edge(env, m)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("(1, ")  # the verified model's logits for one image
    return mb


def _check_openssf_extra(
    core_env: Path, wheels: dict[str, Path], model: Path, pub: Path, vkey: str, receipt: Path
) -> float:
    """``lethe-audit[openssf]`` in a fresh environment: no torch; both verifiers accept the
    SDK's export and model_signing's refuses one flipped weight byte."""
    from tests.audit.test_openssf import _flip_weight_byte

    args = ["model", "verify", str(model), "--key", vkey, "--openssf", "--openssf-key", str(pub)]
    # Without the extra (the core environment also has [report,remeasure]): named, one line.
    res = subprocess.run(
        [str(core_env / "bin" / "lethe-audit"), *args], capture_output=True, text=True
    )
    assert res.returncode == 70 and "pip install 'lethe-audit[openssf]'" in res.stderr, res.stderr
    env, installed, mb = _fresh_with_extra(core_env, wheels, "openssf")
    assert {"model-signing", "pyopenssl"} <= installed
    print(f"lethe-audit[openssf]: {mb:.0f} MB of site-packages (core + model-signing, pyOpenSSL)")
    doc = _run(env, *args, "--receipt", str(receipt))
    assert doc["openssf"]["signature"] == str(model) + ".sig"
    assert doc["openssf"]["key_id"] == hashlib.sha256(pub.read_bytes()).hexdigest()
    ms = [str(env / "bin" / "model_signing"), "verify", "key", "--public_key", str(pub)]
    ms += ["--signature", str(model) + ".sig"]
    ok = subprocess.run([*ms, str(model)], capture_output=True, text=True, cwd=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = model.parent.parent / "tampered" / model.name
    bad.parent.mkdir()
    bad.write_bytes(_flip_weight_byte(model.read_bytes()))
    res = subprocess.run([*ms, str(bad)], capture_output=True, text=True, cwd=env)
    assert res.returncode != 0 and "Signature mismatch" in res.stdout + res.stderr
    return mb


def test_the_sdk_pins_lethe_audit_at_its_own_version() -> None:
    """lethe-sdk depends on lethe-audit at exactly the version both read from
    lethe_audit._version, and no longer ships lethe_audit or the migrations itself."""
    import tomllib

    from lethe_audit._version import __version__

    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    audit = tomllib.loads((REPO / "audit" / "pyproject.toml").read_text())
    pins = [d for d in root["project"]["dependencies"] if d.startswith("lethe-audit")]
    assert pins == [f"lethe-audit[report,remeasure,store,openssf]=={__version__}"]
    assert audit["project"]["name"] == "lethe-audit"
    version_attr = {"attr": "lethe_audit._version.__version__"}
    assert root["tool"]["setuptools"]["dynamic"]["version"] == version_attr
    assert audit["tool"]["setuptools"]["dynamic"]["version"] == version_attr
    assert root["tool"]["setuptools"]["packages"]["find"]["where"] == ["sdk"]
    assert "data-files" not in root["tool"]["setuptools"]
    assert "lethe-audit" not in root["project"]["scripts"]
    assert audit["project"]["scripts"]["lethe-audit"] == "lethe_audit.cli:main"
