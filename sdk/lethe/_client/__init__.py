"""The HTTP client of ``lethe serve`` (:class:`Client`) and the service's errors.

Lazy (PEP 562): importing :mod:`lethe._client._errors` (the CLI's error map does) loads no
httpx; :class:`Client` loads it on first use.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lethe._client._http import Client
    from lethe._client._types import RemoteRequest

__all__ = ["Client", "RemoteRequest"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from lethe._client._http import Client

        return Client
    if name == "RemoteRequest":
        from lethe._client._types import RemoteRequest

        return RemoteRequest
    raise AttributeError(f"module 'lethe._client' has no attribute {name!r}")
