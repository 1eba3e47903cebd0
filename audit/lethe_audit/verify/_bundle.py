"""Offline verification of an auditor bundle, end to end, in parallel across CPU cores."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from lethe_audit import errors, note
from lethe_audit.bundle import (
    CHECKPOINTS,
    ENTRIES,
    KEYS,
    MANIFEST,
    Manifest,
)
from lethe_audit.errors import (
    BundleError,
    CheckpointError,
    FormatError,
    VerificationError,
)
from lethe_audit.note import Verifier
from lethe_audit.statements import Envelope, Statement
from lethe_audit.tlog import Checkpoint, CompactRange, checkpoint_signers
from lethe_audit.verify._entry import VerifiedEntry, check_entry_signed
from lethe_audit.verify._policies import LogView, Policy
from lethe_audit.verify._snapshot import BundleSnapshot, open_bundle, read_manifest_text
from lethe_audit.verify._variants import Link, link, variant_faults
from lethe_audit.verify._windows import KeyEvent, KeyWindows, key_event

#: Below this many bytes of entries, worker processes cost more than they save.
PARALLEL_THRESHOLD = 4 << 20

# A fault found by a worker: (position in its chunk, error class name, message, size or None).
_Fault = tuple[int, str, str, "int | None"]


# --- workers (module level: they run in other processes) ------------------------------------


def _read_chunk(path: str, start: int, end: int) -> list[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n")
    # Chunks end right after a newline, so the last split piece is empty.
    return lines[:-1]


def _entries_chunk(
    path: str, start: int, end: int, vkeys: list[str]
) -> tuple[bytes, int, _Fault | None, list[tuple[int, int]], list[KeyEvent], list[Link]]:
    """Leaves, count, first fault; and for key windows: the signer masks run-length encoded
    as ``(position, mask)`` where the mask changes (bit k = ``vkeys[k]``), and the
    ``key.rotated`` events (positions in the chunk); and the attestations' cross-check
    records (:mod:`lethe_audit.verify._variants`)."""
    known = {v.key_hint: v for v in map(Verifier.from_vkey, vkeys)}
    bit = {h: 1 << k for k, h in enumerate(known)}
    sha = hashlib.sha256
    leaves = bytearray()
    fault: _Fault | None = None
    runs: list[tuple[int, int]] = []
    events: list[KeyEvent] = []
    links: list[Link] = []
    lines = _read_chunk(path, start, end)
    for k, line in enumerate(lines):
        leaves += sha(b"\x00" + line).digest()
        if fault is None:
            try:
                entry, signers = check_entry_signed(line, known)
            except VerificationError as e:
                fault = (k, type(e).__name__, str(e), None)
                continue
            mask = sum(bit[h] for h in signers)
            if not runs or runs[-1][1] != mask:
                runs.append((k, mask))
            event = key_event(k, entry.statement)
            if event is not None:
                events.append(event)
            record = link(k, entry.statement)
            if record is not None:
                links.append(record)
    return bytes(leaves), len(lines), fault, runs, events, links


def _checkpoints_chunk(
    path: str, start: int, end: int, vkeys: list[str], origin: str
) -> tuple[list[int], bytes, int, _Fault | None, list[int]]:
    """Sizes, roots, count, first fault, and each line's signer mask (0: not verified)."""
    verifiers = [Verifier.from_vkey(v) for v in vkeys]
    bit = {v.key_hint: 1 << k for k, v in enumerate(verifiers)}
    sizes: list[int] = []
    masks: list[int] = []
    roots = bytearray()
    fault: _Fault | None = None
    lines = _read_chunk(path, start, end)
    for k, line in enumerate(lines):
        size = None
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or set(obj) != {"note", "size"}:
                raise FormatError('a checkpoints.jsonl line is {"note": ..., "size": N}')
            note_text, size = obj["note"], obj["size"]
            if type(note_text) is not str or type(size) is not int:
                raise FormatError("checkpoint note must be a string and size an integer")
            cp = Checkpoint.parse(note.parse(note_text).text)
            if cp.size != size:
                raise FormatError(f"line says size {size} but its checkpoint says {cp.size}")
            sizes.append(cp.size)
            roots += cp.root
            masks.append(0)
            if fault is None:
                _cp, signers = checkpoint_signers(note_text, verifiers, origin=origin)
                masks[-1] = sum(bit[v.key_hint] for v in signers)
        except (VerificationError, FormatError, ValueError) as e:
            if fault is None:
                fault = (k, type(e).__name__, str(e), size)
            if len(sizes) == k:  # unreadable line: keep positions aligned
                sizes.append(-1)
                masks.append(0)
                roots += bytes(32)
    return sizes, bytes(roots), len(lines), fault, masks


