"""One bounded, private copy of a bundle: what is verified is what is displayed.

A bundle directory can change while it is read (a writer racing the verifier), and a ``.zip``
can be a bomb. :func:`open_bundle` therefore copies the members the manifest lists (and the
three fixed files) once into a private temporary directory, hashing as it copies, under the
limits below; the verifier and the report read only that copy. In a directory only regular
files are read (no symbolic links, FIFOs or devices, at any level); in a zip only listed
members, neither encrypted nor in an unknown compression method, within the size, count and
ratio limits.

Problems found while copying do not raise at once: they are kept in
:attr:`BundleSnapshot.problem` and the verifier raises them first, so that a report can still
show what could be read.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lethe_audit.bundle import CHECKPOINTS, ENTRIES, KEYS, MANIFEST, Manifest
from lethe_audit.errors import BundleError, LetheAuditError

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "MAX_RATIO",
    "BundleSnapshot",
    "open_bundle",
    "read_manifest_text",
]

#: The largest manifest.json read.
MAX_MANIFEST_BYTES = 16 << 20
#: The most members (files and directories) a zip bundle may have.
MAX_MEMBERS = 100_000
#: The most bytes a bundle's listed files may hold together.
MAX_BUNDLE_BYTES = 64 << 30
#: The largest expansion (uncompressed / compressed size) of a zip member over RATIO_FLOOR bytes.
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20
#: entries.jsonl and checkpoints.jsonl may exceed their listed sizes by this much and still be
#: copied (so that a report can locate an edited entry); beyond it, and beyond its listed size
#: for any other file, the copy stops. All copies together stop at MAX_BUNDLE_BYTES.
SLACK_BYTES = 64 << 20
_FIXED = (ENTRIES, CHECKPOINTS, KEYS)
_CHUNK = 1 << 20
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
)


@dataclass
class BundleSnapshot:
    """A private copy of a bundle. ``root``: the directory holding the copies; ``source``: the
    bundle as given; ``manifest``: the parsed manifest (``None`` when unreadable); ``problem``:
    the first problem met while copying; ``digests``: (sha256 hex, size) of each copied file."""

    root: Path
    source: Path
    manifest: Manifest | None = None
    problem: BundleError | None = None
    digests: dict[str, tuple[str, int]] = field(default_factory=dict)
    copied: int = 0

    def fail(self, message: str) -> None:
        if self.problem is None:
            self.problem = BundleError(f"{self.source}: {message}")


def _listed(snap: BundleSnapshot) -> dict[str, int]:
    """Name -> the most bytes to copy, for the files the verifier and the report read."""
    m = snap.manifest
    if m is None:
        return dict.fromkeys(_FIXED, MAX_BUNDLE_BYTES)
    sizes = {name: m.files[name].bytes if name in m.files else 0 for name in _FIXED}
    sizes.update({a.path: a.bytes for a in m.attachments})
    if len(sizes) > MAX_MEMBERS:
        snap.fail(f"the manifest lists {len(sizes)} files, more than {MAX_MEMBERS}")
        return {}
    total = sum(sizes.values())
    if total > MAX_BUNDLE_BYTES:
        snap.fail(f"the manifest lists {total} bytes, more than the {MAX_BUNDLE_BYTES} read")
        return {}
    slack = {ENTRIES: SLACK_BYTES, CHECKPOINTS: SLACK_BYTES}
    return {name: min(n + slack.get(name, 0), MAX_BUNDLE_BYTES) for name, n in sizes.items()}


def _copy(snap: BundleSnapshot, src: BinaryIO, name: str, limit: int) -> None:
    """Copy ``src`` into the snapshot as ``name``, hashing it, reading at most limit + 1 bytes."""
    if snap.copied + limit > MAX_BUNDLE_BYTES:
        limit = MAX_BUNDLE_BYTES - snap.copied
    target = snap.root / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        h, n = hashlib.sha256(), 0
        with target.open("xb") as dst:
            while chunk := src.read(min(_CHUNK, limit + 1 - n)):
                n += len(chunk)
                if n > limit:
                    snap.fail(
                        f"{name} is larger than its listed size (or the bundle than "
                        f"{MAX_BUNDLE_BYTES} bytes): not read to the end"
                    )
                    snap.copied += n - len(chunk)
                    return
                h.update(chunk)
                dst.write(chunk)
    except OSError as e:
        snap.fail(f"{name} cannot be copied ({e.strerror or e}): a name clash?")
        return
    snap.copied += n
    snap.digests[name] = (h.hexdigest(), n)


def _parse_manifest(snap: BundleSnapshot, data: bytes) -> None:
    (snap.root / MANIFEST).write_bytes(data)
    try:
        snap.manifest = Manifest.parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        snap.fail(f"{MANIFEST} is not UTF-8")
    except LetheAuditError as e:
        snap.fail(str(e))


# --- directories ----------------------------------------------------------------------------

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _open_regular(root_fd: int, name: str) -> int | None:
    """An fd of the regular file ``name`` under ``root_fd``, following no link at any level;
    None when it does not exist. Raises BundleError for anything that is not a regular file."""
    parts = name.split("/")
    opened: list[int] = []
    fd = root_fd
    try:
        for part in parts[:-1]:
            fd = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
            opened.append(fd)
        out = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BundleError(f"{name} is not a regular file ({e.strerror})") from None
    finally:
        for d in opened:
            os.close(d)
    if not stat.S_ISREG(os.fstat(out).st_mode):
        os.close(out)
        raise BundleError(f"{name} is not a regular file: bundles hold regular files only")
    return out


def _read_dir_file(snap: BundleSnapshot, root_fd: int, name: str, limit: int) -> bool:
    try:
        fd = _open_regular(root_fd, name)
    except BundleError as e:
        snap.fail(str(e))
        return False
    if fd is None:
        return False
    with os.fdopen(fd, "rb") as src:
        _copy(snap, src, name, limit)
    return True


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | _DIRECTORY)
    except OSError as e:
        raise BundleError(f"{path} cannot be read ({e.strerror})") from None


def _snapshot_dir(snap: BundleSnapshot, path: Path) -> None:
    root_fd = _open_dir(path)
    try:
        if _read_dir_file(snap, root_fd, MANIFEST, MAX_MANIFEST_BYTES):
            if snap.digests.pop(MANIFEST, None) is not None:
                _parse_manifest(snap, (snap.root / MANIFEST).read_bytes())
        else:
            snap.fail(f"no {MANIFEST}: not a bundle")
        for name, limit in _listed(snap).items():
            _read_dir_file(snap, root_fd, name, limit)
    finally:
        os.close(root_fd)


# --- zip files ------------------------------------------------------------------------------


def _member_problem(info: zipfile.ZipInfo, limit: int) -> str | None:
    name = info.filename
    if info.flag_bits & 0x1:
        return f"member {name!r} is encrypted"
    if info.compress_type not in _ZIP_METHODS:
        return f"member {name!r} uses an unsupported compression method ({info.compress_type})"
    if info.file_size > limit:
        return f"member {name!r} is larger than its listed size ({info.file_size} bytes)"
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return f"member {name!r} expands more than {MAX_RATIO}x: a zip bomb?"
    return None


def _extract(snap: BundleSnapshot, z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> None:
    why = _member_problem(info, limit)
    if why is not None:
        snap.fail(why)
        return
    try:
        with z.open(info) as src:
            _copy(snap, src, info.filename, limit)  # type: ignore[arg-type]
    except _ZIP_ERRORS as e:
        snap.digests.pop(info.filename, None)
        snap.fail(f"member {info.filename!r} cannot be read ({e})")


def _members(snap: BundleSnapshot, z: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo] | None:
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        snap.fail(f"the archive has {len(infos)} members, more than {MAX_MEMBERS}")
        return None
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.is_dir():
            continue
        if info.filename in out:
            snap.fail(f"member {info.filename!r} appears twice in the archive")
            return None
        out[info.filename] = info
    return out


def _snapshot_zip(snap: BundleSnapshot, z: zipfile.ZipFile) -> None:
    members = _members(snap, z)
    if members is None:
        return
    info = members.pop(MANIFEST, None)
    if info is None:
        snap.fail(f"no {MANIFEST}: not a bundle")
    else:
        _extract(snap, z, info, MAX_MANIFEST_BYTES)
        if snap.digests.pop(MANIFEST, None) is not None:
            _parse_manifest(snap, (snap.root / MANIFEST).read_bytes())
    listed = _listed(snap)
    if snap.manifest is not None:
        for name in sorted(set(members) - set(listed)):
            snap.fail(f"unexpected member {name!r}: the manifest does not list it")
    for name, limit in listed.items():
        if name in members:
            _extract(snap, z, members[name], limit)


# --- the entry point ------------------------------------------------------------------------


@contextmanager
def open_bundle(path: str | os.PathLike[str]) -> Iterator[BundleSnapshot]:
    """Copy the bundle at ``path`` (a directory or a ``.zip``) once into a private temporary
    directory and yield it; the copy is removed on exit. Raises BundleError only when ``path``
    is not a bundle at all; other problems are in the snapshot's ``problem``."""
    source = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix="lethe-bundle-"))
    snap = BundleSnapshot(root=tmp, source=source)
    try:
        try:
            mode = source.stat().st_mode
        except OSError:
            raise BundleError(f"{source} does not exist") from None
        if stat.S_ISDIR(mode):
            _snapshot_dir(snap, source)
        elif not stat.S_ISREG(mode):
            raise BundleError(f"{source} is neither a bundle directory nor a .zip file")
        else:
            _open_zip(snap, source)
        yield snap
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_zip(snap: BundleSnapshot, source: Path) -> None:
    try:
        z = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise BundleError(f"{source} is neither a bundle directory nor a .zip bundle") from None
    with z:
        _snapshot_zip(snap, z)


