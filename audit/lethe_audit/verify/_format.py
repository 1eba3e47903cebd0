"""The auditor bundle layout (docs/formats.md), shared by the exporter and the verifier.

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
    """``attachments/...`` with plain name segments (no ``..``, no absolute paths)."""
    return bool(_SAFE_PATH.fullmatch(path)) and ".." not in path.split("/")


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

        try:
            doc = json.loads(text)
        except ValueError as e:
            raise bad(f"not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise bad(f"not a {BUNDLE_FORMAT} manifest")
        if doc.get("version") != BUNDLE_VERSION:
            raise bad(
                f"version {doc.get('version')!r} is not supported (this reads {BUNDLE_VERSION})"
            )
        try:
            files = {}
            for name, d in doc["files"].items():
                if not _HEX64.fullmatch(d["sha256"]) or type(d["bytes"]) is not int:
                    raise bad(f"bad digest for {name}")
                files[name] = FileDigest(d["sha256"], d["bytes"])
            atts = []
            for a in doc.get("attachments", []):
                if not safe_attachment_path(a["path"]) or not _HEX64.fullmatch(a["sha256"]):
                    raise bad(f"bad attachment entry {a.get('path')!r}")
                atts.append(
                    Attachment(
                        a["path"],
                        a["sha256"],
                        int(a["bytes"]),
                        a.get("media_type", "application/octet-stream"),
                    )
                )
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
                extra=dict(doc.get("extra", {})),
            )
        except (KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise bad(f"missing or malformed field ({e})") from None
