"""The `lethe-audit` distribution alone: built from ``audit/`` into a fresh virtual environment,
pip resolves no torch, and the core commands verify what the SDK produced in this test.

Both wheels (``lethe-audit`` from ``audit/``, ``lethe-sdk`` from the root) are built once, from
a copy of the tree, without build isolation (this interpreter's setuptools). One environment
without pip of its own (this interpreter's pip installs into it with ``--python``) gets the core
wheel, is measured and used, then gets ``[report,remeasure]`` on top and is measured again.
A second one gets ``[openssf]`` alone (core + model-signing, pyOpenSSL), is measured, and
checks the SDK's exported model there with ``lethe-audit model verify --openssf`` and with
``model_signing``'s own command-line verifier (which refuses a copy with one flipped weight
byte). Installs from the package index through pip's own cache (a second run downloads
nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

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


def _pip(env: Path, *args: str) -> None:
    """This interpreter's pip, acting on ``env`` (which has no pip of its own)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python"]
    res = subprocess.run(
        [*cmd, str(env / "bin" / "python"), *args], capture_output=True, text=True, timeout=1800
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


def _run(env: Path, *args: str) -> dict[str, Any]:
    exe = env / "bin" / "lethe-audit"
    res = subprocess.run(
        [str(exe), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ""},
        cwd=env,
    )
    assert res.returncode == 0, f"lethe-audit {args[0]} exited {res.returncode}: {res.stderr}"
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["ok"] is True
    return doc


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built once from a copy of the tree (audit/, migrations/ its link points at,
    sdk/, the root pyproject and README): ``{"audit": ..., "sdk": ...}``."""
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
    return {"audit": built["lethe_audit"], "sdk": built["lethe_sdk"]}


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
    print(f"\nlethe-audit core: {core_mb:.0f} MB of site-packages (without pip/setuptools)")
    assert core_mb <= 150, f"the core install is {core_mb:.0f} MB (target 150)"

    # The SDK (this interpreter) produces a bundle, a receipt and a signed model.
    req = lt.file(subject="alice@example.com", classes=[3], legal_basis="gdpr-17-1-b")
    lt.approve(req.id, actor="dpo")
    assert lt.apply(MODEL, phase="mask", relearn=False, progress=False).passed
    bundle = lt.export_bundle(tmp_path / "bundle.zip")
    receipt = tmp_path / "receipt.tlog-proof"
    receipt.write_text(lt.receipt(req.id))
    model = lt.published(MODEL)["onnx"]
    vkey = lt.verifiers()[0].vkey
    exported = lt.export_onnx(MODEL, tmp_path / "exported" / "m.onnx")  # with m.onnx.sig

    assert _run(audit_env, "verify", str(bundle), "--key", vkey)["ok"]
    assert _run(audit_env, "receipt", "verify", str(receipt), "--key", vkey)["ok"]
    doc = _run(audit_env, "model", "verify", str(model), "--key", vkey, "--receipt", str(receipt))
    assert doc["ok"]

    # A command that needs an extra says which one, in one line, with its own exit code.
    res = subprocess.run(
        [
            str(audit_env / "bin" / "lethe-audit"),
            "report",
            str(bundle),
            "--key",
            vkey,
            "-o",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 70, res.stderr
    assert "pip install 'lethe-audit[report]'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

    # The edge loader needs onnxruntime: the core names the extra; with it, it runs the model.
    edge = (
        "import sys, numpy as np\n"
        "from lethe_audit.model import load_verified\n"
        "s = load_verified(sys.argv[1], sys.argv[2], receipt=open(sys.argv[3], 'rb').read())\n"
        "name = s.get_inputs()[0].name\n"
        "shape = [1 if not isinstance(d, int) else d for d in s.get_inputs()[0].shape]\n"
        "print(s.run(None, {name: np.zeros(shape, np.float32)})[0].shape)\n"
    )
    py = str(audit_env / "bin" / "python")
    no_ort = subprocess.run(
        [py, "-c", edge, str(model), vkey, str(receipt)], capture_output=True, text=True
    )
    assert no_ort.returncode != 0 and "pip install 'lethe-audit[remeasure]'" in no_ort.stderr

    # With [report,remeasure] the report renders there too.
    _pip(audit_env, "install", f"{wheels['audit']}[report,remeasure]")
    assert not _installed(audit_env) & HEAVY
    out = tmp_path / "report.html"
    _run(audit_env, "report", str(bundle), "--key", vkey, "-o", str(out))
    assert out.stat().st_size > 0
    ran = subprocess.run(
        [py, "-c", edge, str(model), vkey, str(receipt)], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("(1, ")  # the verified model's logits for one image
    full_mb = _site_mb(audit_env)
    print(f"lethe-audit[report,remeasure]: {full_mb:.0f} MB of site-packages")
    assert full_mb <= 600, f"core + [report,remeasure] is {full_mb:.0f} MB (target 600)"

    pub = lt.store.settings.keys / OPENSSF_PUBLIC_FILE
    _check_openssf_extra(audit_env, wheels, Path(exported.path), pub, vkey, receipt)


def _check_openssf_extra(
    core_env: Path, wheels: dict[str, Path], model: Path, pub: Path, vkey: str, receipt: Path
) -> None:
    """``lethe-audit[openssf]`` in a fresh environment: no torch; both verifiers accept the
    SDK's export and model_signing's refuses one flipped weight byte."""
    from tests.audit.test_openssf import _flip_weight_byte

    args = ["model", "verify", str(model), "--key", vkey, "--openssf", "--openssf-key", str(pub)]
    # Without the extra (the core environment also has [report,remeasure]): named, one line.
    res = subprocess.run(
        [str(core_env / "bin" / "lethe-audit"), *args], capture_output=True, text=True
    )
    assert res.returncode == 70 and "pip install 'lethe-audit[openssf]'" in res.stderr, res.stderr
    env = core_env.parent / "openssf-venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    _pip(env, "install", f"{wheels['audit']}[openssf]")
    installed = _installed(env)
    assert {"model-signing", "pyopenssl"} <= installed and not installed & HEAVY
    mb = _site_mb(env)
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
