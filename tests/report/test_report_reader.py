"""One read of a bundle serves the verdict and the report (issue 15): the verifier returns what
it verified, and the report displays that instead of parsing the bundle a second time."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from lethe_audit import errors as E
from lethe_audit.report import _read, build_report
from lethe_audit.tlog import leaf_hash
from lethe_audit.verify import open_bundle, read_verified_bundle, verify_bundle
from tests.report import _bundles as B


def test_the_verifier_returns_what_it_verified(fixed: Any) -> None:
    verifier = [_read.as_verifiers(B.vkey())[0]]
    with open_bundle(fixed.bundle) as snap:
        v = read_verified_bundle(snap, verifier)
        lines = (snap.root / "entries.jsonl").read_bytes().splitlines()
        assert v.size == len(lines) == 13
        assert [v.leaf(i) for i in range(v.size)] == [leaf_hash(line) for line in lines]
        entries = list(v.entries())
        assert [e.index for e in entries] == list(range(13))
        assert entries[9].statement.predicate_type == "urn:lethe:attestation:unlearning:v1"
        assert v.checkpoints[-1].checkpoint.size == 13 == v.manifest.size
        assert all(c.note.startswith(B.ORIGIN) for c in v.checkpoints)


def test_a_tampered_bundle_raises_what_verify_bundle_raises(fixed: Any, tmp_path: Path) -> None:
    bundle = shutil.copytree(fixed.bundle, tmp_path / "b")
    lines = (bundle / "entries.jsonl").read_bytes().splitlines(keepends=True)
    lines[4], lines[5] = lines[5], lines[4]
    (bundle / "entries.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(E.VerificationError) as plain:
        verify_bundle(bundle, _read.as_verifiers(B.vkey()))
    with open_bundle(bundle) as snap, pytest.raises(E.VerificationError) as read:
        read_verified_bundle(snap, _read.as_verifiers(B.vkey()))
    assert (type(read.value), str(read.value)) == (type(plain.value), str(plain.value))


def test_a_verified_report_does_not_read_the_bundle_again(fixed: Any, monkeypatch: Any) -> None:
    full = build_report(fixed.bundle, [B.vkey()], now=B.NOW).to_dict()

    def second_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the report parsed the verified bundle a second time")

    monkeypatch.setattr(_read, "read", second_read)
    report = build_report(fixed.bundle, [B.vkey()], now=B.NOW)
    assert report.passed and report.to_dict() == full
