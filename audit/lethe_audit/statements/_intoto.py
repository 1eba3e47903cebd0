"""in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lethe_audit.errors import FormatError, StatementError
from lethe_audit.statements._canonical import canonical_json, loads_canonical
from lethe_audit.statements._dsse import INTOTO_PAYLOAD_TYPE, Envelope

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ALG = re.compile(r"[a-z0-9][a-z0-9_-]*")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Subject:
    """A statement subject: a ``name`` and a digest set that must contain ``sha256``."""

    name: str
    digest: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise StatementError("subject name must be a non-empty string", field="subject.name")
        if not isinstance(self.digest, Mapping) or "sha256" not in self.digest:
            raise StatementError("subject digest must contain sha256", field="subject.digest")
        for alg, value in self.digest.items():
            if not isinstance(alg, str) or not _ALG.fullmatch(alg):
                raise StatementError(f"bad digest algorithm {alg!r}", field="subject.digest")
            if not isinstance(value, str) or not _HEX.fullmatch(value):
                raise StatementError(
                    f"digest {alg} must be lowercase hex", field=f"subject.digest.{alg}"
                )
        if not _HEX64.fullmatch(self.digest["sha256"]):
            raise StatementError(
                "subject sha256 must be 64 lowercase hex digits", field="subject.digest.sha256"
            )

    @property
    def sha256(self) -> str:
        return self.digest["sha256"]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1. Build it, then :meth:`to_json` gives canonical bytes."""

    subject: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if not self.subject:
            raise StatementError("a statement needs at least one subject", field="subject")
        if not isinstance(self.predicate_type, str) or not self.predicate_type:
            raise StatementError("predicateType must be a non-empty string", field="predicateType")
        if not isinstance(self.predicate, Mapping):
            raise StatementError("predicate must be an object", field="predicate")

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in self.subject],
            "predicateType": self.predicate_type,
            "predicate": dict(self.predicate),
        }

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> Statement:
        """Read a statement object; checks the in-toto layer only (see ``validate_statement``)."""
        if not isinstance(obj, dict):
            raise StatementError("statement must be a JSON object")
        extra = set(obj) - {"_type", "subject", "predicateType", "predicate"}
        if extra:
            raise StatementError(f"unknown statement fields: {sorted(extra)}")
        if obj.get("_type") != STATEMENT_TYPE:
            raise StatementError(f"_type must be {STATEMENT_TYPE!r}", field="_type")
        subjects = obj.get("subject")
        if not isinstance(subjects, list):
            raise StatementError("subject must be a list", field="subject")
        parsed = []
        for i, s in enumerate(subjects):
            if not isinstance(s, dict) or set(s) != {"name", "digest"}:
                raise StatementError(
                    "each subject is an object with name and digest", field=f"subject[{i}]"
                )
            try:
                parsed.append(Subject(s["name"], s["digest"]))
            except StatementError as e:
                raise StatementError(str(e), field=f"subject[{i}]") from None
        return cls(tuple(parsed), obj.get("predicateType"), obj.get("predicate"))  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: bytes) -> Statement:
        """Parse canonical statement JSON (the DSSE payload)."""
        try:
            obj = loads_canonical(data, "statement")
        except FormatError as e:
            raise StatementError(str(e)) from None
        return cls.from_dict(obj)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Statement:
        """The statement an envelope carries (does not verify signatures)."""
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
            raise StatementError(
                f"payloadType is {envelope.payload_type!r}, expected {INTOTO_PAYLOAD_TYPE!r}",
                field="payloadType",
            )
        return cls.from_json(envelope.payload)
