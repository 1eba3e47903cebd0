"""Reading an auditor bundle for a report: verification first, then every entry for display.

The verdict comes from :func:`lethe_audit.verify.verify_bundle` alone. This module only adds
what a report needs on top: the parsed entries, the signed checkpoints, the attachments with
their actual digests, inclusion proofs per entry, and, when verification failed without
naming an entry (a file that no longer matches the manifest), a second verification run that
ignores the manifest's digests to locate the entry or checkpoint at fault.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lethe_audit import note
from lethe_audit.bundle import (
    CHECKPOINTS,
    ENTRIES,
    KEYS,
    MANIFEST,
    FileDigest,
)
from lethe_audit.errors import LetheAuditError, VerificationError
from lethe_audit.note import Verifier
from lethe_audit.statements import (
    Envelope,
    LifecycleEvent,
    Statement,
    UnlearningAttestation,
    VariantAttestation,
    parse_predicate,
)
from lethe_audit.tlog import (
    Checkpoint,
    MemoryTree,
    inclusion_proof,
    leaf_hash,
    verify_checkpoint,
    verify_inclusion,
)
from lethe_audit.verify import (
    BundleSnapshot,
    Manifest,
    VerifiedBundle,
    check_entry,
    known_keys,
    read_verified_bundle,
    verify_bundle,
)

#: Attachments larger than this are listed but never embedded in a report.
MAX_EMBEDDED_BYTES = 8 << 20


@dataclass
class Entry:
    """One log entry as the report sees it."""

    index: int
    leaf: bytes
    predicate: UnlearningAttestation | LifecycleEvent | VariantAttestation | None = None
    predicate_type: str | None = None
    problem: str | None = None  # why it cannot be read or trusted (None = fine)


@dataclass
class SignedCheckpoint:
    size: int
    root: bytes
    note: str
    trusted: bool


@dataclass
class AttachmentFile:
    path: str
    sha256: str | None  # actual digest, None when the file is missing
    size: int
    media_type: str
    listed_sha256: str | None  # the manifest's digest
    data: bytes | None = field(default=None, repr=False)


@dataclass
class BundleContents:
    """Everything a report shows about a bundle (nothing here is trusted by itself)."""

    manifest: Manifest | None
    manifest_problem: str | None
    entries: list[Entry]
    checkpoints: list[SignedCheckpoint]
    checkpoint_problems: list[str]
    keys: list[dict[str, Any]]
    attachments: list[AttachmentFile]

    @property
    def latest(self) -> SignedCheckpoint | None:
        """The last checkpoint signed by a trusted key that the entries can reach."""
        for cp in reversed(self.checkpoints):
            if cp.trusted and cp.size <= len(self.entries):
                return cp
        return None


@dataclass(frozen=True)
class Inclusion:
    """An inclusion proof of one entry, checked against a signed checkpoint's root."""

    verified: bool
    size: int | None
    root: bytes | None
    proof: tuple[bytes, ...]
    message: str


def as_verifiers(verifiers: Sequence[str | Verifier] | str | Verifier) -> list[Verifier]:
    items: Sequence[str | Verifier] = (
        [verifiers] if isinstance(verifiers, (str, Verifier)) else verifiers
    )
    return [v if isinstance(v, Verifier) else Verifier.from_vkey(v) for v in items]


@dataclass(frozen=True)
class Verification:
    """What verification said: the bundle as verified (``None`` when it failed), the
    verifier's error, and the located fault when that error names no place."""

    verified: VerifiedBundle | None
    error: VerificationError | None
    located: VerificationError | None


def verify(
    snap: BundleSnapshot,
    verifiers: list[Verifier],
    *,
    origin: str | None,
    workers: int | None,
    progress: bool,
) -> Verification:
    """Verify the snapshot once (:func:`lethe_audit.verify.read_verified_bundle`)."""
    try:
        verified = read_verified_bundle(
            snap, verifiers, origin=origin, workers=workers, progress=progress
        )
    except VerificationError as e:
        located = None
        if e.index is None and e.size is None:
            located = _locate(snap.root, verifiers, origin=origin, workers=workers)
        return Verification(None, e, located)
    return Verification(verified, None, None)


