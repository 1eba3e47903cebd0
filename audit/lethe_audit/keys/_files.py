"""Ed25519 private keys in PEM files, and the key directory ("keyring") convention."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from lethe_audit.errors import FormatError, KeyFileError
from lethe_audit.keys._trust import TrustedKey
from lethe_audit.note import Signer, Verifier

KEYRING_FILE = "keyring.json"
KEYRING_FORMAT = "lethe-keyring/v1"
KeyStatus = Literal["active", "retired"]


def _passphrase_bytes(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None:
        return None
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    if not data:
        raise KeyFileError("an empty passphrase encrypts nothing: give a real one or none")
    return data


def write_private_key(
    path: str | Path, signer: Signer, *, passphrase: str | bytes | None = None
) -> Path:
    """Write ``signer``'s key as PKCS#8 PEM, created 0600; refuses to overwrite."""
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    p = Path(path)
    secret = _passphrase_bytes(passphrase)
    enc = BestAvailableEncryption(secret) if secret else NoEncryption()
    pem = signer.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, enc)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{p} already exists: refusing to overwrite a key file") from None
    except OSError as e:
        raise KeyFileError(f"cannot create key file {p}: {e.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # the umask may have cleared bits; never leave it wider
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return p


def generate_key_file(
    path: str | Path, *, name: str, passphrase: str | bytes | None = None
) -> Signer:
    """Create a new Ed25519 key named ``name`` (the C2SP key name) in a new 0600 PEM file."""
    signer = Signer.generate(name)
    write_private_key(path, signer, passphrase=passphrase)
    return signer


def load_key_file(path: str | Path, *, name: str, passphrase: str | bytes | None = None) -> Signer:
    """Read an Ed25519 PEM key (PKCS#8, optionally encrypted) as a :class:`Signer`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key file {p}: {e.strerror}") from None
    try:
        key = load_pem_private_key(data, password=_passphrase_bytes(passphrase))
    except TypeError as e:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        raise KeyFileError(f"{p}: {e} (pass the right passphrase, or none)") from None
    except ValueError:
        raise KeyFileError(f"{p}: not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{p} holds a {type(key).__name__}, not an Ed25519 key")
    try:
        return Signer(name, key)
    except FormatError as e:
        raise KeyFileError(str(e)) from None


# --- keyring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyEntry:
    """One key of a keyring: its public identity, file and status."""

    name: str
    key_id: str
    vkey: str
    file: str
    status: KeyStatus
    created_at: str
    retired_at: str | None = None
    #: Log size at which the key was added (its ``key.rotated`` event included); None: from 0.
    added_at_size: int | None = None
    #: Log size at which it was retired (its ``key.rotated`` event included); None: not
    #: recorded (a key retired without a log: not trusted, see :meth:`KeyRing.trusted_keys`).
    retired_at_size: int | None = None

    def verifier(self) -> Verifier:
        return Verifier.from_vkey(self.vkey)

    def trusted_key(self) -> TrustedKey | None:
        """The key with its validity window, or None for a retired key of unknown window."""
        if self.status == "retired" and self.retired_at_size is None:
            return None
        return TrustedKey.of(
            self.verifier(), from_size=self.added_at_size or 0, until_size=self.retired_at_size
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "vkey": self.vkey,
            "file": self.file,
            "status": self.status,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "added_at_size": self.added_at_size,
            "retired_at_size": self.retired_at_size,
        }


def _logged_size(result: object) -> int | None:
    """The log size a register/unregister hook reports (e.g. an AppendResult), if any."""
    size = getattr(result, "size", None)
    return size if type(size) is int and size >= 0 else None


def _check_sizes(entry: KeyEntry, path: Path) -> None:
    for what in ("added_at_size", "retired_at_size"):
        value = getattr(entry, what)
        if value is not None and (type(value) is not int or not 0 <= value < 1 << 63):
            raise KeyFileError(f"{path}: key {entry.key_id} has a bad {what}: {value!r}")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyRing:
    """A key directory: ``keyring.json`` listing keys, one ``log-<keyid>.pem`` per key.

    ``keyring.json`` (public) holds, per key: C2SP name, key id, vkey, PEM file name, status
    (``active`` keys sign; ``retired`` keys only verify old checkpoints) and times. A rotation
    adds a key (both sign during the overlap) and later retires the old one; the log records
    both steps as ``key.rotated`` events (:meth:`lethe_audit.log.AuditLog.add_key`).
    """

    def __init__(self, directory: Path, entries: Sequence[KeyEntry]) -> None:
        self.directory = directory
        self._entries = tuple(entries)

    @property
    def entries(self) -> tuple[KeyEntry, ...]:
        return self._entries

    def active(self) -> tuple[KeyEntry, ...]:
        return tuple(e for e in self._entries if e.status == "active")

    @property
    def name(self) -> str:
        """The key name (= log origin) of the newest active key."""
        act = self.active()
        if not act:
            raise KeyFileError(f"keyring {self.directory} has no active key")
        return act[-1].name

    # -- opening and creating ----------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | Path) -> KeyRing:
        d = Path(directory)
        path = d / KEYRING_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyFileError(
                f"no {KEYRING_FILE} in {d}: create one with `lethe-audit keys generate {d} "
                "--name NAME`"
            ) from None
        except (OSError, ValueError, RecursionError) as e:
            raise KeyFileError(f"cannot read {path}: {type(e).__name__}: {e}") from None
        if not isinstance(raw, dict) or raw.get("format") != KEYRING_FORMAT:
            raise KeyFileError(f"{path} is not a {KEYRING_FORMAT} file")
        try:
            entries = [KeyEntry(**item) for item in raw["keys"]]
            for entry in entries:
                v = entry.verifier()
                if v.name != entry.name or f"{v.key_id:08x}" != entry.key_id:
                    raise KeyFileError(f"{path}: key {entry.key_id} does not match its vkey")
                if entry.status not in ("active", "retired"):
                    raise KeyFileError(f"{path}: key {entry.key_id} has status {entry.status!r}")
                _check_sizes(entry, path)
        except (KeyError, TypeError, ValueError, AttributeError, FormatError) as err:
            raise KeyFileError(f"{path} is malformed: {type(err).__name__}") from None
        return cls(d, entries)

    @classmethod
    def create(
        cls, directory: str | Path, *, name: str, passphrase: str | bytes | None = None
    ) -> KeyRing:
        """A new keyring with one active key named ``name``; the directory may exist."""
        d = Path(directory)
        if (d / KEYRING_FILE).exists():
            raise KeyFileError(f"{d / KEYRING_FILE} already exists: refusing to overwrite it")
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise KeyFileError(f"cannot create key directory {d}: {e.strerror}") from None
        return cls(d, ())._with_new_key(name, passphrase)

    def add_key(
        self,
        *,
        name: str | None = None,
        passphrase: str | bytes | None = None,
        register: Callable[[Signer], object] | None = None,
    ) -> KeyRing:
        """Generate a new active key (same name as the current one unless given): the start of
        a rotation. Returns the updated keyring (also written to disk).

        ``register`` (e.g. :meth:`lethe_audit.log.AuditLog.add_key`) runs after the key file
        is written and before the keyring is updated; if it raises, the new key files are
        removed and the keyring stays as it was.
        When it returns an object with a ``size`` (an ``AppendResult``), that log size is
        recorded as the key's ``added_at_size``: the key counts only from that size on.
        """
        return self._with_new_key(name or self.name, passphrase, register)

    def retire(self, key: str, *, unregister: Callable[[str], object] | None = None) -> KeyRing:
        """Mark a key retired (by key id, ``name+id`` or vkey); one key must stay active.

        ``unregister`` (e.g. :meth:`lethe_audit.log.AuditLog.retire_key`) gets the key's vkey
        first; if it raises, the keyring is left unchanged. When it returns an object with a
        ``size`` (an ``AppendResult``), that log size is recorded as the key's
        ``retired_at_size``: auditors using this directory trust the key only up to it.
        """
        target = self.find(key)
        if target.status == "retired":
            raise KeyFileError(f"key {target.key_id} is already retired")
        if len(self.active()) < 2:
            raise KeyFileError(f"key {target.key_id} is the only active key: add one first")
        size = _logged_size(unregister(target.vkey)) if unregister is not None else None
        entries = [
            replace(e, status="retired", retired_at=_now(), retired_at_size=size)
            if e is target
            else e
            for e in self._entries
        ]
        ring = KeyRing(self.directory, entries)
        ring._save()
        return ring

    def find(self, key: str) -> KeyEntry:
        for e in self._entries:
            if key in (e.key_id, e.vkey, f"{e.name}+{e.key_id}"):
                return e
        raise KeyFileError(f"no key {key!r} in {self.directory / KEYRING_FILE}")

    # -- using keys --------------------------------------------------------------------------

    def signer(self, entry: KeyEntry, *, passphrase: str | bytes | None = None) -> Signer:
        s = load_key_file(self.directory / entry.file, name=entry.name, passphrase=passphrase)
        if s.vkey != entry.vkey:
            raise KeyFileError(f"{entry.file} does not hold key {entry.vkey}")
        return s

    def signers(self, *, passphrase: str | bytes | None = None) -> list[Signer]:
        """Signers for every active key (all share one passphrase, or none)."""
        act = self.active()
        if not act:
            raise KeyFileError(f"keyring {self.directory} has no active key")
        return [self.signer(e, passphrase=passphrase) for e in act]

    def trusted_keys(self) -> list[TrustedKey]:
        """Every key with its validity window from the recorded log sizes: a key added by a
        rotation counts from its ``added_at_size``, a retired key up to its
        ``retired_at_size``. A retired key without a recorded size is left out (fail closed:
        state its window with ``TrustedKey.parse("VKEY@..SIZE")`` if you know it)."""
        return [k for k in (e.trusted_key() for e in self._entries) if k is not None]

    def verifiers(self) -> list[Verifier]:
        """:meth:`trusted_keys` as verifiers (windows kept: they are :class:`TrustedKey`)."""
        return list(self.trusted_keys())

    # -- internals ---------------------------------------------------------------------------

    def _with_new_key(
        self,
        name: str,
        passphrase: str | bytes | None,
        register: Callable[[Signer], object] | None = None,
    ) -> KeyRing:
        signer = Signer.generate(name)
        file = f"log-{signer.key_id:08x}.pem"
        pem = self.directory / file
        pub = self.directory / f"log-{signer.key_id:08x}.vkey"
        write_private_key(pem, signer, passphrase=passphrase)
        try:
            pub.write_text(signer.vkey + "\n")
            added = _logged_size(register(signer)) if register is not None else None
        except BaseException:
            pem.unlink(missing_ok=True)
            pub.unlink(missing_ok=True)
            raise
        entry = KeyEntry(
            name=name,
            key_id=f"{signer.key_id:08x}",
            vkey=signer.vkey,
            file=file,
            status="active",
            created_at=_now(),
            added_at_size=added,
        )
        ring = KeyRing(self.directory, (*self._entries, entry))
        ring._save()
        return ring

    def _save(self) -> None:
        doc = {"format": KEYRING_FORMAT, "keys": [e.to_dict() for e in self._entries]}
        data = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".keyring-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / KEYRING_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
