"""C2SP signed notes with Ed25519 keys (https://c2sp.org/signed-note).

Wire-compatible with Go's ``golang.org/x/mod/sumdb/note``: the same key strings, key ids,
signature lines and verification rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lethe_audit.errors import FormatError, SignatureError
from lethe_audit.note._ed25519 import key_problem

#: Signature type byte of Ed25519 note keys (C2SP signed-note "Signature types").
ALG_ED25519 = 0x01
#: Em dash + space: how every signature line starts.
SIG_PREFIX = "\u2014 "
#: Go's sumdb/note accepts at most this many signatures; the spec asks for at least 16.
MAX_SIGNATURES = 100


def _valid_name(name: str) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "+" not in name
        and not any(c.isspace() or "\ud800" <= c <= "\udfff" for c in name)
    )


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise FormatError(
            f"key name {name!r} is invalid: it must be non-empty, without spaces or '+' "
            "(a schema-less URL such as example.org/lethe-log is recommended)"
        )


def key_id(name: str, public_key: bytes) -> int:
    """C2SP key id: the first 4 bytes (big-endian) of SHA-256(name || 0x0A || 0x01 || key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


def _b64decode(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise FormatError(f"{what} is not valid base64") from None


def _parse_key_id(hex8: str, what: str) -> int:
    if len(hex8) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex8):
        raise FormatError(f"{what}: the key id must be 8 hex digits, got {hex8!r}")
    return int(hex8, 16)


class Verifier:
    """An Ed25519 public key with its C2SP name and key id; built from a vkey string."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_name(name)
        if len(public_key) != 32:
            raise FormatError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
        problem = key_problem(bytes(public_key))
        if problem is not None:
            raise FormatError(f"not a usable Ed25519 public key: {problem}")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``name+hexid+base64(0x01 || public key)``."""
        if not isinstance(vkey, str):
            raise FormatError(f"a vkey is a string, not {type(vkey).__name__}")
        name, sep1, rest = vkey.partition("+")
        hex8, sep2, key64 = rest.partition("+")
        if not (sep1 and sep2):
            raise FormatError(f"vkey {vkey!r} is not of the form name+keyid+key")
        _check_name(name)
        want = _parse_key_id(hex8, "vkey")
        raw = _b64decode(key64, "vkey key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("vkey is not an Ed25519 key (type 0x01 + 32 bytes)")
        v = cls(name, raw[1:])
        if v.key_id != want:
            raise FormatError(
                f"vkey key id {hex8} does not match its name and key (expected {v.key_id:08x})"
            )
        return v

    @property
    def vkey(self) -> str:
        """The verifier key string: ``name+hexid+base64(0x01 || public key)``."""
        raw = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{raw}"

    @property
    def key_hint(self) -> str:
        """``name+hexid``: names this key in errors and DSSE ``keyid`` fields."""
        return f"{self.name}+{self.key_id:08x}"

    def verify_bytes(self, message: bytes, signature: bytes) -> None:
        """Check a raw Ed25519 signature. Returns None or raises SignatureError."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise SignatureError(f"invalid signature for key {self.key_hint}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verifier) and (self.name, self.public_key) == (
            other.name,
            other.public_key,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


class Signer:
    """An Ed25519 private key with its C2SP key name.

    ``name``, ``key_id`` and ``vkey`` identify the key. :meth:`sign_bytes` signs arbitrary
    bytes (a raw 64-byte RFC 8032 signature, deterministic); :func:`sign` makes a signed note.
    """

    __slots__ = ("_key", "_verifier", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        pub = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._verifier = Verifier(name, pub)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """From a 32-byte RFC 8032 private key (seed)."""
        if len(seed) != 32:
            raise FormatError(f"an Ed25519 private key seed is 32 bytes, got {len(seed)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private_key_string(cls, skey: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+name+hexid+base64(0x01 || seed)``."""
        p1, _, rest = skey.partition("+")
        p2, _, rest = rest.partition("+")
        name, _, rest = rest.partition("+")
        hex8, sep, key64 = rest.partition("+")
        if p1 != "PRIVATE" or p2 != "KEY" or not sep:
            raise FormatError("private key string is not of the form PRIVATE+KEY+name+id+key")
        _check_name(name)
        want = _parse_key_id(hex8, "private key string")
        raw = _b64decode(key64, "private key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("private key is not an Ed25519 key (type 0x01 + 32-byte seed)")
        s = cls.from_seed(name, raw[1:])
        if s.key_id != want:
            raise FormatError(
                f"private key id {hex8} does not match its name and key (expected {s.key_id:08x})"
            )
        return s

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    @property
    def public_key(self) -> bytes:
        return self._verifier.public_key

    @property
    def vkey(self) -> str:
        return self._verifier.vkey

    @property
    def key_hint(self) -> str:
        return self._verifier.key_hint

    def verifier(self) -> Verifier:
        return self._verifier

    def private_key_string(self) -> str:
        """Go's ``PRIVATE+KEY+name+hexid+base64(0x01 || seed)``: keep it secret."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{raw}"

    def sign_bytes(self, message: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature over ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Signer({self.key_hint!r})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id and the raw signature bytes."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    if any(c < " " and c != "\n" for c in text):
        raise FormatError("note text must not contain control characters other than newline")


def _as_list(items: Signer | Verifier | Sequence[Signer] | Sequence[Verifier]) -> list[object]:
    if isinstance(items, (Signer, Verifier)):
        return [items]
    return list(items)


def sign(text: str, signers: Signer | Sequence[Signer]) -> str:
    """Sign ``text`` (which must end with a newline) with every signer; returns the note."""
    _check_text(text)
    signer_list = [s for s in _as_list(signers) if isinstance(s, Signer)]
    if not signer_list:
        raise FormatError("sign needs at least one Signer")
    seen: set[tuple[str, int]] = set()
    lines = []
    message = text.encode("utf-8")
    for s in signer_list:
        if (s.name, s.key_id) in seen:
            raise FormatError(f"signer {s.key_hint} given twice")
        seen.add((s.name, s.key_id))
        lines.append(NoteSignature(s.name, s.key_id, s.sign_bytes(message)).line())
    return text + "\n" + "".join(lines)


def parse(note_text: str | bytes) -> Note:
    """Split a signed note into text and signature lines. Verifies nothing."""
    if isinstance(note_text, bytes):
        try:
            note_text = note_text.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("signed note is not valid UTF-8") from None
    try:
        note_text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        raise FormatError("signed note is not valid Unicode text") from None
    if any(c < " " and c != "\n" for c in note_text):
        raise FormatError("signed note contains control characters")
    split = note_text.rfind("\n\n")
    if split < 0:
        raise FormatError("signed note has no blank line before its signatures")
    text, sig_block = note_text[: split + 1], note_text[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise FormatError("signed note has no signature lines (or misses the final newline)")
    sigs = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise FormatError(f"signature line {line!r} does not start with an em dash")
        name, sep, b64 = line[len(SIG_PREFIX) :].partition(" ")
        if not sep or not _valid_name(name) or not b64:
            raise FormatError(f"signature line {line!r} is malformed")
        blob = _b64decode(b64, "signature")
        if len(blob) < 5:
            raise FormatError("signature is too short")
        sigs.append(NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
        if len(sigs) > MAX_SIGNATURES:
            raise FormatError(f"signed note has more than {MAX_SIGNATURES} signatures")
    return Note(text=text, signatures=tuple(sigs))


def verifier_map(verifiers: Verifier | Sequence[Verifier]) -> dict[tuple[str, int], Verifier]:
    """Index verifiers by (name, key id); a clash of two different keys is an error."""
    known: dict[tuple[str, int], Verifier] = {}
    for v in _as_list(verifiers):
        if not isinstance(v, Verifier):
            raise TypeError(f"expected Verifier, got {type(v).__name__}")
        k = (v.name, v.key_id)
        if k in known and known[k] != v:
            raise SignatureError(f"ambiguous key {v.key_hint}: two different keys share it")
        known[k] = v
    return known


def verify(note_text: str | bytes, verifiers: Verifier | Sequence[Verifier]) -> None:
    """Verify a signed note against trusted keys.

    Signatures by unknown keys are ignored; a bad signature by a known key rejects the note;
    at least one known key must have signed. Returns None or raises
    :class:`~lethe_audit.errors.SignatureError` (or FormatError for a malformed note).
    """
    signed_by(note_text, verifiers)


def signed_by(
    note_text: str | bytes, verifiers: Verifier | Sequence[Verifier]
) -> tuple[Verifier, ...]:
    """:func:`verify`, returning the trusted keys whose signature verified (each once).

    As in Go's ``sumdb/note``: only the first signature line of each known (name, key id) is
    checked; later lines by the same key are skipped without being checked.
    """
    n = parse(note_text)
    known = verifier_map(verifiers)
    message = n.text.encode("utf-8")
    verified: list[Verifier] = []
    seen: set[tuple[str, int]] = set()
    for s in n.signatures:
        v = known.get((s.name, s.key_id))
        if v is None or (s.name, s.key_id) in seen:
            continue
        seen.add((s.name, s.key_id))
        v.verify_bytes(message, s.signature)
        verified.append(v)
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in n.signatures)
        raise SignatureError(f"note has no signature by a trusted key (signed by: {names})")
    return tuple(verified)
