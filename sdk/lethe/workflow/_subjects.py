"""The subject mapping: which classes of a model hold a data subject's data, without storing
who the subject is.

At training time the app registers ``identity -> classes`` for a model
(:meth:`SubjectMap.register`). Only a *keyed commitment* of the normalised identity is stored:
``HMAC-SHA256(mapping key, "lethe-subject-map/v1" NUL type NUL value)``, hex. The mapping key is
32 random bytes in ``<key dir>/subject-map.key`` (mode 0600, beside the log's signing keys,
never in the database), so a copy of the database alone cannot test guesses of e-mail
addresses against the commitments. When an erasure arrives with an identity (the Fides webhook),
:meth:`SubjectMap.lookup` finds the classes to delete per model.

The same key file also yields (by HMAC with another label) the key that encrypts secrets the
service must keep, such as Fides' reply-to tokens (:meth:`SubjectMap.seal` / :meth:`open`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from lethe._io import create_once
from lethe.errors import ConfigError, RequestError
from lethe.workflow._requests import normalize_subject, resolve_classes
from lethe.workflow._store import ProjectStore
from lethe.workflow._time import now as utcnow
from lethe_audit.store import SubjectMapRow

__all__ = ["KEY_FILE", "SubjectMap", "SubjectMapping", "normalize_identity"]

KEY_FILE = "subject-map.key"
_LABEL = b"lethe-subject-map/v1"
_SEAL_LABEL = b"lethe-service-seal/v1"
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
#: Unicode categories never part of a mapped identity (format, control, private, unassigned).
_INVISIBLE = frozenset({"Cf", "Cc", "Co", "Cn", "Cs"})
_PHONE_SEPARATORS = re.compile(r"[\s().-]")
_PHONE = re.compile(r"\+?[0-9]{4,20}")


def normalize_identity(identity_type: str, value: Any) -> str:
    """The committed form of an identity: ``email`` trimmed, NFC and lower-cased;
    ``phone_number`` without spaces, dots, dashes and brackets (E.164 as Fides sends it,
    ``+15555550100``); any other type (Fides' ``external_id``, custom identities) trimmed NFC."""
    if not isinstance(identity_type, str) or not _TYPE.fullmatch(identity_type):
        raise RequestError(
            f"identity type {identity_type!r} is invalid: use a Fides identity name such as "
            "email, phone_number or external_id (letters, digits, '_')"
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RequestError(f"the {identity_type} identity must be a string")
    text = normalize_subject(str(value))
    if any(unicodedata.category(ch) in _INVISIBLE for ch in text):
        # A zero-width or control character would give another commitment than the one the
        # app mapped, so the webhook would answer "unmapped" and the deletion silently not
        # happen: refuse it, so Fides shows the privacy request as errored instead.
        raise RequestError(
            f"the {identity_type} identity contains invisible or control characters "
            "(zero-width, bidi or C0/C1 controls): send the identity as the app mapped it"
        )
    if identity_type == "email":
        text = unicodedata.normalize("NFC", text.lower())
        if "@" not in text:
            raise RequestError("the email identity has no '@': pass the e-mail address")
    elif identity_type == "phone_number":
        text = _PHONE_SEPARATORS.sub("", text)
        if not _PHONE.fullmatch(text):
            raise RequestError(
                "the phone_number identity must be digits with an optional leading '+' "
                "(E.164, e.g. +15555550100)"
            )
    return text


@dataclass(frozen=True)
class SubjectMapping:
    """One registered mapping (never the identity itself)."""

    commitment: str
    identity_type: str
    model: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "commitment": self.commitment,
            "identity_type": self.identity_type,
            "model": self.model,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "created": self.created,
        }


class SubjectMap:
    """Registers and looks up ``commitment -> classes`` for the models of one project."""

    def __init__(self, store: ProjectStore, key_dir: Path) -> None:
        self._store = store
        self._key_path = Path(key_dir) / KEY_FILE
        self._key: bytes | None = None

    # -- keys -------------------------------------------------------------------------------

    def _mapping_key(self) -> bytes:
        if self._key is None:
            self._key = _load_or_create_key(self._key_path)
        return self._key

    def commitment(self, identity_type: str, value: Any) -> str:
        norm = normalize_identity(identity_type, value)
        msg = b"\x00".join((_LABEL, identity_type.encode(), norm.encode("utf-8")))
        return hmac.new(self._mapping_key(), msg, hashlib.sha256).hexdigest()

    def seal_key(self) -> bytes:
        """A 256-bit key for encrypting the service's stored secrets (derived, not stored)."""
        return hmac.new(self._mapping_key(), _SEAL_LABEL, hashlib.sha256).digest()

    def seal(self, secret: str) -> bytes:
        """``secret`` encrypted (AES-256-GCM, random 96-bit nonce): nonce + ciphertext."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.seal_key()).encrypt(nonce, secret.encode("utf-8"), _SEAL_LABEL)

    def open(self, sealed: bytes) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data = bytes(sealed)
        return AESGCM(self.seal_key()).decrypt(data[:12], data[12:], _SEAL_LABEL).decode("utf-8")

    # -- mappings ---------------------------------------------------------------------------

    def register(
        self,
        *,
        identity_type: str,
        value: Any,
        classes: Iterable[int | str],
        model: str | None = None,
        replace: bool = False,
        registered_by: str | None = None,
    ) -> SubjectMapping:
        """Map the subject to ``classes`` of ``model`` (added to what was mapped before, or
        instead of it with ``replace``). Idempotent: the same call twice maps the same."""
        commitment = self.commitment(identity_type, value)
        wanted = [classes] if isinstance(classes, str | int) else list(classes)
        if not wanted:
            raise RequestError("classes is empty: name the classes that hold the subject's data")
        with self._store.write() as s:
            mrow = self._store.model_row(s, model)
            ids = resolve_classes(mrow, wanted)
            names: list[str] = json.loads(mrow.class_names)
            row = s.get(SubjectMapRow, (commitment, mrow.name))
            now = utcnow()
            created = row is None
            if row is None:
                row = SubjectMapRow(
                    commitment=commitment,
                    model_name=mrow.name,
                    classes="[]",
                    registered_by=registered_by,
                    registered_at=now,
                    updated_at=now,
                )
                s.add(row)
            old = () if replace else tuple(json.loads(row.classes))
            merged = tuple(sorted(set(old) | set(ids)))
            if json.dumps(list(merged)) != row.classes:
                row.classes = json.dumps(list(merged))
                row.updated_at = now
            return SubjectMapping(
                commitment,
                identity_type,
                mrow.name,
                merged,
                tuple(names[i] for i in merged),
                created,
            )

    def owner(self, identity_type: str, value: Any, model: str | None = None) -> str | None:
        """Who registered the subject's mapping for ``model`` (None: not mapped, or unknown)."""
        commitment = self.commitment(identity_type, value)
        with self._store.read() as s:
            row = s.get(SubjectMapRow, (commitment, self._store.model_row(s, model).name))
            return row.registered_by if row is not None else None

    def lookup(self, identities: Mapping[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``model -> (identity type that matched, class ids)`` for every identity given that
        was registered (the classes of all matching identities, united per model). Identities
        that are not valid for their type are ignored."""
        by_commitment: dict[str, str] = {}
        for kind in sorted(identities, key=_preference):
            try:
                by_commitment.setdefault(self.commitment(kind, identities[kind]), kind)
            except RequestError:
                continue
        if not by_commitment:
            return {}
        found: dict[str, tuple[str, set[int]]] = {}
        with self._store.read() as s:
            rows = s.execute(
                select(SubjectMapRow).where(SubjectMapRow.commitment.in_(list(by_commitment)))
            ).scalars()
            for row in rows:
                kind = by_commitment[row.commitment]
                prev_kind, ids = found.get(row.model_name, (kind, set()))
                if _preference(kind) < _preference(prev_kind):
                    prev_kind = kind
                found[row.model_name] = (prev_kind, ids | set(json.loads(row.classes)))
        return {m: (k, tuple(sorted(ids))) for m, (k, ids) in sorted(found.items())}


def _preference(identity_type: str) -> tuple[int, str]:
    """email first, then phone_number, then the rest by name (the subject a request gets)."""
    order = {"email": 0, "phone_number": 1}
    return (order.get(identity_type, 2), identity_type)


def _load_or_create_key(path: Path) -> bytes:
    """The mapping key at ``path``; created (0600, exclusively: two servers never race to two
    keys) on first use. Written in full to a private temporary file, then linked into place, so
    a concurrent reader never sees an empty or half-written key."""
    if not path.exists():
        create_once(path, (secrets.token_hex(32) + "\n").encode("ascii"))
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read the subject-mapping key {path}: {e} (restore it from the backup "
            "of the key directory; without it registered mappings cannot be matched)"
        ) from e
    if len(key) != 32:
        raise ConfigError(f"the subject-mapping key {path} is not 32 bytes of hex")
    return key
