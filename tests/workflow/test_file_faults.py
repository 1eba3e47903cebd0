"""Faults on the file side: a full disk under apply and filter training (a real, small tmpfs),
a kill between writing a filter bank and the commit that attaches it, a bank file that is not
the one the log attached, a project copied with symlinks followed; and idempotency keys reused
by someone else (issue 14, item 7)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from lethe.cli import main
from lethe.cli._errors import EXIT_CODES
from lethe.errors import (
    IdempotencyConflictError,
    InsufficientSpaceError,
    PublishedLinkError,
    UnattachedBankError,
)
from lethe.workflow import Lethe

from .conftest import MODEL

_APPLY = {"phase": "mask", "relearn": False, "progress": False}


def _cli(project: Path, *args: str, code: int = 0) -> tuple[dict[str, object], str]:
    res = CliRunner().invoke(main, ["--project", str(project), *args, "--json"])
    assert res.exit_code == code, (res.output, res.exception)
    return json.loads(res.stdout), res.stderr


def _approved(lt: Lethe, subject: str = "ann@example.com", cls: int = 3) -> str:
    req = lt.file(subject=subject, classes=[cls], legal_basis="gdpr-17-1-b")
    lt.approve(req.id, actor="dpo")
    return req.id


def _bank_file(lt: Lethe) -> Path:
    from lethe_audit.store import ModelRow

    with lt.store.read() as s:
        row = s.get(ModelRow, MODEL)
        assert row is not None and row.bank_path is not None
        return lt.store.abs(row.bank_path)


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


# -- idempotency keys (issue 14, item 7) -------------------------------------------------------


def test_idempotency_key_reused_for_another_subject_is_a_conflict(lt: Lethe) -> None:
    alice = lt.file(
        subject="alice@example.com", classes=[3], legal_basis="gdpr-17-1-b", idempotency_key="K1"
    )
    assert alice.subject_key is not None
    # mallory guesses (or reads) alice's key and files the same contents under it
    with pytest.raises(IdempotencyConflictError) as ei:
        lt.file(
            subject="mallory@example.com",
            classes=[3],
            legal_basis="gdpr-17-1-b",
            idempotency_key="K1",
        )
    assert alice.subject_key not in str(ei.value) and alice.id not in str(ei.value)
    # through the CLI: the conflict's exit code, and nothing of alice's request on stdout
    doc, _ = _cli(
        lt.settings.project_dir,
        *("request", "file", "--subject", "mallory@example.com", "--class", "3"),
        *("--legal-basis", "gdpr-17-1-b", "--idempotency-key", "K1"),
        code=EXIT_CODES[IdempotencyConflictError],
    )
    assert alice.subject_key not in json.dumps(doc) and alice.id not in json.dumps(doc)
    assert len(lt.list()) == 1  # mallory's attempts filed nothing
    # alice's own retry (same subject, same contents) is the same request, with her key
    again = lt.file(
        subject=" alice@example.com", classes=[3], legal_basis="gdpr-17-1-b", idempotency_key="K1"
    )
    assert (again.id, again.subject_key) == (alice.id, alice.subject_key)
    # nobody else gets the key: reads and decisions carry none
    assert lt.get(alice.id).subject_key is None
    assert [r.subject_key for r in lt.list()] == [None]
    assert lt.approve(alice.id, actor="dpo").subject_key is None
    doc, _ = _cli(lt.settings.project_dir, "request", "show", alice.id)
    assert alice.subject_key not in json.dumps(doc)
    # once the key is shredded the subject cannot be checked: a replay is a conflict
    lt.shred(alice.id, actor="dpo")
    with pytest.raises(IdempotencyConflictError, match="shredded"):
        lt.file(
            subject="alice@example.com",
            classes=[3],
            legal_basis="gdpr-17-1-b",
            idempotency_key="K1",
        )


# -- a project copied with symlinks followed ---------------------------------------------------


def test_published_folder_from_a_copy_is_repaired(project_dir: Path, tmp_path: Path) -> None:
    with Lethe.open(project_dir) as lt:
        _approved(lt)
        first = lt.apply(MODEL, **_APPLY)
    copy = tmp_path / "copied"
    shutil.copytree(project_dir, copy, symlinks=False)  # like `cp -rL`
    link = copy / "models" / MODEL / "published"
    assert link.is_dir() and not link.is_symlink()
    with Lethe.open(copy) as lt:
        _approved(lt, "bob@example.com", 5)
        second = lt.apply(MODEL, **_APPLY)
        assert second.outcome == "applied"
        assert link.is_symlink() and os.readlink(link) == f"applies/{second.id}"
        assert not list(link.parent.glob(".published.*"))  # the copy set aside is gone
        assert (link.parent / "applies" / first.id / "model.onnx").is_file()
        lt.verify_log()


def test_published_folder_without_its_apply_says_what_to_do(project_dir: Path) -> None:
    with Lethe.open(project_dir) as lt:
        _approved(lt)
        first = lt.apply(MODEL, **_APPLY)
        mdir = lt.model_dir(MODEL)
    link = mdir / "published"
    link.unlink()
    shutil.move(str(mdir / "applies" / first.id), str(link))  # only the copy is left
    with Lethe.open(project_dir) as lt:
        _approved(lt, "bob@example.com", 5)
        with pytest.raises(PublishedLinkError) as ei:
            lt.apply(MODEL, **_APPLY)
        assert "cp -rL" in str(ei.value) and f"mv {link}" in str(ei.value)
        assert link.is_dir()  # the only copy is left alone


# -- filter bank vs database -------------------------------------------------------------------

_KILL_AFTER_BANK_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from lethe.filters import FilterBank
    from lethe.workflow import Lethe

    project, tmp = sys.argv[1], sys.argv[2]
    with Lethe.open(project) as lt:
        bank = lt.load_bank("digits")
        other = bank.with_alpha({k: v * 0.5 for k, v in bank.alpha.items()})
        other.save(tmp)
        save = FilterBank.save

        def save_then_die(self, path):
            out = save(self, path)
            os.kill(os.getpid(), signal.SIGKILL)  # written, not yet attached
            return out

        FilterBank.save = save_then_die
        lt.attach_bank("digits", tmp)
    sys.exit(3)
    """
)


