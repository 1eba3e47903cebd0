"""Fixtures of the report tests: the fixed log of ``_bundles`` exported once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.report._bundles import REQ_B, build_erase_log, build_log

os.environ.setdefault("MPLBACKEND", "Agg")


@dataclass(frozen=True)
class Fixed:
    root: Path
    bundle: Path  # directory bundle with figures
    bundle_zip: Path  # the same as .zip
    plain: Path  # a bundle of the same story without figures or attachments
    receipts: dict[str, Path]  # "applied" (entry 9), "failed" (entry 11), "received" (entry 3)


@pytest.fixture(scope="session")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixed]:
    root = tmp_path_factory.mktemp("report-fixed")
    full = build_log(root / "log")
    plain = build_log(root / "plain-log", figures=False)
    try:
        bundle = full.bundle(root / "bundle")
        bundle_zip = full.bundle(root / "bundle.zip")
        plain_bundle = plain.bundle(root / "plain-bundle")
        rdir = root / "receipts"
        rdir.mkdir()
        receipts = {}
        for name, index in (("applied", 9), ("failed", 11), ("received", 3)):
            p = rdir / f"{name}.tlog-proof"
            p.write_text(full.receipt(index), encoding="utf-8")
            receipts[name] = p
        named = rdir / f"{REQ_B}.tlog-proof"
        named.write_text(full.receipt(9), encoding="utf-8")
        receipts["named"] = named
    finally:
        full.log.engine.dispose()
        plain.log.engine.dispose()
    yield Fixed(root, bundle, bundle_zip, plain_bundle, receipts)


@dataclass(frozen=True)
class Erased:
    root: Path
    bundle: Path  # the fixed story plus the erase apply of entry 9 (entry 13)
    receipts: dict[str, Path]  # "erase" (entry 13), "mask" (entry 9)


@pytest.fixture(scope="session")
def erased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Erased]:
    root = tmp_path_factory.mktemp("report-erased")
    log = build_erase_log(root / "log")
    try:
        bundle = log.bundle(root / "bundle")
        receipts = {}
        for name, index in (("erase", 13), ("mask", 9)):
            p = root / f"{name}.tlog-proof"
            p.write_text(log.receipt(index), encoding="utf-8")
            receipts[name] = p
    finally:
        log.log.engine.dispose()
    yield Erased(root, bundle, receipts)
