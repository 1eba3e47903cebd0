"""Ed25519 log keys: PEM files (0600, optionally passphrase-encrypted) and key directories.

Key directory layout (shared with the `lethe` SDK)::

    <dir>/keyring.json          public: name, key id, vkey, file, status of every key
    <dir>/log-<keyid>.pem       private: PKCS#8 PEM, mode 0600, never overwritten
    <dir>/log-<keyid>.vkey      public: the C2SP vkey string to give auditors

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
from lethe_audit.keys._trust import TrustedKey, describe_keys, merge_trusted

__all__ = [
    "KEYRING_FILE",
    "KEYRING_FORMAT",
    "KeyEntry",
    "KeyRing",
    "TrustedKey",
    "describe_keys",
    "generate_key_file",
    "load_key_file",
    "merge_trusted",
    "write_private_key",
]