def read_manifest_text(path: str | os.PathLike[str]) -> str:
    """The manifest text of a bundle directory or ``.zip``, read under the same rules (regular
    file, bounded size); BundleError when it cannot be read."""
    p = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix="lethe-manifest-"))
    try:
        snap = BundleSnapshot(root=tmp, source=p)
        data = _manifest_only(snap, p)
        if data is None:
            raise snap.problem or BundleError(f"{p} has no readable {MANIFEST}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"{p}: {MANIFEST} is not UTF-8") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest_only(snap: BundleSnapshot, p: Path) -> bytes | None:
    try:
        mode = p.stat().st_mode
    except OSError:
        raise BundleError(f"{p} does not exist") from None
    if stat.S_ISDIR(mode):
        root_fd = _open_dir(p)
        try:
            _read_dir_file(snap, root_fd, MANIFEST, MAX_MANIFEST_BYTES)
        finally:
            os.close(root_fd)
    elif stat.S_ISREG(mode):
        try:
            z = zipfile.ZipFile(p)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise BundleError(f"{p} is neither a bundle directory nor a .zip bundle") from None
        with z:
            members = _members(snap, z)
            if members is not None and MANIFEST in members:
                _extract(snap, z, members[MANIFEST], MAX_MANIFEST_BYTES)
    else:
        raise BundleError(f"{p} is neither a bundle directory nor a .zip file")
    if snap.problem is not None or MANIFEST not in snap.digests:
        return None
    with suppress(OSError):
        return (snap.root / MANIFEST).read_bytes()
    return None
