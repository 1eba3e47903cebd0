"""Exceptions raised by :mod:`lethe`.

Every error Lethe raises on purpose derives from :class:`LetheError`, so a caller (or the
CLI's single error map) can catch the whole family at once and still tell the domains apart.
Messages say what went wrong *and* what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BankClassCountError",
    "BankFormatError",
    "BankIntegrityError",
    "BankMismatchError",
    "BankModelMismatchError",
    "BankShapeError",
    "ClassSelectionError",
    "ConfigError",
    "DataError",
    "FilterError",
    "LetheError",
    "ModelError",
    "NonFiniteError",
    "TargetSelectionError",
    "TrainingError",
]


class LetheError(Exception):
    """Root of every error raised on purpose by :mod:`lethe`."""


class ConfigError(LetheError, ValueError):
    """An option or configuration value is invalid."""


class DataError(LetheError):
    """A dataset could not be read, or its contents do not fit what was asked."""


class ModelError(LetheError):
    """A model could not be built, loaded or used as asked."""


class FilterError(LetheError):
    """Base class of weight-filter errors (targets, banks, training, folding)."""


class TargetSelectionError(FilterError):
    """The selected filter targets are empty, unknown or cannot be filtered safely."""


class ClassSelectionError(FilterError, ValueError):
    """A forget set is empty or names a class the filter bank does not have."""


class NonFiniteError(FilterError):
    """A filter value or a folded weight is NaN or infinite."""


class TrainingError(FilterError):
    """Filter training cannot start or resume as configured."""


class BankFormatError(FilterError):
    """A file is not a Lethe filter bank, or uses a format version this Lethe cannot read."""


class BankMismatchError(FilterError):
    """A filter bank does not belong to the model (or file) it was used with."""


class BankModelMismatchError(BankMismatchError):
    """The bank was trained for another model (its base-model digest differs)."""


class BankShapeError(BankMismatchError):
    """The bank's target layers or channel counts differ from the model's."""


class BankClassCountError(BankShapeError):
    """The bank has a different number of classes than the model's classifier."""


class BankIntegrityError(BankMismatchError):
    """The bank's stored digest does not match its contents (corrupted or tampered file)."""
