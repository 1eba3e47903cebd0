"""The one error map of ``lethe``: exception class -> exit code, message to stderr.

Lethe's own errors use codes 60-99; errors raised by ``lethe_audit`` (log, keys,
metrics, model verification) keep the codes of ``lethe-audit`` (1-59), so a script sees
the same number for the same failure from either tool. A class without an entry gets the
code of its nearest listed base class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

import click

from lethe import errors as E
from lethe_audit.cli._errors import EXIT_CODES as AUDIT_EXIT_CODES

EXIT_CODES: Mapping[type[BaseException], int] = MappingProxyType(
    {
        **AUDIT_EXIT_CODES,
        E.LetheError: 60,
        E.ConfigError: 61,
        E.DataError: 62,
        E.ModelError: 63,
        E.FilterError: 64,
        E.TargetSelectionError: 65,
        E.ClassSelectionError: 66,
        E.NonFiniteError: 67,
        E.TrainingError: 68,
        E.BankFormatError: 69,
        E.BankMismatchError: 70,
        E.BankIntegrityError: 71,
        E.ExportError: 72,
        E.ExportInputError: 73,
        E.ExportMappingError: 74,
        E.OnnxCheckError: 75,
        E.ParityError: 76,
        E.PatchError: 77,
        E.QuantizationError: 78,
        E.CalibrationError: 79,
        E.WorkflowError: 80,
        E.ProjectError: 81,
        E.UnknownModelError: 82,
        E.ModelRegistrationError: 83,
        E.RequestError: 84,
        E.UnknownClassError: 85,
        E.SampleLevelRequestError: 86,
        E.UnknownRequestError: 87,
        E.InvalidTransitionError: 88,
        E.IdempotencyConflictError: 89,
        E.ApplyError: 90,
        E.NothingToApplyError: 91,
        E.PolicyFailedError: 92,
        E.ReceiptUnavailableError: 93,
    }
)


def exit_code(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def report(exc: BaseException, *, as_json: bool) -> int:
    """Print the error to stderr (and as JSON on stdout with --json); return its exit code."""
    code = exit_code(exc)
    click.echo(f"lethe: error: {exc}", err=True)
    if as_json:
        doc = {
            "ok": False,
            "error": {"type": type(exc).__name__, "message": str(exc), "exit_code": code},
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    return code
