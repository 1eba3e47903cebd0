"""The service's errors (defined with the client, which raises them again from problems)."""

from lethe._client._errors import (
    AuthenticationError,
    ClientError,
    ForbiddenError,
    RateLimitedError,
    ServiceError,
    TokenError,
)

__all__ = [
    "AuthenticationError",
    "ClientError",
    "ForbiddenError",
    "RateLimitedError",
    "ServiceError",
    "TokenError",
]
