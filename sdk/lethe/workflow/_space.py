"""Writing files on a disk that may fill up: check the space first, and when the disk fills
anyway, remove what this call wrote and say which path needs how much room."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lethe._io import fsync_dir
from lethe.errors import InsufficientSpaceError

__all__ = ["is_disk_full", "space_error", "write_new_dir"]

T = TypeVar("T")

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` that says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _free(path: Path) -> int:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def space_error(path: Path, needed: int, *, what: str) -> InsufficientSpaceError:
    try:
        free = f"{_mib(_free(path))} free"
    except OSError:
        free = "free space unknown"
    return InsufficientSpaceError(
        f"no space left for {what} in {path}: it needs about {_mib(needed)} ({free}); nothing of "
        "it was kept. Free some space on that file system and run the command again",
        path=str(path),
        needed=needed,
    )


def write_new_dir(path: Path, needed: int, write: Callable[[Path], T], *, what: str = "") -> T:
    """Create the new folder ``path``, fill it with ``write(path)`` and fsync it.

    Refuses up front when the file system has less than ``needed`` bytes free; if the disk
    fills anyway (ENOSPC, a quota), or ``write`` fails in any other way, the folder is removed
    again. Disk-full errors become :class:`InsufficientSpaceError` naming the path and space.
    """
    label = what or f"the files of {path.name}"
    if _free(path.parent) < needed:
        raise space_error(path, needed, what=label)
    path.mkdir(parents=True)
    try:
        result = write(path)
        fsync_dir(path)
    except BaseException as e:
        shutil.rmtree(path, ignore_errors=True)
        if is_disk_full(e):
            raise space_error(path, needed, what=label) from e
        raise
    return result
