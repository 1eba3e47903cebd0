"""Lethe: verified, signed class unlearning for deployed image classifiers.

- :class:`Lethe` (:mod:`lethe.workflow`): a project: file, approve, apply deletion requests,
  receipts and the signed log.
- :mod:`lethe.filters`: the method (per-class weight filters, trained once, composed, folded).
- :mod:`lethe.metrics`, :mod:`lethe.export`, :mod:`lethe.data`, :mod:`lethe.models`,
  :mod:`lethe.errors`.
"""

from lethe._digest import model_digest
from lethe.errors import LetheError
from lethe.workflow import Lethe
from lethe_audit._version import __version__

__all__ = ["Lethe", "LetheError", "__version__", "model_digest"]
