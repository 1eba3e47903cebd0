"""Hostile bundles (issue 14, items 6, 8, 9): racing writers, zip bombs, special files.

Each test builds the attack: a directory changed between verification and display, a zip that
would expand to 1 GiB or carries members the manifest does not list, FIFOs and links to
``/dev/zero`` where the verifier expects regular files.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lethe_audit import note
from lethe_audit.cli import main
from lethe_audit.errors import BundleError
from lethe_audit.log import AuditLog
from lethe_audit.verify import open_bundle, read_manifest, verify_bundle
from tests.audit._audit_helpers import event

GiB = 1 << 30


@pytest.fixture
def bundle(sqlite_url: str, log_factory: Any, tmp_path: Path) -> Path:
    """A verifying directory bundle of 4 entries with one attachment."""
    log: AuditLog = log_factory(sqlite_url)
    for i in range(4):
        log.append(event(i))
    att = tmp_path / "table.csv"
    att.write_text("class,accuracy\n1,0.0\n", encoding="utf-8")
    return log.export_bundle(tmp_path / "bundle", attachments=[att])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess; the timeout is only a safety net against a hang."""
    return subprocess.run(
        [sys.executable, "-m", "lethe_audit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- 6: verify and display the same bytes ----------------------------------------------------


def _forged_history(tmp_path: Path, origin: str) -> Path:
    """A second log of the same origin, one entry longer, signed by a key nobody trusts."""
    rogue = note.Signer.generate(origin)
    from lethe_audit import store

    url = f"sqlite:///{tmp_path / 'rogue.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[rogue])
    log.initialize()
    for i in range(5):
        log.append(event(i))
    out = log.export_bundle(tmp_path / "rogue-bundle")
    log.engine.dispose()
    return out


def _swap_in(target: Path, forged: Path) -> None:
    for name in ("manifest.json", "entries.jsonl", "checkpoints.jsonl", "keys.json"):
        shutil.copyfile(forged / name, target / name)


def test_report_shows_the_bytes_it_verified(
    sqlite_url: str, log_factory: Any, signer: note.Signer, tmp_path: Path, monkeypatch: Any
) -> None:
    from lethe_audit.report import _read, build_report

    log: AuditLog = log_factory(sqlite_url)
    for i in range(4):
        log.append(event(i))
    bundle = log.export_bundle(tmp_path / "bundle")
    forged = _forged_history(tmp_path, signer.name)
    verified_root = read_manifest(bundle).root
    real_verify = _read.read_verified_bundle

    def racing_writer(*args: Any, **kwargs: Any) -> Any:
        verified = real_verify(*args, **kwargs)
        _swap_in(bundle, forged)  # right after the verdict, before the display read
        return verified

    monkeypatch.setattr(_read, "read_verified_bundle", racing_writer)
    report = build_report(bundle, [signer.verifier()])
    assert report.passed
    assert read_manifest(bundle).size == 5  # the directory now holds the rogue history
    log_data = report.data["log"]
    assert log_data["size"] == 4
    assert base64.b64decode(log_data["root"]) == verified_root


def test_verify_cli_prints_the_manifest_it_verified(
    bundle: Path, signer: note.Signer, tmp_path: Path, monkeypatch: Any
) -> None:
    import lethe_audit.verify as V

    real_verify = V.verify_bundle

    def racing_writer(*args: Any, **kwargs: Any) -> None:
        real_verify(*args, **kwargs)
        doc = json.loads((bundle / "manifest.json").read_text())
        doc["origin"], doc["size"] = "evil.example/log", 999
        (bundle / "manifest.json").write_text(json.dumps(doc))

    monkeypatch.setattr(V, "verify_bundle", racing_writer)
    r = CliRunner().invoke(main, ["verify", str(bundle), "--key", signer.verifier().vkey, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["origin"], doc["size"]) == ("example.org/lethe-test", 4)


# --- 8: zip bombs and unlisted members -------------------------------------------------------


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int, int]]) -> None:
    """Write a zip by hand: (name, stored payload, method, crc, uncompressed size, flags)."""
    out, central = bytearray(), bytearray()
    for name, payload, method, crc, size, flags in members:
        nb = name.encode()
        offset = len(out)
        head = (20, flags, method, 0, 0x21, crc, len(payload), size, len(nb), 0)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *head) + nb + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *head, 0, 0, 0, 0, offset) + nb
    n = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int, int]:
    return (name, data, 0, zlib.crc32(data), len(data), 0)


