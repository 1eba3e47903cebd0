"""C2SP signed notes: Go sumdb/note vectors, the C2SP spec example, RFC 8032 vectors."""

from __future__ import annotations

import pytest

from lethe_audit import note
from lethe_audit.errors import FormatError, SignatureError

# golang.org/x/mod sumdb/note/note_test.go (TestSign, TestOpen, TestNewVerifier).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"  # noqa: E501 - published test vector
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"  # noqa: E501 - published test vector

# The C2SP signed-note specification's example (C2SP/C2SP signed-note.md at commit
# d4c16da5e7687a016619074e78dad84b2c7238cc, "Example" section).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"  # noqa: E501 - published test vector
)
# The current signed-note.md example: a text with an empty line inside (its key is not given).
QUASIMODO_NOTE = (
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"  # noqa: E501 - published test vector
)

# RFC 8032 §7.1 Ed25519 tests 1-3: (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


def test_go_sign_vector_byte_for_byte() -> None:
    signer = note.Signer.from_private_key_string(PETER_SKEY)
    assert (signer.name, signer.key_id, signer.vkey) == ("PeterNeumann", 0xC74F20A3, PETER_VKEY)
    assert note.sign(GO_TEXT, signer) == GO_TEXT + "\n" + PETER_SIG
    assert signer.private_key_string() == PETER_SKEY


def test_go_open_vectors() -> None:
    peter, enoch = note.Verifier.from_vkey(PETER_VKEY), note.Verifier.from_vkey(ENOCH_VKEY)
    assert (peter.key_id, enoch.key_id) == (0xC74F20A3, 0xAF0CFE78)
    msg = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    note.verify(msg, [peter])  # the unknown Enoch signature is ignored
    note.verify(msg, [peter, enoch])
    note.verify(msg, [enoch])
    with pytest.raises(SignatureError, match="no signature by a trusted key"):
        note.verify(msg, [])
    parsed = note.parse(msg)
    assert parsed.text == GO_TEXT
    assert [(s.name, s.key_id) for s in parsed.signatures] == [
        ("PeterNeumann", 0xC74F20A3),
        ("EnochRoot", 0xAF0CFE78),
    ]
    # A bad signature by a known key rejects the whole note.
    broken = GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(SignatureError, match="invalid signature for key PeterNeumann"):
        note.verify(broken, [peter])
    # Go's malformed-message cases.
    for bad in [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT
        + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",  # noqa: E501 - published test vector
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + PETER_SIG * 101,
    ]:
        with pytest.raises(FormatError):
            note.verify(bad, [peter])
    with pytest.raises(FormatError):
        note.verify(b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode(), [peter])


def test_go_vkey_and_skey_manglings_are_rejected() -> None:
    for key, parse in (
        (PETER_VKEY, note.Verifier.from_vkey),
        (PETER_SKEY, note.Signer.from_private_key_string),
    ):
        parse(key)
        b = key.encode()
        for i in range(len(b) + 1):
            for j in range(i + 1, len(b) + 1):
                if (i, j) != (0, len(b)):
                    with pytest.raises(FormatError):
                        parse(b[i:j].decode())
        for i in range(len(b)):
            mangled = bytearray(b)
            mangled[i] += 1
            with pytest.raises(FormatError):
                parse(mangled.decode())
    # Go: wrong-length key and unknown algorithm, each with an adjusted key hash.
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]:
        with pytest.raises(FormatError):
            note.Verifier.from_vkey(bad)


def test_c2sp_spec_example() -> None:
    v = note.Verifier.from_vkey(SPEC_VKEY)
    assert (v.name, f"{v.key_id:08x}", v.vkey) == ("example.com/foo", "530d903a", SPEC_VKEY)
    note.verify(SPEC_NOTE, v)
    assert note.parse(SPEC_NOTE).text == "This is an example message.\n"
    with pytest.raises(SignatureError):
        note.verify(SPEC_NOTE.replace("example message", "forged message"), v)


def test_note_text_may_contain_empty_lines() -> None:
    parsed = note.parse(QUASIMODO_NOTE)
    assert parsed.text.endswith("ed è subito sera.\n")
    assert parsed.text.count("\n\n") == 1
    assert parsed.signatures[0].name == "quasimodo.example/salvatore"
    # Nobody we trust signed it.
    with pytest.raises(SignatureError):
        note.verify(QUASIMODO_NOTE, note.Verifier.from_vkey(SPEC_VKEY))
    # Our own round trip with such a text.
    s = note.Signer.generate("example.org/poet")
    text = parsed.text
    signed = note.sign(text, s)
    assert note.parse(signed).text == text
    note.verify(signed, s.verifier())


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors_through_the_signer(
    secret: str, public: str, message: str, signature: str
) -> None:
    s = note.Signer.from_seed("rfc8032.example/test", bytes.fromhex(secret))
    assert s.public_key.hex() == public
    assert s.sign_bytes(bytes.fromhex(message)).hex() == signature
    s.verifier().verify_bytes(bytes.fromhex(message), bytes.fromhex(signature))
    with pytest.raises(SignatureError):
        s.verifier().verify_bytes(bytes.fromhex(message) + b"!", bytes.fromhex(signature))


def test_unknown_keys_with_a_shared_name_or_id_are_ignored() -> None:
    a = note.Signer.generate("example.org/log")
    b = note.Signer.generate("example.org/log")  # same name, other key
    signed = note.sign("hello\n", [a, b])
    note.verify(signed, a.verifier())
    note.verify(signed, b.verifier())
    with pytest.raises(SignatureError, match="ambiguous"):
        # two different keys cannot share name and id; forge the clash by hand
        fake = note.Verifier("example.org/log", b.public_key)
        object.__setattr__(fake, "key_id", a.key_id)
        note.verify(signed, [a.verifier(), fake])


def test_sign_rejects_bad_input() -> None:
    s = note.Signer.generate("example.org/log")
    for bad in ["no newline", "tab\there\n"]:
        with pytest.raises(FormatError):
            note.sign(bad, s)
    with pytest.raises(FormatError):
        note.sign("x\n", [s, s])
    with pytest.raises(FormatError):
        note.sign("x\n", [])
    for name in ["", "a b", "a+b", "tab\tname"]:
        with pytest.raises(FormatError):
            note.Signer.generate(name)
