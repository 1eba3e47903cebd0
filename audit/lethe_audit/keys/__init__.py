"""Ed25519 log keys: PEM files (0600, optionally passphrase-encrypted) and key directories.

Key directory layout (shared with the `lethe` SDK)::

    <dir>/keyring.json          public: name, key id, vkey, file, status of every key
    <dir>/log-<keyid>.pem       private: PKCS#8 PEM, mode 0600, never overwritten
    <dir>/log-<keyid>.vkey      public: the C2SP vkey string to give auditors
    <dir>/openssf-p256.pem      private: the P-256 key of OpenSSF model signatures (0600,
                                encrypted with the log keys' passphrase when there is one)
    <dir>/openssf-p256.pub.pem  public: its SubjectPublicKeyInfo PEM

Key ids and vkeys are C2SP signed-note ones (:mod:`lethe_audit.note`).
"""

from __future__ import annotations

from lethe_audit.keys._files import (
    KEYRING_FILE,
    KEYRING_FORMAT,
    KeyEntry,
    KeyRing,
    generate_key_file,
    load_key_file,
    write_private_key,
)
from lethe_audit.keys._openssf import (
    OPENSSF_KEY_FILE,
    OPENSSF_KEY_PURPOSE,
    OPENSSF_PUBLIC_FILE,
    OpenSSFKey,
    ensure_openssf_key,
    load_openssf_private_key,
    openssf_key_event,
    openssf_key_id,
)
from lethe_audit.keys._trust import TrustedKey, describe_keys, merge_trusted

__all__ = [
    "KEYRING_FILE",
    "KEYRING_FORMAT",
    "OPENSSF_KEY_FILE",
    "OPENSSF_KEY_PURPOSE",
    "OPENSSF_PUBLIC_FILE",
    "KeyEntry",
    "KeyRing",
    "OpenSSFKey",
    "TrustedKey",
    "describe_keys",
    "ensure_openssf_key",
    "generate_key_file",
    "load_key_file",
    "load_openssf_private_key",
    "merge_trusted",
    "openssf_key_event",
    "openssf_key_id",
    "write_private_key",
]
