"""The deletion workflow: projects, registered models, requests, applies and receipts."""

from lethe.workflow._project import LEGAL_BASES, Lethe, normalize_subject
from lethe.workflow._settings import CONFIG_NAME, Settings
from lethe.workflow._types import (
    MASKED_NOT_ERASED,
    ApplyResult,
    DeletionRequest,
    DepthReference,
    ModelInfo,
)

__all__ = [
    "CONFIG_NAME",
    "LEGAL_BASES",
    "MASKED_NOT_ERASED",
    "ApplyResult",
    "DeletionRequest",
    "DepthReference",
    "Lethe",
    "ModelInfo",
    "Settings",
    "normalize_subject",
]