def contents(verdict: Verification, root: Path, verifiers: list[Verifier]) -> BundleContents:
    """The bundle for display: what the verifier read when it passed (no second parse of the
    checkpoints, no second hashing of the entries), else a tolerant reading that checks each
    entry on its own."""
    v = verdict.verified
    if v is None:
        return read(root, verifiers, check_entries=True)
    entries = []
    for ve in v.entries():
        e = Entry(ve.index, v.leaf(ve.index), predicate_type=ve.statement.predicate_type)
        try:
            e.predicate = parse_predicate(ve.statement)
        except LetheAuditError as exc:
            e.problem = str(exc)
        entries.append(e)
    checkpoints = [
        SignedCheckpoint(c.checkpoint.size, c.checkpoint.root, c.note, True) for c in v.checkpoints
    ]
    return BundleContents(
        v.manifest, None, entries, checkpoints, [], _keys(root), _attachments(root, v.manifest)
    )


def _locate(
    root: Path, verifiers: list[Verifier], *, origin: str | None, workers: int | None
) -> VerificationError | None:
    """Verify again with a manifest rebuilt from the files as they are.

    The manifest is not signed: its digests only catch accidental damage. Trust comes from the
    signatures and the roots, so a rerun without them says which entry or checkpoint was edited.
    """
    cps = root / CHECKPOINTS
    if not (root / ENTRIES).is_file() or not cps.is_file():
        return None
    try:
        lines = [ln for ln in cps.read_bytes().split(b"\n") if ln.strip()]
        last_note = json.loads(lines[-1])["note"]
        last = Checkpoint.parse(note.parse(last_note).text)
    except (ValueError, KeyError, TypeError, IndexError, LetheAuditError):
        return None
    tmp = Path(tempfile.mkdtemp(prefix="lethe-report-"))
    try:
        files = {}
        for name in (ENTRIES, CHECKPOINTS, KEYS):
            src = root / name
            if not src.is_file():
                if name != KEYS:
                    return None
                src.parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text('{"keys": []}\n', encoding="utf-8")
            else:
                shutil.copyfile(src, tmp / name)
            data = (tmp / name).read_bytes()
            files[name] = FileDigest(hashlib.sha256(data).hexdigest(), len(data))
        manifest = Manifest(
            origin=last.origin,
            size=last.size,
            root=last.root,
            checkpoint=last_note,
            files=files,
        )
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        try:
            verify_bundle(tmp, verifiers, origin=origin, workers=workers)
        except VerificationError as e:
            return e if (e.index is not None or e.size is not None) else None
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read(root: Path, verifiers: list[Verifier], *, check_entries: bool) -> BundleContents:
    """Read a bundle directory for display. ``check_entries``: verify each entry's signature
    (needed only when the bundle as a whole did not verify)."""
    manifest: Manifest | None = None
    manifest_problem = None
    try:
        manifest = Manifest.parse((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        manifest_problem = f"the bundle has no readable {MANIFEST}"
    except LetheAuditError as e:
        manifest_problem = str(e)

    known = known_keys(verifiers)
    entries: list[Entry] = []
    path = root / ENTRIES
    if path.is_file():
        with path.open("rb") as f:
            for index, raw in enumerate(f):
                line = raw.rstrip(b"\n")
                entries.append(_entry(index, line, known, check=check_entries))

    checkpoints: list[SignedCheckpoint] = []
    cp_problems: list[str] = []
    cps = root / CHECKPOINTS
    want_origin = manifest.origin if manifest is not None else None
    if cps.is_file():
        with cps.open("rb") as f:
            for k, raw in enumerate(f):
                try:
                    note_text = json.loads(raw)["note"]
                    cp = Checkpoint.parse(note.parse(note_text).text)
                except (ValueError, KeyError, TypeError, LetheAuditError) as e:
                    cp_problems.append(f"checkpoint line {k + 1} is unreadable: {e}")
                    continue
                try:
                    verify_checkpoint(note_text, verifiers, origin=want_origin or cp.origin)
                    trusted = True
                except LetheAuditError as e:
                    trusted = False
                    cp_problems.append(str(e))
                checkpoints.append(SignedCheckpoint(cp.size, cp.root, note_text, trusted))

    attachments = _attachments(root, manifest) if manifest is not None else []
    return BundleContents(
        manifest, manifest_problem, entries, checkpoints, cp_problems, _keys(root), attachments
    )


def _keys(root: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads((root / KEYS).read_text(encoding="utf-8"))
        return [_key_row(k) for k in doc.get("keys", []) if isinstance(k, dict)]
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def _attachments(root: Path, manifest: Manifest) -> list[AttachmentFile]:
    """The manifest's attachments with their actual digests (and bytes, when small)."""
    out = []
    for a in manifest.attachments:
        p = root / a.path
        data: bytes | None = None
        if p.is_file():
            data = p.read_bytes()
            digest: str | None = hashlib.sha256(data).hexdigest()
            size = len(data)
            if size > MAX_EMBEDDED_BYTES:
                data = None
        else:
            digest, size = None, 0
        out.append(AttachmentFile(a.path, digest, size, a.media_type, a.sha256, data=data))
    return out


def _plain(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, (str, bool))
        or (type(value) is int and abs(value) < 1 << 63)
    )


def _key_row(k: dict[str, Any]) -> dict[str, Any]:
    """One keys.json row for display: keys.json is unsigned, so keep only plain values (a list
    or an object where a vkey belongs is shown as missing)."""
    return {str(name): value if _plain(value) else None for name, value in k.items()}


def _entry(index: int, line: bytes, known: dict[str, Verifier], *, check: bool) -> Entry:
    e = Entry(index, leaf_hash(line))
    try:
        if check:
            st = check_entry(line, known).statement
        else:
            st = Statement.from_envelope(Envelope.from_json(line))
        e.predicate_type = st.predicate_type
        e.predicate = parse_predicate(st)
    except LetheAuditError as exc:
        e.problem = str(exc)
    return e


def inclusions(contents: BundleContents, indices: Sequence[int]) -> dict[int, Inclusion]:
    """Prove each entry into the latest trusted checkpoint, from the bundle's own leaves."""
    cp = contents.latest
    out: dict[int, Inclusion] = {}
    if cp is None:
        for i in indices:
            out[i] = Inclusion(False, None, None, (), "no checkpoint signed by a trusted key")
        return out
    leaves = [e.leaf for e in contents.entries[: cp.size]]
    tree = MemoryTree(leaves) if leaves else None
    for i in indices:
        if tree is None or i >= cp.size:
            out[i] = Inclusion(
                False,
                cp.size,
                cp.root,
                (),
                f"entry {i} is beyond the latest trusted checkpoint (size {cp.size})",
            )
            continue
        proof = tuple(inclusion_proof(i, cp.size, tree))
        try:
            verify_inclusion(leaves[i], i, cp.size, proof, cp.root)
        except VerificationError as exc:
            out[i] = Inclusion(False, cp.size, cp.root, proof, str(exc))
            continue
        out[i] = Inclusion(
            True,
            cp.size,
            cp.root,
            proof,
            f"entry {i} is included in the signed checkpoint at size {cp.size}",
        )
    return out


__all__ = [
    "AttachmentFile",
    "BundleContents",
    "Entry",
    "Inclusion",
    "SignedCheckpoint",
    "Verification",
    "as_verifiers",
    "contents",
    "inclusions",
    "read",
    "verify",
]
