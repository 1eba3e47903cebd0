"""The key service: the log's signing keys (the first key of a project, rotations).

A rotation adds a key to the keyring and registers it in the log in one step (the keyring file
is written only when the log accepted the key), then optionally retires the keys that were
active before. :class:`KeyService` holds the project's current :class:`KeyRing`, so every
reader (the facade, the export service) sees the keys a rotation made;
:meth:`KeyService.generate` makes a project's first key (there is no log to open yet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lethe.errors import ProjectError
from lethe.workflow._settings import Settings
from lethe_audit.keys import KEYRING_FILE, KeyRing
from lethe_audit.log import AuditLog

__all__ = ["KeyRotation", "KeyService", "NewKey"]


@dataclass(frozen=True)
class KeyRotation:
    """What :meth:`KeyService.rotate` did: the verification keys (vkeys) added and retired."""

    new: tuple[str, ...]
    retired: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"new": list(self.new), "retired": list(self.retired)}


@dataclass(frozen=True)
class NewKey:
    """The first log key of a project (:meth:`KeyService.generate`): its folder and vkey."""

    key_dir: str
    vkey: str

    def to_dict(self) -> dict[str, Any]:
        return {"key_dir": self.key_dir, "vkey": self.vkey}


class KeyService:
    """The log's signing keys: the current keyring and rotations."""

    def __init__(self, settings: Settings, log: AuditLog, keyring: KeyRing) -> None:
        self._settings = settings
        self._log = log
        self._ring = keyring

    @staticmethod
    def generate(settings: Settings) -> NewKey:
        """Create the project's first log key in ``settings.keys`` (named ``settings.origin``,
        encrypted with ``settings.key_passphrase`` when set). Refuses with
        :class:`~lethe.errors.ProjectError` when the folder already holds the log keys: rotate
        them instead (:meth:`rotate`)."""
        if (settings.keys / KEYRING_FILE).exists():
            raise ProjectError(
                f"{settings.keys} already holds the log keys; rotate them instead "
                "(`lethe keys rotate`, Lethe.rotate_key)"
            )
        ring = KeyRing.create(
            settings.keys, name=settings.origin, passphrase=settings.key_passphrase
        )
        return NewKey(str(settings.keys), ring.entries[0].vkey)

    @property
    def ring(self) -> KeyRing:
        """The keyring as it is now (a rotation replaces it)."""
        return self._ring

    def rotate(self, *, retire_old: bool = False) -> KeyRotation:
        """Add a new log key: generated, registered in the log (a ``key.rotated`` event,
        ``added``, signed by the old and new keys) and written to the keyring; from then on
        both keys sign. ``retire_old``: also retire every key that was active before (one
        ``key.rotated`` event, ``retired``, each), so only the new key signs. Auditors keep
        trusting a retired key for the log up to its retirement."""
        old = self._ring.active()
        ring = self._ring.add_key(
            passphrase=self._settings.key_passphrase,
            register=lambda signer: self._log.add_key(signer),
        )
        self._ring = ring
        known = {o.vkey for o in old}
        new = tuple(e.vkey for e in ring.active() if e.vkey not in known)
        if not retire_old:
            return KeyRotation(new, ())
        for o in old:
            self._ring = self._ring.retire(o.vkey, unregister=lambda key: self._log.retire_key(key))
        return KeyRotation(new, tuple(o.vkey for o in old))
