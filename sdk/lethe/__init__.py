"""Lethe: verified, signed class unlearning for deployed image classifiers.

Submodules: :mod:`lethe.filters` (the method), :mod:`lethe.data` (datasets),
:mod:`lethe.models` (building and training classifiers), :mod:`lethe.errors`.
"""

from lethe._digest import model_digest
from lethe.errors import LetheError
from lethe_audit._version import __version__

__all__ = ["LetheError", "__version__", "model_digest"]