def test_kill_between_bank_save_and_commit(project_dir: Path, tmp_path: Path) -> None:
    with Lethe.open(project_dir) as lt:
        attached = lt.model(MODEL).bank_digest
        size = lt.log.size()
    other = tmp_path / "other.safetensors"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_BANK_SAVE, str(project_dir), str(other)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    doc, _ = _cli(project_dir, "filters", "show")
    with Lethe.open(project_dir) as lt:
        # the attached bank is intact: what show and apply use is what the log attached
        assert lt.model(MODEL).bank_digest == attached and lt.log.size() == size
        assert lt.load_bank(MODEL).digest == attached
        assert doc["ok"] is True
        bank_file = _bank_file(lt)
        # now the drift an older Lethe could leave: the attached file overwritten in place
        shutil.copyfile(other, bank_file)
        _, err = _cli(project_dir, "filters", "show", code=EXIT_CODES[UnattachedBankError])
        assert attached in err and len(err.strip().splitlines()) == 1
        _approved(lt)
        with pytest.raises(UnattachedBankError, match="the log attached"):
            lt.apply(MODEL, **_APPLY)
        assert not (lt.model_dir(MODEL) / "applies").exists()
        lt.attach_bank(MODEL, other)  # attaching again (logged) repairs it
        assert lt.load_bank(MODEL).digest == lt.model(MODEL).bank_digest != attached
        assert not bank_file.exists()  # the replaced file is removed
        assert _bank_file(lt).name == f"bank-{lt.model(MODEL).bank_digest[:16]}.safetensors"


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(project_dir: Path) -> Iterator[Path]:
    """The model's folder on its own tmpfs, just large enough for what is there now."""
    mdir = project_dir / "models" / MODEL
    keep = project_dir / f".{MODEL}-{uuid.uuid4().hex[:6]}"
    used = sum(p.stat().st_size for p in mdir.rglob("*") if p.is_file())
    shutil.move(str(mdir), str(keep))
    mdir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={used + (2 << 20)}", "tmpfs", str(mdir)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        mdir.rmdir()
        shutil.move(str(keep), str(mdir))
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        for p in keep.iterdir():
            shutil.move(str(p), str(mdir / p.name))
        yield mdir
    finally:
        subprocess.run(["umount", "-l", str(mdir)], check=False)


