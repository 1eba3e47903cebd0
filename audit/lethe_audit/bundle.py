"""The auditor bundle's format (docs/formats.md): the one definition that the writer
(:meth:`lethe_audit.log.AuditLog.export_bundle`) and the readers (:mod:`lethe_audit.verify`,
whose :func:`~lethe_audit.verify.open_bundle` / :func:`~lethe_audit.verify.read_verified_bundle`
the report uses too) share. Neither side owns it: the writer does not import the verifier.

A bundle is a directory (or a ``.zip`` of one)::

    manifest.json       format, version, origin, size, root, latest checkpoint, file digests
    entries.jsonl       line i (0-based) = canonical DSSE envelope of entry i = Merkle leaf i
    checkpoints.jsonl   one {"size": N, "note": "<signed checkpoint>"} per line, sizes ascending
    keys.json           public keys the log used (informational: trust comes from the auditor)
    attachments/        optional extra files (figures, metric tables), listed with digests
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from lethe_audit.errors import BundleError

__all__ = [
    "ATTACHMENTS_DIR",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "CHECKPOINTS",
    "ENTRIES",
    "KEYS",
    "MANIFEST",
    "Attachment",
    "FileDigest",
    "Manifest",
    "safe_attachment_path",
]

BUNDLE_FORMAT = "lethe-audit-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
KEYS = "keys.json"
ATTACHMENTS_DIR = "attachments"
_SAFE_PATH = re.compile(r"attachments/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Attachment:
    path: str
    sha256: str
    bytes: int
    media_type: str = "application/octet-stream"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "media_type": self.media_type,
        }


def safe_attachment_path(path: str) -> bool:
    """``attachments/...`` with plain name segments (no ``.`` or ``..``, no absolute paths)."""
    return (
        isinstance(path, str)
        and bool(_SAFE_PATH.fullmatch(path))
        and not {".", ".."} & set(path.split("/"))
    )


def _size(value: Any) -> int:
    """A byte count: a JSON integer >= 0 (not a bool, a float or a string)."""
    if type(value) is not int or value < 0:
        raise TypeError(f"{value!r} is not a byte count")
    return value


def _check_paths(paths: list[str]) -> None:
    """No path twice, and no path that is also a directory of another."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise BundleError(f"{MANIFEST}: an attachment is listed twice")
    for p in paths:
        parts = p.split("/")
        for k in range(1, len(parts)):
            if "/".join(parts[:k]) in seen:
                raise BundleError(f"{MANIFEST}: {p!r} is listed under the file {parts[k - 1]!r}")


@dataclass(frozen=True)
class Manifest:
    origin: str
    size: int
    root: bytes
    checkpoint: str
    files: dict[str, FileDigest]
    attachments: tuple[Attachment, ...] = ()
    created_at: str = ""
    generator: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii"),
            "checkpoint": self.checkpoint,
            "files": {k: v.to_dict() for k, v in sorted(self.files.items())},
            "attachments": [a.to_dict() for a in self.attachments],
            "created_at": self.created_at,
            "generator": self.generator,
            **({"extra": self.extra} if self.extra else {}),
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, text: str) -> Manifest:
        def bad(why: str) -> BundleError:
            return BundleError(f"{MANIFEST}: {why}")

        if not isinstance(text, str):
            raise bad("not text")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise bad(f"not JSON ({type(e).__name__})") from None
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise bad(f"not a {BUNDLE_FORMAT} manifest")
        if doc.get("version") != BUNDLE_VERSION:
            raise bad(f"this version is not supported (this reads {BUNDLE_VERSION})")
        try:
            files = {}
            for name, d in doc["files"].items():
                if not _HEX64.fullmatch(d["sha256"]) or type(d["bytes"]) is not int:
                    raise bad(f"bad digest for {name}")
                files[name] = FileDigest(d["sha256"], _size(d["bytes"]))
            atts = []
            for a in doc.get("attachments", []):
                if not safe_attachment_path(a["path"]) or not _HEX64.fullmatch(a["sha256"]):
                    raise bad(f"bad attachment entry {str(a.get('path'))[:80]!r}")
                media = a.get("media_type", "application/octet-stream")
                if not isinstance(media, str):
                    raise TypeError("media_type must be a string")
                atts.append(Attachment(a["path"], a["sha256"], _size(a["bytes"]), media))
            _check_paths([a.path for a in atts])
            extra = doc.get("extra", {})
            if not isinstance(extra, dict):
                raise TypeError("extra must be an object")
            size = doc["size"]
            if type(size) is not int or size < 0:
                raise bad("size must be an integer >= 0")
            return cls(
                origin=str(doc["origin"]),
                size=size,
                root=base64.b64decode(doc["root"], validate=True),
                checkpoint=str(doc["checkpoint"]),
                files=files,
                attachments=tuple(atts),
                created_at=str(doc.get("created_at", "")),
                generator=str(doc.get("generator", "")),
                extra=dict(extra),
            )
        except (KeyError, TypeError, AttributeError, ValueError, binascii.Error) as e:
            raise bad(f"missing or malformed field ({e})") from None
