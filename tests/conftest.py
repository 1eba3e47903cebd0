"""Shared fixtures: a real timm classifier trained on the embedded digits data, with its
filter bank, trained once per test run and shared between xdist workers via a file lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per xdist worker: N workers x N threads oversubscribes the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@dataclass(frozen=True)
class DigitsSetup:
    """Paths of the cached artefacts plus the split used to make them."""

    model_path: Path
    bank_path: Path
    seed: int

    def load(self):  # type: ignore[no-untyped-def]
        from lethe.filters import FilterBank
        from lethe.models import load_checkpoint

        model, spec = load_checkpoint(self.model_path)
        bank = FilterBank.load(self.bank_path, model)
        return model, spec, bank

    def data(self):  # type: ignore[no-untyped-def]
        from lethe.data import load_digits, stratified_split

        return stratified_split(load_digits(), test_fraction=0.25, seed=self.seed)


DIGITS_SPEC = {"arch": "resnet18", "num_classes": 10, "in_chans": 1, "input_size": (32, 32)}


def _build_digits(dest: Path, seed: int) -> None:
    import torch

    from lethe.data import load_digits, stratified_split, to_dataset
    from lethe.filters import FilterBank, train
    from lethe.models import ModelSpec, create_model, fit, save_checkpoint

    torch.manual_seed(seed)
    spec = ModelSpec(**DIGITS_SPEC)  # type: ignore[arg-type]
    data = load_digits()
    tr, _ = stratified_split(data, test_fraction=0.25, seed=seed)
    ds = to_dataset(tr, spec.preprocess)
    model = create_model(spec, seed=seed)
    fit(model, ds, epochs=10, lr=2e-3, seed=seed, progress=False)
    bank = train(
        model,
        FilterBank.init(model, 10, class_names=data.classes),
        ds,
        epochs=8,
        seed=seed,
        progress=False,
    )
    save_checkpoint(model, spec, dest / "model.safetensors", trained_by="lethe")
    bank.save(dest / "bank.safetensors")


def _cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$LETHE_TEST_CACHE`` (kept between runs, keyed by the code that builds the cache), else
    a folder of this run shared by its xdist workers."""
    env = os.environ.get("LETHE_TEST_CACHE")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    base = tmp_path_factory.getbasetemp()
    # xdist workers get sibling base dirs; their common parent belongs to this run only.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _code_key() -> str:
    """Digest of everything that decides the cached artefacts (code and recipe)."""
    import hashlib

    root = Path(__file__).resolve().parents[1] / "sdk" / "lethe"
    h = hashlib.sha256(Path(__file__).read_bytes())
    for sub in ("models.py", "_digest.py", "filters", "data"):
        p = root / sub
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DigitsSetup]:
    """A resnet18 trained on digits (base ~0.98) and its trained filter bank."""
    shared = _cache_root(tmp_path_factory) / f"lethe-digits-{_code_key()}"
    shared.mkdir(parents=True, exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (shared / "bank.safetensors").exists():
                _build_digits(shared, seed=0)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    yield DigitsSetup(shared / "model.safetensors", shared / "bank.safetensors", seed=0)


def digits_without_3(digits: DigitsSetup) -> Path:
    """The digits fixture's recipe retrained from scratch without class 3 (seed 0): the depth
    reference of the filters' erase test and the "trained without" model version of the
    workflow tests. One file beside the fixture, built once per cache under its lock."""
    import torch

    from lethe.data import to_dataset
    from lethe.models import ModelSpec, create_model, fit, save_checkpoint

    path = digits.model_path.parent / "retrained-without-3.safetensors"
    with open(digits.model_path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not path.exists():
                spec = ModelSpec(**DIGITS_SPEC)  # type: ignore[arg-type]
                train, _ = digits.data()
                ds = to_dataset(train, spec.preprocess)
                keep = ds.tensors[1] != 3
                retain = torch.utils.data.TensorDataset(*(t[keep] for t in ds.tensors))
                torch.manual_seed(0)
                model = create_model(spec, seed=0)
                fit(model, retain, epochs=10, lr=2e-3, seed=0, progress=False)
                tmp = path.with_name("retrained-without-3.part.safetensors")
                save_checkpoint(model, spec, tmp, trained_by="lethe")
                tmp.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path
