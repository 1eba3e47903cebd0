"""Bodies of the subject-mapping and Fides endpoints (pydantic: they make the OpenAPI schema).

The webhook body follows Fides' ``SecondPartyRequestFormat`` (fides.api.models.privacy_request
.webhook, ethyca-fides 2.78): ``privacy_request_id``, ``privacy_request_status``, ``direction``,
``callback_type``, ``identity`` (``email``, ``phone_number``, ``external_id``, ... and custom
identities as ``{"label", "value"}``), ``policy_action``; newer Fides also sends
``privacy_request`` and ``timestamp``. Unknown fields are accepted and ignored (Fides adds
fields between versions); the answer is Fides' ``SecondPartyResponseFormat``
(``derived_identity``, ``halt``) plus a ``lethe`` object Fides ignores.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FidesIdentity",
    "FidesOutcome",
    "FidesReply",
    "FidesResumeReport",
    "FidesWebhookBody",
    "SubjectBody",
    "SubjectOut",
]

_IDENTITY_TYPE = r"^[A-Za-z][A-Za-z0-9_]{0,39}$"


class SubjectBody(BaseModel):
    """Map a data subject to the classes of a model that hold their data (training time)."""

    model_config = ConfigDict(extra="forbid")

    identity_type: str = Field(default="email", pattern=_IDENTITY_TYPE)
    #: The identity (an e-mail address, an E.164 phone number, an external id): only its keyed
    #: commitment is stored. It travels only in the body, never in a URL.
    value: str = Field(min_length=1, max_length=1024)
    model: str | None = Field(default=None, min_length=1, max_length=100)
    classes: list[int | str] = Field(min_length=1, max_length=1000)
    #: Replace the classes mapped before (default: add to them).
    replace: bool = False


class SubjectOut(BaseModel):
    commitment: str
    identity_type: str
    model: str
    classes: list[int]
    class_names: list[str]
    created: bool


class FidesIdentity(BaseModel):
    """Fides' ``Identity``: known identities of the data subject (custom ones as extra
    fields, ``{"label": ..., "value": ...}``)."""

    model_config = ConfigDict(extra="allow")

    email: str | None = Field(default=None, max_length=1024)
    phone_number: str | None = Field(default=None, max_length=64)


class FidesWebhookBody(BaseModel):
    """Fides' policy webhook request (``SecondPartyRequestFormat``)."""

    model_config = ConfigDict(extra="allow")

    privacy_request_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    privacy_request_status: str | None = Field(default=None, max_length=64)
    direction: Literal["one_way", "two_way"]
    callback_type: Literal["pre", "post", "pre_approval"]
    identity: FidesIdentity
    policy_action: Literal["access", "erasure", "consent", "update"] | None = None


class FidesOutcome(BaseModel):
    """What Lethe did with a Fides privacy request (never an identity, never the token)."""

    privacy_request_id: str
    #: halted | resuming | resumed | resume_failed | rejected | not_halted | unmapped
    status: str
    request_ids: list[str]
    detail: str
    resumed_at: str | None = None
    attempts: int = 0
    last_error: str | None = None


class FidesReply(BaseModel):
    """Fides' ``SecondPartyResponseFormat`` (``derived_identity`` is always empty: Lethe derives
    no identities), plus ``lethe``, which Fides ignores."""

    derived_identity: dict[str, Any] = Field(default_factory=dict)
    halt: bool
    lethe: FidesOutcome


class FidesResumeReport(BaseModel):
    """One pass of the resumer: Fides privacy requests by what happened to them."""

    resumed: list[str]
    waiting: list[str]
    failed: list[str]
    rejected: list[str]
