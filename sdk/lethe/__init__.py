"""Lethe: verified, signed class unlearning for deployed image classifiers.

- :class:`Client`: the torch-free HTTP client of ``lethe serve`` (same method names).
- :class:`Lethe` (:mod:`lethe.workflow`): a project: file, approve, apply deletion requests,
  receipts and the signed log.
- :mod:`lethe.filters`: the method (per-class weight filters, trained once, composed, folded).
- :mod:`lethe.metrics`, :mod:`lethe.export`, :mod:`lethe.data`, :mod:`lethe.models`,
  :mod:`lethe.errors`.
"""

from typing import TYPE_CHECKING, Any

from lethe.errors import LetheError
from lethe_audit import __version__

if TYPE_CHECKING:
    from lethe._client import Client
    from lethe._digest import model_digest
    from lethe.workflow import Lethe

__all__ = ["Client", "Lethe", "LetheError", "__version__", "model_digest"]


def __getattr__(name: str) -> Any:
    # Lethe pulls in the log store (SQLAlchemy, cryptography); code that only trains or
    # applies filters (a GPU job, say) should not need those installed, so load it on use.
    if name == "Lethe":
        from lethe.workflow import Lethe

        return Lethe
    # The HTTP client needs only httpx: apps that call a running `lethe serve` never load
    # torch, SQLAlchemy or the signing keys.
    if name == "Client":
        from lethe._client import Client

        return Client
    # model_digest needs torch: `lethe --version` and `lethe request list` must not load it.
    if name == "model_digest":
        from lethe._digest import model_digest

        return model_digest
    raise AttributeError(f"module 'lethe' has no attribute {name!r}")
