"""Tables of the subject mapping and the Fides integration of ``lethe serve``.

- :class:`SubjectMapRow`: ``subject commitment -> classes`` of one model, registered by the app
  at training time. The commitment is an HMAC under the project's mapping key (kept beside the
  log keys, never in the database), so no identifier is stored.
- :class:`FidesRequestRow`: one Fides privacy request that called the policy webhook: the
  deletion requests filed for it and how to resume it (the reply-to token only encrypted).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lethe_audit.store._models import Base

__all__ = ["FIDES_STATUSES", "FidesRequestRow", "SubjectMapRow"]

#: halted -> resuming -> resumed | resume_failed (or back to halted to retry); rejected: a
#: deletion was rejected, so Lethe does not resume; not_halted / unmapped: nothing to wait for.
FIDES_STATUSES = (
    "halted",
    "resuming",
    "resumed",
    "resume_failed",
    "rejected",
    "not_halted",
    "unmapped",
)

_UTC = DateTime(timezone=True)


class SubjectMapRow(Base):
    """Which classes of ``model_name`` hold the data of the subject behind ``commitment``."""

    __tablename__ = "wf_subject_map"

    #: hex HMAC-SHA256 of the normalised identity under the project's mapping key.
    commitment: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(
        String(100), ForeignKey("wf_models.name"), primary_key=True
    )
    #: Sorted class ids as a JSON list.
    classes: Mapped[str] = mapped_column(Text, nullable=False)
    registered_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    registered_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)


class FidesRequestRow(Base):
    """A Fides privacy request seen by ``POST /v1/fides/webhook``."""

    __tablename__ = "wf_fides_requests"
    __table_args__ = (
        CheckConstraint(
            "status IN ('halted', 'resuming', 'resumed', 'resume_failed', 'rejected', "
            "'not_halted', 'unmapped')",
            name="status_known",
        ),
    )

    privacy_request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: The token (principal) Fides called with; only it (and dpo/operator/auditor) reads this.
    filed_by: Mapped[str] = mapped_column(String(200), nullable=False)
    #: Lethe request ids filed for it, as a JSON list (empty when nothing was mapped).
    request_ids: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    #: The ``reply-to`` path Fides sent (relative to its API base URL).
    reply_to: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The ``reply-to-token``, AES-256-GCM encrypted (nonce + ciphertext) under a key derived
    #: from the mapping key; cleared once the request is resumed.
    reply_token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    received_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)
    resumed_at: Mapped[datetime | None] = mapped_column(_UTC, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
