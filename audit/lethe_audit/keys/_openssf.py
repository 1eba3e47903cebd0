"""The P-256 key that makes OpenSSF Model Signing signatures of exported models.

OpenSSF's ``model_signing`` (1.1.1) signs with elliptic-curve keys (P-256, P-384, P-521), not
Ed25519, so a project keeps one dedicated P-256 key beside its Ed25519 log keys::

    <dir>/openssf-p256.pem       private: PKCS#8 PEM, mode 0600, never overwritten; encrypted
                                 with the project's key passphrase when it has one
    <dir>/openssf-p256.pub.pem   public: SubjectPublicKeyInfo PEM (give it to verifiers)

Its key id is ``model_signing``'s own key hint: the hex SHA-256 of the public PEM bytes (the
sigstore bundle names its key by it). The public half is registered in the log by a
``key.registered`` event (:func:`openssf_key_event`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from lethe_audit.errors import KeyFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from lethe_audit.statements import LifecycleEvent

__all__ = [
    "OPENSSF_KEY_FILE",
    "OPENSSF_KEY_PURPOSE",
    "OPENSSF_PUBLIC_FILE",
    "OpenSSFKey",
    "ensure_openssf_key",
    "load_openssf_private_key",
    "openssf_key_event",
    "openssf_key_id",
]

OPENSSF_KEY_FILE = "openssf-p256.pem"
OPENSSF_PUBLIC_FILE = "openssf-p256.pub.pem"
#: ``details.purpose`` of the ``key.registered`` event that logs the public key.
OPENSSF_KEY_PURPOSE = "openssf-model-signing"
_ALGORITHM = "ecdsa-p256-sha256"


@dataclass(frozen=True)
class OpenSSFKey:
    """A project's OpenSSF signing key: the two file paths, the public PEM and its key id."""

    private_path: Path
    public_path: Path
    public_pem: str
    key_id: str  #: hex SHA-256 of ``public_pem`` (model_signing's key hint)
    #: Whether the private file is passphrase-encrypted (projects made before the passphrase
    #: applied to it keep an unencrypted one, which still works).
    encrypted: bool = False


def openssf_key_id(public_pem: str | bytes) -> str:
    """The key id of a public key PEM: hex SHA-256 of its bytes, as model_signing hints it."""
    data = public_pem.encode("ascii") if isinstance(public_pem, str) else public_pem
    return hashlib.sha256(data).hexdigest()


def _is_encrypted(private_pem: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in private_pem


def _secret(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None:
        return None
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise KeyFileError("an empty passphrase encrypts nothing: give a real one or none")
    return data


def load_openssf_private_key(
    private_pem: bytes, path: Path, passphrase: str | bytes | None = None
) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key of an OpenSSF key file's bytes. An encrypted file needs
    ``passphrase``; an unencrypted one (older projects) loads whatever is given.
    :class:`KeyFileError` (one line) for a missing or wrong passphrase or another key type."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encrypted = _is_encrypted(private_pem)
    secret = _secret(passphrase)
    if encrypted and secret is None:
        raise KeyFileError(
            f"{path}: the OpenSSF key is encrypted: pass the project's key passphrase "
            "(key_passphrase, or LETHE_KEY_PASSPHRASE)"
        )
    try:
        key = serialization.load_pem_private_key(
            private_pem, password=secret if encrypted else None
        )
    except (ValueError, TypeError) as e:
        if encrypted:
            raise KeyFileError(
                f"{path}: wrong passphrase for the OpenSSF key (give the project's key passphrase)"
            ) from None
        raise KeyFileError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{path}: the OpenSSF signing key must be an EC P-256 key")
    return key


def _public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _generate(directory: Path, secret: bytes | None) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _write_new(directory / OPENSSF_KEY_FILE, private, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs


def ensure_openssf_key(
    directory: str | os.PathLike[str], *, passphrase: str | bytes | None = None
) -> tuple[OpenSSFKey, bool]:
    """The OpenSSF P-256 key of a key directory, created if it has none (an old project);
    returns ``(key, created)``. A new key is encrypted with ``passphrase`` (the project's key
    passphrase, as its Ed25519 keys are) when one is given. The private file is never
    overwritten, so an existing unencrypted key stays as it is and keeps working; the public
    file is (re)written from it when missing. :class:`KeyFileError` for a key file that is
    not a P-256 PEM private key, or is encrypted and ``passphrase`` is missing or wrong."""
    d = Path(directory)
    private_path, public_path = d / OPENSSF_KEY_FILE, d / OPENSSF_PUBLIC_FILE
    secret = _secret(passphrase)
    created = not private_path.exists()
    if created:
        _generate(d, secret)
    try:
        private_pem = private_path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{private_path}: cannot read the OpenSSF key: {e.strerror}") from None
    public_pem = _public_pem(load_openssf_private_key(private_pem, private_path, secret))
    if not public_path.exists() or public_path.read_text("ascii") != public_pem:
        tmp = public_path.with_name(public_path.name + ".tmp")
        tmp.write_text(public_pem, "ascii")
        os.replace(tmp, public_path)
    key_id = openssf_key_id(public_pem)
    key = OpenSSFKey(private_path, public_path, public_pem, key_id, _is_encrypted(private_pem))
    return key, created


def openssf_key_event(key: OpenSSFKey, *, at: datetime | None = None) -> LifecycleEvent:
    """The ``key.registered`` lifecycle event that logs ``key``'s public half (a
    :class:`~lethe_audit.statements.LifecycleEvent`; append it to the log once)."""
    from lethe_audit.statements import EventType, LifecycleEvent, rfc3339

    when = at or datetime.now(timezone.utc)
    details = {
        "purpose": OPENSSF_KEY_PURPOSE,
        "algorithm": _ALGORITHM,
        "key_id": key.key_id,
        "public_key": key.public_pem,
    }
    return LifecycleEvent(EventType.KEY_REGISTERED, rfc3339(when), details=details)