def _bundle_members(bundle: Path) -> list[tuple[str, bytes, int, int, int, int]]:
    names = ["manifest.json", "entries.jsonl", "checkpoints.jsonl", "keys.json"]
    names += [a["path"] for a in json.loads((bundle / "manifest.json").read_text())["attachments"]]
    return [_stored(n, (bundle / n).read_bytes()) for n in names]


def _bomb(name: str) -> tuple[str, bytes, int, int, int, int]:
    """A deflate stream of 1 GiB of zeros in about 1 MB, built without compressing 1 GiB."""
    zero = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(zero) + c.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every MiB
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(zero, crc)
    return (name, block * 1024 + c.flush(), 8, crc, GiB, 0)


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_zip_bomb_attachment_is_rejected_unread(
    bundle: Path, signer: note.Signer, tmp_path: Path
) -> None:
    members = _bundle_members(bundle)[1:]
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["attachments"].append(
        {"path": "attachments/bomb.bin", "sha256": "0" * 64, "bytes": GiB, "media_type": "x/y"}
    )
    (bundle / "manifest.json").write_text(json.dumps(doc))
    z = tmp_path / "bomb.zip"
    manifest = _stored("manifest.json", (bundle / "manifest.json").read_bytes())
    _raw_zip(z, [manifest, *members, _bomb("attachments/bomb.bin")])
    assert z.stat().st_size < 2 << 20
    with open_bundle(z) as snap:
        assert isinstance(snap.problem, BundleError)
        assert "zip bomb" in str(snap.problem)
        assert _tree_bytes(snap.root) < 1 << 20
    with pytest.raises(BundleError, match="zip bomb"):
        verify_bundle(z, [signer.verifier()])


def test_unlisted_zip_member_is_rejected_unread(
    bundle: Path, signer: note.Signer, tmp_path: Path
) -> None:
    z = tmp_path / "extra.zip"
    _raw_zip(z, [*_bundle_members(bundle), _bomb("attachments/unlisted.bin")])
    with open_bundle(z) as snap:
        assert "does not list" in str(snap.problem)
        assert _tree_bytes(snap.root) < 1 << 20
    with pytest.raises(BundleError, match="does not list"):
        verify_bundle(z, [signer.verifier()])
    r = _cli("verify", str(z), "--key", signer.verifier().vkey)
    assert r.returncode == 17 and "Traceback" not in r.stderr, r.stderr
    assert "does not list" in r.stderr


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: (m[0], m[1], 99, m[3], m[4], m[5]), "unsupported compression"),
        (lambda m: (m[0], m[1], m[2], m[3], m[4], 1), "encrypted"),
        (lambda m: (m[0], m[1], m[2], m[3] ^ 1, m[4], m[5]), "cannot be read"),
        (lambda m: (m[0], m[1], 8, m[3], m[4], m[5]), "cannot be read"),  # not deflate data
    ],
    ids=["unknown-method", "encrypted", "bad-crc", "bad-deflate"],
)
def test_damaged_zip_members_are_typed_errors(
    bundle: Path, signer: note.Signer, tmp_path: Path, change: Any, match: str
) -> None:
    members = _bundle_members(bundle)
    members[1] = change(members[1])  # entries.jsonl
    z = tmp_path / "bad.zip"
    _raw_zip(z, members)
    with pytest.raises(BundleError, match=match):
        verify_bundle(z, [signer.verifier()])


