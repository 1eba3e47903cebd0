"""The one error map of ``lethe``: exception class -> exit code, message to stderr.

Lethe's own errors use codes 100-199, in blocks: 100-159 the core (filters, export, workflow),
160-169 the HTTP service and client (``lethe serve``, ``lethe.Client``), 170-179 bring-your-own
models, 180-184 signatures, 185-189 the CLI itself, 190-194 erase; 195-199 are free. Errors
raised by ``lethe_audit`` (log, keys, metrics, policies, model verification, reports) keep the
codes of ``lethe-audit`` (1-99), so a script sees the same number for the same failure from
either tool (a failed policy is ``PolicyError``, 19, from both). A class without an entry gets
the code of its nearest listed base class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

import click

from lethe import errors as E
from lethe._client import _errors as SV  # no httpx: lethe._client is lazy
from lethe_audit.cli.common import EXIT_CODES as AUDIT_EXIT_CODES
from lethe_audit.cli.common import safe_text

EXIT_CODES: Mapping[type[BaseException], int] = MappingProxyType(
    {
        **AUDIT_EXIT_CODES,
        E.LetheError: 100,
        E.ConfigError: 101,
        E.DataError: 102,
        E.ModelError: 103,
        E.FilterError: 104,
        E.TargetSelectionError: 105,
        E.ClassSelectionError: 106,
        E.NonFiniteError: 107,
        E.TrainingError: 108,
        E.BankFormatError: 109,
        E.BankMismatchError: 110,
        E.BankIntegrityError: 111,
        E.ExportError: 112,
        E.ExportInputError: 113,
        E.ExportMappingError: 114,
        E.OnnxCheckError: 115,
        E.ParityError: 116,
        E.PatchError: 117,
        E.QuantizationError: 118,
        E.CalibrationError: 119,
        E.WorkflowError: 120,
        E.ProjectError: 121,
        E.UnknownModelError: 122,
        E.ModelRegistrationError: 123,
        E.RequestError: 124,
        E.UnknownClassError: 125,
        E.SampleLevelRequestError: 126,
        E.UnknownRequestError: 127,
        E.InvalidTransitionError: 128,
        E.IdempotencyConflictError: 129,
        E.ApplyError: 130,
        E.NothingToApplyError: 131,
        E.ReceiptUnavailableError: 133,
        E.MissingReferenceError: 134,
        E.AlreadyErasedError: 135,
        E.ReferenceTrainingError: 136,
        E.ApplyLockLostError: 137,
        E.InsufficientSpaceError: 138,
        E.UnattachedBankError: 139,
        E.InconsistentStateError: 140,
        E.PublishedLinkError: 141,
        SV.ServiceError: 160,
        SV.TokenError: 161,
        SV.AuthenticationError: 162,
        SV.ForbiddenError: 163,
        SV.RateLimitedError: 164,
        SV.ClientError: 165,
        E.SeparationOfDutiesError: 166,
        E.CheckpointFormatError: 170,
        E.PreprocessingError: 171,
        E.BaseAccuracyError: 172,
        E.ClassMismatchError: 173,
        E.InheritedDeletionsPendingError: 174,
        E.TrainedWithoutRefusedError: 175,
        E.RollbackError: 176,
    }
)


def exit_code(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def report(
    exc: BaseException,
    *,
    as_json: bool,
    data: Mapping[str, object] | None = None,
    code: int | None = None,
) -> int:
    """Print the error to stderr as one line (and, with --json, ``{"ok": false, "error":
    {type, message, exit_code}, **data}`` on stdout); return its exit code (from the map
    unless ``code`` is given, e.g. 2 for a bad command line)."""
    code = exit_code(exc) if code is None else code
    click.echo(f"lethe: error: {safe_text(str(exc), one_line=True)}", err=True)
    if as_json:
        doc = {
            **(data or {}),
            "ok": False,
            "error": {"type": type(exc).__name__, "message": str(exc), "exit_code": code},
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    return code
