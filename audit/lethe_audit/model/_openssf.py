"""OpenSSF Model Signing v1.0 signatures of exported models (the ``model_signing`` package).

Layout: ``model.onnx`` is signed into ``model.onnx.sig`` beside it (a sigstore bundle whose
DSSE payload is an in-toto statement listing the file's SHA-256: what ``model_signing``
writes and verifies), by the project's P-256 key (``lethe_audit.keys.ensure_openssf_key``).
The Lethe signature inside the model and this one are independent: a standard tool checks the
``.sig`` without Lethe, Lethe checks both. Needs the ``[openssf]`` extra (model-signing and
pyOpenSSL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lethe_audit.errors import MissingExtraError, ModelVerificationError

__all__ = ["OPENSSF_SIGNATURE_SUFFIX", "openssf_signature_path", "sign_openssf", "verify_openssf"]

#: Appended to the model's file name to name its OpenSSF signature.
OPENSSF_SIGNATURE_SUFFIX = ".sig"


def openssf_signature_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the OpenSSF signature of ``model_path`` lives: ``<model file>.sig`` beside it."""
    p = Path(model_path)
    return p.with_name(p.name + OPENSSF_SIGNATURE_SUFFIX)


def _model_signing(feature: str) -> Any:
    try:
        import model_signing
        import OpenSSL  # noqa: F401  (model_signing imports it without declaring it)
    except ImportError as e:
        raise MissingExtraError(feature, "openssf", e.name or "model_signing") from None
    return model_signing


def sign_openssf(
    model_path: str | os.PathLike[str],
    private_key: str | os.PathLike[str],
    *,
    signature_path: str | os.PathLike[str] | None = None,
    passphrase: str | bytes | None = None,
) -> Path:
    """Sign the model file with the EC P-256 private key file ``private_key`` (PEM; encrypted
    ones need ``passphrase``, the project's key passphrase) in the OpenSSF Model Signing
    format; returns the signature path (default :func:`openssf_signature_path`). Sign the
    final bytes: any later change breaks it. :class:`~lethe_audit.errors.KeyFileError` for a
    missing or wrong passphrase."""
    from lethe_audit.errors import KeyFileError
    from lethe_audit.keys import load_openssf_private_key

    ms = _model_signing("OpenSSF signing")
    key_path = Path(private_key)
    try:
        pem = key_path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{key_path}: cannot read the OpenSSF key: {e.strerror}") from None
    load_openssf_private_key(pem, key_path, passphrase)  # typed errors before model_signing's
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    # model_signing hands ``password`` to cryptography's PEM loader, which takes bytes.
    password = secret if b"ENCRYPTED PRIVATE KEY" in pem else None
    sig = Path(signature_path) if signature_path is not None else openssf_signature_path(model_path)
    ms.signing.Config().use_elliptic_key_signer(private_key=key_path, password=password).sign(
        Path(model_path), sig
    )
    return sig


def verify_openssf(
    model_path: str | os.PathLike[str],
    public_key: str | os.PathLike[str],
    *,
    signature_path: str | os.PathLike[str] | None = None,
) -> None:
    """Verify the model's OpenSSF signature with ``model_signing``'s own verifier and the PEM
    public key file ``public_key``; returns None or raises
    :class:`~lethe_audit.errors.ModelVerificationError` (``what="openssf"``)."""
    ms = _model_signing("OpenSSF verification")
    sig = Path(signature_path) if signature_path is not None else openssf_signature_path(model_path)
    if not sig.is_file():
        raise ModelVerificationError(
            f"no OpenSSF signature at {sig} (Lethe writes <model>.sig beside every exported "
            "model; give its path if it was moved)",
            what="openssf",
        )
    try:
        config = ms.verifying.Config().use_elliptic_key_verifier(public_key=Path(public_key))
        config.verify(Path(model_path), sig)
    except Exception as e:  # model_signing raises ValueError and friends, untyped
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ModelVerificationError(
            f"the OpenSSF signature {sig.name} does not verify: {detail}", what="openssf"
        ) from None