# --- helpers --------------------------------------------------------------------------------


def _split(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges of ``path`` that each hold whole lines."""
    total = path.stat().st_size
    if total == 0:
        return []
    with path.open("rb") as f:
        f.seek(total - 1)
        if f.read(1) != b"\n":
            raise BundleError(f"{path.name} does not end with a newline (truncated?)")
        bounds = [0]
        for k in range(1, parts):
            pos = max(bounds[-1], total * k // parts)
            if pos >= total:
                break
            f.seek(pos)
            f.readline()
            pos = f.tell()
            if pos >= total:
                break
            if pos > bounds[-1]:
                bounds.append(pos)
    bounds.append(total)
    return list(itertools.pairwise(bounds))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _error(
    kind: str, message: str, *, index: int | None = None, size: int | None = None
) -> VerificationError:
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, VerificationError)) or kind in (
        "ConsistencyProofError",
        "PolicyError",
    ):
        cls = VerificationError
    return cls(message, index=index, size=size)


class _Runner:
    """Runs chunk jobs in worker processes (or inline for small bundles)."""

    def __init__(self, workers: int) -> None:
        self._pool = (
            ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            if workers > 1
            else None
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        f: Future[Any] = Future()
        f.set_result(fn(*args))
        return f

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


# --- the verifier ---------------------------------------------------------------------------


def verify_bundle(
    path: str | Path | BundleSnapshot,
    verifiers: Verifier | Sequence[Verifier],
    *,
    origin: str | None = None,
    policies: Sequence[Policy] = (),
    workers: int | None = None,
    progress: bool = False,
) -> None:
    """Verify an auditor bundle end to end with the log's public key(s).

    Checks the manifest and file digests; every checkpoint's signature (by a trusted key),
    origin and order; every entry (canonical DSSE envelope, signature by a trusted key,
    well-formed statement); the Merkle root recomputed from all entries at *every* checkpoint
    size (which makes every pair of checkpoints consistent: each is a prefix of the next);
    the attachments' digests; then each policy. Returns None or raises the
    :class:`~lethe_audit.errors.VerificationError` subclass of the earliest fault, naming the
    entry index and/or checkpoint size.

    ``path`` is a directory, a ``.zip`` or a :class:`BundleSnapshot` from :func:`open_bundle`
    (verify and then display the same bytes); a path is snapshotted once (regular files only,
    bounded; see docs/formats.md).

    ``workers``: processes for signature checks (default: all cores for large bundles).
    """
    windows = _windows(verifiers)
    if isinstance(path, BundleSnapshot):
        _verify_dir(path, windows, origin, policies, workers, progress)
        return
    with open_bundle(path) as snap:
        _verify_dir(snap, windows, origin, policies, workers, progress)


def _windows(verifiers: Verifier | Sequence[Verifier]) -> KeyWindows:
    windows = KeyWindows(verifiers)
    if not windows.known:
        raise VerificationError("no trusted keys given: pass the log's vkey")
    return windows


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """One checkpoint of a verified bundle: its signed note and what the note says."""

    note: str
    checkpoint: Checkpoint


@dataclass(frozen=True)
class VerifiedBundle:
    """What :func:`read_verified_bundle` verified, for readers that display it (the report):
    the manifest, every entry's leaf hash, every checkpoint (all signed by a trusted key), and
    the entries parsed on demand from the same private copy (not checked a second time).

    Valid while the :class:`BundleSnapshot` it came from is open."""

    snapshot: BundleSnapshot
    manifest: Manifest
    leaves: bytes = field(repr=False)
    last: Checkpoint

    @cached_property
    def checkpoints(self) -> tuple[VerifiedCheckpoint, ...]:
        """Every checkpoint in file order (read when first asked for)."""
        path = self.snapshot.root / CHECKPOINTS
        return tuple(VerifiedCheckpoint(text, cp) for text, cp in _checkpoint_notes(path))

    @property
    def size(self) -> int:
        return len(self.leaves) // 32

    def leaf(self, index: int) -> bytes:
        return self.leaves[32 * index : 32 * index + 32]

    def entries(self) -> Iterator[VerifiedEntry]:
        """Every entry, in order, parsed from the verified copy."""
        with (self.snapshot.root / ENTRIES).open("rb") as f:
            for index, raw in enumerate(f):
                envelope = Envelope.from_json(raw.rstrip(b"\n"))
                yield VerifiedEntry(index, envelope, Statement.from_envelope(envelope))


def read_verified_bundle(
    snapshot: BundleSnapshot,
    verifiers: Verifier | Sequence[Verifier],
    *,
    origin: str | None = None,
    policies: Sequence[Policy] = (),
    workers: int | None = None,
    progress: bool = False,
) -> VerifiedBundle:
    """Verify ``snapshot`` exactly as :func:`verify_bundle` does and return what was verified
    (raises the same errors). One read serves both the verdict and its display: the report
    shows these leaves, checkpoints and entries instead of parsing the bundle again."""
    return _verify_dir(snapshot, _windows(verifiers), origin, policies, workers, progress)


_Faults = list[tuple[int, int, VerificationError]]


def _verify_dir(
    snap: BundleSnapshot,
    windows: KeyWindows,
    origin: str | None,
    policies: Sequence[Policy],
    workers: int | None,
    progress: bool,
) -> VerifiedBundle:
    manifest = _check_layout(snap, origin)
    e_results, c_results = _run_chunks(snap, windows.vkeys, manifest.origin, workers, progress)
    _check_digests(snap, manifest)
    faults: _Faults = []
    leaves, n_entries = _entry_faults(e_results, faults)
    sizes, roots = _checkpoint_faults(c_results, faults)
    _tree_faults(leaves, n_entries, sizes, roots, faults)
    faults += _window_faults(windows, e_results, c_results)
    if faults:
        faults.sort(key=lambda f: (f[0], f[1]))
        raise faults[0][2]
    last = _check_last(snap.root / CHECKPOINTS, manifest, n_entries)
    verified = VerifiedBundle(snap, manifest, bytes(leaves), last)
    if policies:
        view = _log_view(verified)
        for p in policies:
            p.verify(view)
    return verified


def _check_layout(snap: BundleSnapshot, origin: str | None) -> Manifest:
    """The snapshot is a bundle with its three log files, of the expected origin."""
    if snap.problem is not None:
        raise snap.problem
    manifest = snap.manifest
    if manifest is None:
        raise BundleError(f"{snap.source} has no {MANIFEST}: not a bundle")
    for name in (ENTRIES, CHECKPOINTS, KEYS):
        if name not in manifest.files or not (snap.root / name).is_file():
            raise BundleError(f"the bundle lacks {name}")
    if origin is not None and manifest.origin != origin:
        raise CheckpointError(f"the bundle is for log {manifest.origin!r}, expected {origin!r}")
    return manifest


def _run_chunks(
    snap: BundleSnapshot,
    vkeys: list[str],
    want_origin: str,
    workers: int | None,
    progress: bool,
) -> tuple[list[Any], list[Any]]:
    """Check entries and checkpoints chunk by chunk (in worker processes for big bundles)."""
    from tqdm import tqdm

    entries_path, cps_path = snap.root / ENTRIES, snap.root / CHECKPOINTS
    if workers is None:
        big = entries_path.stat().st_size + cps_path.stat().st_size > PARALLEL_THRESHOLD
        workers = _usable_cpus() if big else 1
    workers = max(1, workers)
    e_chunks = _split(entries_path, workers * 4 if workers > 1 else 1)
    c_chunks = _split(cps_path, workers * 2 if workers > 1 else 1)
    runner = _Runner(workers)
    try:
        futures = [
            runner.submit(_entries_chunk, str(entries_path), a, b, vkeys) for a, b in e_chunks
        ]
        futures += [
            runner.submit(_checkpoints_chunk, str(cps_path), a, b, vkeys, want_origin)
            for a, b in c_chunks
        ]
        results = []
        disable = None if progress else True
        with tqdm(total=len(futures), disable=disable, desc="verify", unit="chunk") as bar:
            for f in futures:
                results.append(f.result())
                bar.update(1)
    finally:
        runner.close()
    return results[: len(e_chunks)], results[len(e_chunks) :]


def _check_digests(snap: BundleSnapshot, manifest: Manifest) -> None:
    """Every listed file has the manifest's digest and length (hashed while copying)."""
    names = [ENTRIES, CHECKPOINTS, KEYS, *(a.path for a in manifest.attachments)]
    for name in names:
        want = (
            manifest.files[name]
            if name in manifest.files
            else next(a for a in manifest.attachments if a.path == name)
        )
        got_hex, got_n = snap.digests.get(name, ("missing", -1))
        if got_n < 0:
            raise BundleError(f"the bundle lacks {name}")
        if (got_hex, got_n) != (want.sha256, want.bytes):
            raise BundleError(
                f"{name} does not match the manifest's digest (corrupted or edited file)"
            )


def _entry_faults(e_results: list[Any], faults: _Faults) -> tuple[bytearray, int]:
    """The leaves of all entries, in order; each chunk's first fault at its absolute index;
    variants whose source is not their apply."""
    leaves = bytearray()
    n_entries = 0
    links: list[tuple[int, Link]] = []
    for chunk_leaves, count, fault, _runs, _events, chunk_links in e_results:
        if fault is not None:
            i = n_entries + fault[0]
            faults.append((i, 0, _error(fault[1], f"entry {i}: {fault[2]}", index=i)))
        links += [(n_entries + rec[0], rec) for rec in chunk_links]
        leaves += chunk_leaves
        n_entries += count
    faults += variant_faults(links)
    return leaves, n_entries


def _checkpoint_faults(c_results: list[Any], faults: _Faults) -> tuple[list[int], bytearray]:
    """Checkpoint sizes and roots in file order (-1: unreadable); signature, origin and order
    faults."""
    sizes: list[int] = []
    roots = bytearray()
    line = 0
    for chunk_sizes, chunk_roots, count, fault, _masks in c_results:
        if fault is not None:
            k, kind, msg, size = fault
            prev = next((s for s in reversed(sizes + chunk_sizes[:k]) if s >= 0), 0)
            pos = size - 1 if size is not None and size > 0 else prev
            where = (
                f"checkpoint at size {size}"
                if size is not None
                else f"checkpoint line {line + k + 1}"
            )
            faults.append((pos, 1, _error(kind, f"{where}: {msg}", size=size)))
        sizes += chunk_sizes
        roots += chunk_roots
        line += count
    if not sizes:
        raise BundleError("the bundle has no checkpoints")
    prev_size = -1
    for s in sizes:
        if s < 0:
            continue
        if s <= prev_size:
            err = CheckpointError(
                f"checkpoint at size {s} comes after size {prev_size}: sizes must grow", size=s
            )
            faults.append((max(s - 1, 0), 1, err))
        prev_size = max(prev_size, s)
    return sizes, roots


def _tree_faults(
    leaves: bytearray, n_entries: int, sizes: list[int], roots: bytearray, faults: _Faults
) -> None:
    """Recompute the Merkle root at every checkpoint size, in one pass over the leaves."""
    order = sorted((s, k) for k, s in enumerate(sizes) if s >= 0)
    compact = CompactRange()
    matched = 0
    pos = 0
    while pos < len(order) and order[pos][0] == 0:
        _compare(compact, order[pos][1], roots, 0, faults)
        pos += 1
    for i in range(n_entries):
        compact.append(bytes(leaves[32 * i : 32 * i + 32]))
        while pos < len(order) and order[pos][0] == i + 1:
            if _compare(compact, order[pos][1], roots, matched, faults):
                matched = i + 1
            pos += 1
    for s, _k in order[pos:]:
        err = CheckpointError(
            f"checkpoint at size {s} covers more entries than the bundle's {n_entries}: "
            f"entries from {n_entries} on were removed",
            size=s,
            index=n_entries,
        )
        faults.append((n_entries, 2, err))


def _check_last(cps_path: Path, manifest: Manifest, n_entries: int) -> Checkpoint:
    """The manifest must describe the last checkpoint, and it must cover every entry."""
    last_line = _last_line(cps_path)
    try:
        last_note = json.loads(last_line)["note"]
    except (ValueError, KeyError, TypeError):
        raise BundleError("the last line of checkpoints.jsonl is unreadable") from None
    last = Checkpoint.parse(note.parse(last_note).text)
    if last_note != manifest.checkpoint or (manifest.size, manifest.root) != (last.size, last.root):
        raise BundleError("the manifest does not describe the bundle's last checkpoint")
    if n_entries != last.size:
        raise BundleError(
            f"the bundle has {n_entries} entries but its last checkpoint covers {last.size}: "
            "entries beyond a signed checkpoint prove nothing"
        )
    return last


def _log_view(verified: VerifiedBundle) -> LogView:
    """The verified log as policies see it (entries parsed again on demand, not re-checked)."""
    leaf_bytes = verified.leaves
    n_entries = verified.size

    def root_at(size: int) -> bytes:
        from lethe_audit.tlog import root as tree_root

        if not 0 <= size <= n_entries:
            raise ValueError(f"size {size} is outside the log")
        return tree_root([leaf_bytes[32 * i : 32 * i + 32] for i in range(size)])

    return LogView(
        origin=verified.manifest.origin,
        size=verified.last.size,
        root=verified.last.root,
        checkpoints=[c.checkpoint for c in verified.checkpoints],
        entries=verified.entries,
        root_at=root_at,
        complete=True,
    )


def _window_faults(
    windows: KeyWindows, e_results: list[Any], c_results: list[Any]
) -> list[tuple[int, int, VerificationError]]:
    """Entries and checkpoints signed only by keys outside their validity window (windows
    narrowed by the log's own ``key.rotated`` events first)."""
    events: list[KeyEvent] = []
    runs: list[tuple[int, int, int]] = []  # (first index, end index, mask)
    base = 0
    for _leaves, count, _fault, chunk_runs, chunk_events, _links in e_results:
        events += [(base + k, action, vkey) for k, action, vkey in chunk_events]
        bounds = [k for k, _m in chunk_runs[1:]] + ([count] if chunk_runs else [])
        runs += [(base + k, base + e, m) for (k, m), e in zip(chunk_runs, bounds, strict=True)]
        base += count
    windows.apply_events(events)
    out: list[tuple[int, int, VerificationError]] = []
    for first, end, mask in runs:
        bad = windows.first_uncovered(mask, first + 1, end)
        if bad is not None:
            i = bad - 1
            out.append((i, 0, windows.error(f"entry {i}", bad, mask, index=i)))
    for chunk_sizes, _roots, _count, _fault, masks in c_results:
        for size, mask in zip(chunk_sizes, masks, strict=True):
            if size >= 0 and mask and windows.first_uncovered(mask, size, size) is not None:
                err = windows.error(f"checkpoint at size {size}", size, mask)
                out.append((max(size - 1, 0), 1, err))
    return out


def _compare(
    compact: CompactRange,
    k: int,
    roots: bytearray,
    matched: int,
    faults: _Faults,
) -> bool:
    size = compact.size
    want = bytes(roots[32 * k : 32 * k + 32])
    if compact.root() == want:
        return True
    if size == matched + 1:
        what = f"entry {matched} was changed, removed, inserted or moved"
        index: int | None = matched
    else:
        what = f"an entry in [{matched}, {size}) was changed, removed, inserted or moved"
        index = None
    # Ranked at the range's last entry: an entry fault inside the range explains it better.
    faults.append(
        (
            size - 1,
            2,
            CheckpointError(
                f"the entries do not give the root signed in the checkpoint at size {size}: {what}",
                size=size,
                index=index,
            ),
        )
    )
    return False


def _last_line(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos = max(0, end - 65536)
        while True:
            f.seek(pos)
            data = f.read(end - pos)
            body = data.rstrip(b"\n")
            cut = body.rfind(b"\n")
            if cut >= 0 or pos == 0:
                return body[cut + 1 :]
            pos = max(0, pos - 65536)


def _checkpoint_notes(path: Path) -> list[tuple[str, Checkpoint]]:
    """Each line's signed note and checkpoint (of a bundle that verified)."""
    out = []
    with path.open("rb") as f:
        for raw in f:
            text = json.loads(raw)["note"]
            out.append((text, Checkpoint.parse(note.parse(text).text)))
    return out


def read_manifest(path: str | Path) -> Manifest:
    """The manifest of a bundle directory or ``.zip`` (unverified: for display). Read under the
    snapshot's rules: a regular file of bounded size."""
    return Manifest.parse(read_manifest_text(path))