def _grow(mdir: Path, extra: int) -> None:
    used = shutil.disk_usage(mdir).used
    subprocess.run(
        ["mount", "-o", f"remount,size={used + extra}", str(mdir)], check=True, capture_output=True
    )


def test_apply_on_a_full_disk(project_dir: Path, small_disk: Path) -> None:
    with Lethe.open(project_dir) as lt:
        rid = _approved(lt)
        size = lt.log.size()
        before = _files(small_disk)
        with pytest.raises(InsufficientSpaceError) as ei:
            lt.apply(MODEL, **_APPLY)
        err = ei.value
        assert str(small_disk / "applies") in str(err) and "MiB" in str(err)
        assert err.needed > 40 << 20  # the folded checkpoint and the ONNX model
        assert _files(small_disk) - before <= {".apply.lock"}  # nothing of the apply is left
        assert lt.get(rid).status == "approved" and lt.log.size() == size
        _grow(small_disk, err.needed + (8 << 20))
        res = lt.apply(MODEL, **_APPLY)  # the retry succeeds
        assert res.outcome == "applied" and lt.get(rid).status == "applied"
        lt.verify_log()


def test_a_disk_that_fills_while_writing(tmp_path: Path) -> None:
    """Past the up-front check (another writer took the space): ENOSPC mid-write."""
    from lethe.workflow._space import write_new_dir

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        target = disk / "apply-1"
        with pytest.raises(InsufficientSpaceError, match=r"needs about 4\.0 MiB"):
            write_new_dir(target, 4 << 20, lambda d: (d / "x").write_bytes(b"\0" * (4 << 20)))
        # refused up front: 1 MiB is free
        assert not target.exists() and not list(disk.iterdir())
        with pytest.raises(InsufficientSpaceError):  # a low estimate: the real ENOSPC path
            write_new_dir(target, 1, lambda d: (d / "x").write_bytes(b"\0" * (4 << 20)))
        assert not target.exists() and not list(disk.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_filter_training_on_a_full_disk(project_dir: Path, small_disk: Path) -> None:
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * (free - 4096))  # the disk is now (nearly) full
    before = _files(small_disk)
    args = ("filters", "train", "--epochs", "1", "--batch-size", "256", "--quiet")
    doc, err = _cli(project_dir, *args, code=EXIT_CODES[InsufficientSpaceError])
    assert "no space left" in err and str(small_disk) in err
    assert doc["error"]["type"] == "InsufficientSpaceError"  # type: ignore[index]
    assert _files(small_disk) == before  # no checkpoint, no half-written bank, no temp file
    with Lethe.open(project_dir) as lt:
        old = lt.model(MODEL).bank_digest
    filler.unlink()
    out, _ = _cli(project_dir, *args)  # the retry succeeds
    with Lethe.open(project_dir) as lt:
        assert lt.model(MODEL).bank_digest == out["bank_digest"] != old
        assert lt.load_bank(MODEL).digest == out["bank_digest"]


def test_cli_maps_any_full_disk_to_its_exit_code(project_dir: Path, tmp_path: Path) -> None:
    """A full disk the SDK does not check for itself (here: writing an export) is still a typed
    one-line error with --json, never a traceback."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 4096))
        out = disk / "eval.npz"
        doc, err = _cli(
            project_dir,
            "export",
            "eval-data",
            "-o",
            str(out),
            code=EXIT_CODES[InsufficientSpaceError],
        )
        assert doc["ok"] is False and "no space left" in err and len(err.splitlines()) == 1
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no temp file left
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
