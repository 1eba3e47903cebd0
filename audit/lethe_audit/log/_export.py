"""Writing auditor bundles (format: :mod:`lethe_audit.bundle`, docs/formats.md)."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, cast

from sqlalchemy import select
from sqlalchemy.engine import Connection

from lethe_audit._version import __version__
from lethe_audit.bundle import (
    ATTACHMENTS_DIR,
    CHECKPOINTS,
    ENTRIES,
    KEYS,
    MANIFEST,
    Attachment,
    FileDigest,
    Manifest,
    safe_attachment_path,
)
from lethe_audit.errors import BundleWriteError, LogStateError, StoreError
from lethe_audit.log._keys import KEY_COLUMNS, KeyRecord
from lethe_audit.store import TlogCheckpoint, TlogEntry, TlogHead, TlogKey

_BATCH = 10_000


class _HashingWriter:
    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._h.update(data)
        self.bytes += len(data)

    def digest(self) -> FileDigest:
        return FileDigest(self._h.hexdigest(), self.bytes)


class _Sink:
    """Where bundle files go: a directory or a zip archive."""

    def __init__(self, root: Path | None, archive: zipfile.ZipFile | None) -> None:
        if (root is None) == (archive is None):
            raise ValueError("a bundle sink is a directory or a zip archive: give exactly one")
        self._root = root
        self._zip = archive

    @contextmanager
    def open(self, name: str) -> Iterator[_HashingWriter]:
        if self._zip is not None:
            with self._zip.open(name, "w", force_zip64=True) as f:
                yield _HashingWriter(f)
            return
        target = cast(Path, self._root) / name  # one of the two, checked in __init__
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as f:
            w = _HashingWriter(f)
            yield w
            f.flush()
            os.fsync(f.fileno())


def _write_entries(conn: Connection, sink: _Sink, size: int, progress: bool) -> FileDigest:
    """``entries.jsonl``: every envelope of the first ``size`` entries, one per line."""
    from tqdm import tqdm

    with (
        sink.open(ENTRIES) as w,
        tqdm(total=size, disable=None if progress else True, unit="entry", desc="export") as bar,
    ):
        for lo in range(0, size, _BATCH):
            hi = min(lo + _BATCH, size)
            q = (
                select(TlogEntry.idx, TlogEntry.envelope)
                .where(TlogEntry.idx >= lo, TlogEntry.idx < hi)
                .order_by(TlogEntry.idx)
            )
            expected = lo
            for idx, envelope in conn.execute(q):
                if idx != expected:
                    raise StoreError(f"entry {expected} is missing from the database")
                data = bytes(envelope)
                if b"\n" in data:
                    raise StoreError(f"entry {idx} is not canonical JSON (it holds a newline)")
                w.write(data + b"\n")
                expected += 1
            if expected != hi:
                raise StoreError(f"entry {expected} is missing from the database")
            bar.update(hi - lo)
    return w.digest()


def _write_checkpoints(conn: Connection, sink: _Sink, size: int) -> FileDigest:
    """``checkpoints.jsonl``: every stored checkpoint up to ``size``."""
    with sink.open(CHECKPOINTS) as w:
        cq = (
            select(TlogCheckpoint.size, TlogCheckpoint.note)
            .where(TlogCheckpoint.size <= size)
            .order_by(TlogCheckpoint.size)
        )
        for cp_size, note_text in conn.execute(cq):
            line = json.dumps({"note": note_text, "size": cp_size}, sort_keys=True)
            w.write(line.encode("utf-8") + b"\n")
    return w.digest()


def _write_keys(conn: Connection, sink: _Sink, size: int) -> FileDigest:
    """``keys.json``: the signing keys added up to ``size``."""
    keys = [
        asdict(KeyRecord(*k))
        for k in conn.execute(
            select(*KEY_COLUMNS)
            .where(TlogKey.added_at_size <= size)
            .order_by(TlogKey.added_at_size, TlogKey.vkey)
        )
    ]
    with sink.open(KEYS) as w:
        w.write((json.dumps({"keys": keys}, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return w.digest()


def _write_attachments(sink: _Sink, attachments: Sequence[Path]) -> tuple[Attachment, ...]:
    """Copy each attachment under ``attachments/`` (unique, safe names), with its digest."""
    atts = []
    seen: set[str] = set()
    for src in attachments:
        rel = f"{ATTACHMENTS_DIR}/{src.name}"
        if not safe_attachment_path(rel) or rel in seen:
            raise BundleWriteError(
                f"attachment name {src.name!r} is not usable (letters, digits, . _ - only; unique)"
            )
        seen.add(rel)
        try:
            with src.open("rb") as f, sink.open(rel) as w:
                while chunk := f.read(1 << 20):
                    w.write(chunk)
        except OSError as e:
            raise BundleWriteError(f"cannot read attachment {src}: {e.strerror}") from None
        d = w.digest()
        media = mimetypes.guess_type(src.name)[0] or "application/octet-stream"
        atts.append(Attachment(rel, d.sha256, d.bytes, media))
    return tuple(atts)


def _write_bundle(
    conn: Connection, sink: _Sink, attachments: Sequence[Path], progress: bool
) -> Manifest:
    head = conn.execute(
        select(TlogHead.origin, TlogHead.size, TlogHead.root, TlogHead.checkpoint).where(
            TlogHead.id == 1
        )
    ).first()
    if head is None:
        raise LogStateError("the log is not initialised: nothing to export")
    size = head.size
    files: dict[str, FileDigest] = {
        ENTRIES: _write_entries(conn, sink, size, progress),
        CHECKPOINTS: _write_checkpoints(conn, sink, size),
        KEYS: _write_keys(conn, sink, size),
    }
    manifest = Manifest(
        origin=head.origin,
        size=size,
        root=bytes(head.root),
        checkpoint=head.checkpoint,
        files=files,
        attachments=_write_attachments(sink, attachments),
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        generator=f"lethe-audit {__version__}",
    )
    with sink.open(MANIFEST) as w:
        w.write(manifest.to_json().encode("utf-8"))
    return manifest


def export_bundle(
    conn: Connection, path: Path, *, attachments: Sequence[str | Path], progress: bool
) -> Path:
    """Write the bundle to a temporary name next to ``path``, then rename it into place."""
    if path.exists():
        raise BundleWriteError(f"{path} already exists: refusing to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BundleWriteError(f"directory {parent} does not exist")
    att_paths = [Path(a) for a in attachments]
    if path.suffix == ".zip":
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
                _write_bundle(conn, _Sink(None, z), att_paths, progress)
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path
    tmp_dir = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        _write_bundle(conn, _Sink(tmp_dir, None), att_paths, progress)
        os.replace(tmp_dir, path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return path
