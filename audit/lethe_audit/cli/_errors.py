"""The one error map of `lethe-audit`: exception class -> exit code, message to stderr.

Commands just raise; :class:`~lethe_audit.cli._app.LetheAuditGroup` turns any
:class:`~lethe_audit.errors.LetheAuditError` into its exit code here. An error class without
an entry gets the code of its nearest listed base class, so new subclasses need no change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

import click

from lethe_audit import errors as E
from lethe_audit.cli._terminal import safe_text

#: 0 = success, 2 = usage error (click). Every other code names one failure class.
EXIT_CODES: Mapping[type[BaseException], int] = MappingProxyType(
    {
        E.LetheAuditError: 1,
        E.FormatError: 3,
        E.StatementError: 4,
        E.VerificationError: 10,
        E.ProofError: 11,
        E.InclusionProofError: 12,
        E.ConsistencyProofError: 13,
        E.SignatureError: 14,
        E.CheckpointError: 15,
        E.EntryError: 16,
        E.BundleError: 17,
        E.ReceiptError: 18,
        E.PolicyError: 19,
        E.NothingToCheckError: 24,
        E.StoreError: 20,
        E.SchemaError: 21,
        E.LogStateError: 22,
        E.KeyFileError: 30,
        E.BundleWriteError: 31,
        E.MetricsError: 40,
        E.EvaluationSetError: 41,
        E.ForgetClassError: 42,
        E.ModelInputError: 43,
        E.BackendError: 44,
        E.ResultFormatError: 45,
        E.PolicyConfigError: 46,
        E.ModelVerificationError: 50,
        E.ReportError: 60,
        E.MissingExtraError: 70,
    }
)


def exit_code(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


#: Longer error messages are cut (they quote input, which may be huge).
MAX_MESSAGE = 2000


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except ValueError:  # e.g. an int too large to print
        text = type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "... (cut)"


def report(exc: E.LetheAuditError, *, as_json: bool) -> int:
    """Print the error (stderr; and a JSON object on stdout in --json mode); return the code."""
    code = exit_code(exc)
    message = safe_text(_message(exc), one_line=True)
    click.echo(f"lethe-audit: error: {message}", err=True)
    if as_json:
        doc: dict[str, object] = {
            "ok": False,
            "error": {"type": type(exc).__name__, "message": _message(exc), "exit_code": code},
        }
        for attr in ("index", "size", "field", "policy", "what"):
            value = getattr(exc, attr, None)
            if isinstance(value, int) and value.bit_length() > 64:
                continue  # not a real position (hostile input); the message says enough
            if value is not None:
                doc["error"][attr] = value  # type: ignore[index]
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    return code