@pytest.mark.parametrize(
    "extra",
    [
        [_stored("attachments/.", b"x")],
        [_stored("attachments/table.csv/inner", b"x")],
        [_stored("entries.jsonl", b"again\n")],
    ],
    ids=["dot-member", "file-dir-clash", "duplicate"],
)
def test_odd_zip_member_names_are_typed_errors(
    bundle: Path, signer: note.Signer, tmp_path: Path, extra: Any
) -> None:
    z = tmp_path / "odd.zip"
    _raw_zip(z, [*_bundle_members(bundle), *extra])
    with pytest.raises(BundleError):
        verify_bundle(z, [signer.verifier()])


@pytest.mark.parametrize(
    "path", ["attachments/.", "attachments/..", "attachments/a/./b", "attachments/table.csv/x"]
)
def test_manifest_attachment_paths_are_checked(
    bundle: Path, signer: note.Signer, path: str
) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["attachments"].append({"path": path, "sha256": "0" * 64, "bytes": 1})
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"manifest\.json"):
        verify_bundle(bundle, [signer.verifier()])


def test_honest_zip_still_verifies(bundle: Path, signer: note.Signer, tmp_path: Path) -> None:
    z = tmp_path / "ok.zip"
    _raw_zip(z, _bundle_members(bundle))
    verify_bundle(z, [signer.verifier()])
    assert read_manifest(z).size == 4


# --- 9: special files ------------------------------------------------------------------------


def _attachment(bundle: Path) -> Path:
    return bundle / json.loads((bundle / "manifest.json").read_text())["attachments"][0]["path"]


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _link_out(path: Path) -> None:
    outside = path.parent.parent.parent / "outside.txt"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)


@pytest.mark.parametrize("make", [_fifo, _dev_zero, _link_out], ids=["fifo", "dev-zero", "link"])
@pytest.mark.parametrize("where", ["attachment", "manifest"])
def test_special_files_are_refused_without_hanging(
    bundle: Path, signer: note.Signer, make: Any, where: str
) -> None:
    target = _attachment(bundle) if where == "attachment" else bundle / "manifest.json"
    make(target)
    with pytest.raises(BundleError, match="not a regular file"):
        verify_bundle(bundle, [signer.verifier()])
    vkey = signer.verifier().vkey
    r = _cli("verify", str(bundle), "--key", vkey)
    assert r.returncode == 17, r.stderr
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_symlinked_directory_is_not_followed(bundle: Path, signer: note.Signer) -> None:
    att = bundle / "attachments"
    moved = bundle.parent / "elsewhere"
    att.rename(moved)
    att.symlink_to(moved, target_is_directory=True)
    with pytest.raises(BundleError, match="not a regular file"):
        verify_bundle(bundle, [signer.verifier()])


def test_report_on_a_fifo_attachment_is_a_failed_report(
    bundle: Path, signer: note.Signer, tmp_path: Path
) -> None:
    _fifo(_attachment(bundle))
    out = tmp_path / "r.json"
    r = _cli("report", str(bundle), "--key", signer.verifier().vkey, "-o", str(out))
    assert r.returncode == 17 and "Traceback" not in r.stderr, r.stderr
    assert "not a regular file" in json.loads(out.read_text())["headline"] + r.stderr


def test_oversized_directory_attachment_is_not_copied(bundle: Path, signer: note.Signer) -> None:
    """A sparse 8 GiB file where the manifest lists a few bytes: copied no further than that."""
    att = _attachment(bundle)
    with att.open("r+b") as f:
        f.truncate(8 * GiB)
    with open_bundle(bundle) as snap:
        assert "larger than its listed size" in str(snap.problem)
        assert _tree_bytes(snap.root) < 1 << 20
    with pytest.raises(BundleError, match="larger than its listed size"):
        verify_bundle(bundle, [signer.verifier()])
