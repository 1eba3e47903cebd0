"""The deletion workflow: projects, registered models, requests, applies and receipts.

Layers (DEVELOPERS.md): :class:`ProjectStore` (engine, sessions, locked row look-ups, paths)
-> services (models, requests, references, applies, exports; each receives the store and the
:class:`~lethe_audit.log.AuditLog`) -> the thin :class:`Lethe` facade -> the CLI and the HTTP
service. Names load on first use (PEP 562), so ``import lethe.workflow`` stays cheap for
commands that only read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lethe.workflow._applies import ApplyService
    from lethe.workflow._exporting import ExportService
    from lethe.workflow._keys import KeyRotation, KeyService, NewKey
    from lethe.workflow._models import ModelService
    from lethe.workflow._principal import PRINCIPAL_ROLES, Principal
    from lethe.workflow._project import Lethe, Services
    from lethe.workflow._readonly import RequestReader, check_initialised
    from lethe.workflow._recipe import ReferenceConfig
    from lethe.workflow._reference import ReferenceService
    from lethe.workflow._requests import LEGAL_BASES, RequestService, normalize_subject
    from lethe.workflow._settings import CONFIG_NAME, Settings
    from lethe.workflow._store import ProjectStore
    from lethe.workflow._subjects import SubjectMap, normalize_identity
    from lethe.workflow._types import (
        MASKED_NOT_ERASED,
        ApplyResult,
        DeletionRequest,
        DepthReference,
        EvalDataExport,
        LogEntry,
        ModelExport,
        ModelInfo,
    )

_WHERE = {
    "ApplyService": "_applies",
    "ExportService": "_exporting",
    "KeyRotation": "_keys",
    "KeyService": "_keys",
    "NewKey": "_keys",
    "ModelService": "_models",
    "PRINCIPAL_ROLES": "_principal",
    "Principal": "_principal",
    "RequestReader": "_readonly",
    "check_initialised": "_readonly",
    "LEGAL_BASES": "_requests",
    "Lethe": "_project",
    "normalize_subject": "_requests",
    "ReferenceConfig": "_recipe",
    "ReferenceService": "_reference",
    "RequestService": "_requests",
    "Services": "_project",
    "CONFIG_NAME": "_settings",
    "Settings": "_settings",
    "ProjectStore": "_store",
    "SubjectMap": "_subjects",
    "normalize_identity": "_subjects",
    "MASKED_NOT_ERASED": "_types",
    "ApplyResult": "_types",
    "DeletionRequest": "_types",
    "DepthReference": "_types",
    "EvalDataExport": "_types",
    "LogEntry": "_types",
    "ModelExport": "_types",
    "ModelInfo": "_types",
}

__all__ = [
    "CONFIG_NAME",
    "LEGAL_BASES",
    "MASKED_NOT_ERASED",
    "PRINCIPAL_ROLES",
    "ApplyResult",
    "ApplyService",
    "DeletionRequest",
    "DepthReference",
    "EvalDataExport",
    "ExportService",
    "KeyRotation",
    "KeyService",
    "Lethe",
    "LogEntry",
    "ModelExport",
    "ModelInfo",
    "ModelService",
    "NewKey",
    "Principal",
    "ProjectStore",
    "ReferenceConfig",
    "ReferenceService",
    "RequestReader",
    "RequestService",
    "Services",
    "Settings",
    "SubjectMap",
    "check_initialised",
    "normalize_identity",
    "normalize_subject",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
