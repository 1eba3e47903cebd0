"""The service's errors (defined with the client, which raises them again from problems)."""

from lethe._client._errors import (
    AuthenticationError,
    ClientError,
    FidesError,
    FidesNotConfiguredError,
    ForbiddenError,
    RateLimitedError,
    ServiceError,
    TokenError,
)

__all__ = [
    "AuthenticationError",
    "ClientError",
    "FidesError",
    "FidesNotConfiguredError",
    "ForbiddenError",
    "RateLimitedError",
    "ServiceError",
    "TokenError",
]
