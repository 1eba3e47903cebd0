"""``lethe serve``: the deletion workflow over HTTP, with tokens, roles and principals.

- :func:`create_app`: the ASGI app (FastAPI) over an open :class:`lethe.Lethe` project.
- :func:`create_token` / :func:`list_tokens` / :func:`revoke_token`: API tokens (hash only).
- :class:`Principal`: an authenticated token's name and role.
- :func:`serve_in_thread`: the app on a real uvicorn server in a thread (tests, embedding).
- Errors: :class:`ServiceError` and its subclasses; ``lethe.Client`` is the HTTP client.

See docs/service.md.
"""

from lethe.serve._app import ROLES, create_app
from lethe.serve._errors import (
    AuthenticationError,
    ClientError,
    ForbiddenError,
    RateLimitedError,
    ServiceError,
    TokenError,
)
from lethe.serve._problems import PROBLEM_BASE, status_of
from lethe.serve._thread import serve_in_thread
from lethe.serve._tokens import TokenInfo, authenticate, create_token, list_tokens, revoke_token
from lethe.workflow import Principal

__all__ = [
    "PROBLEM_BASE",
    "ROLES",
    "AuthenticationError",
    "ClientError",
    "ForbiddenError",
    "Principal",
    "RateLimitedError",
    "ServiceError",
    "TokenError",
    "TokenInfo",
    "authenticate",
    "create_app",
    "create_token",
    "list_tokens",
    "revoke_token",
    "serve_in_thread",
    "status_of",
]
