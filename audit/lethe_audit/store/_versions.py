"""Model versions (migration 0005): which requests of an older model a newer one covers.

A model registered with ``supersedes`` inherits every standing deletion of its predecessor
(approved or applied requests, and what the predecessor itself inherited). Each inherited
request is pending for the new model until a row here says it was ``applied`` to it (an apply
of the new model folded and verified its classes) or ``attested`` (the user attested that the
new model was trained without those classes, and Lethe measured that it does not recognise
them). The request's own ``status`` stays its status for the model it was filed for.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lethe_audit.store._models import Base

__all__ = ["COVERAGE_STATUSES", "CoverageRow"]

#: ``applied``: an apply of the newer model covered the request; ``attested``: the newer model
#: was attested (and measured) to have been trained without the request's classes.
COVERAGE_STATUSES = ("applied", "attested")


class CoverageRow(Base):
    """One inherited request as a newer model covers it (absent row: still pending)."""

    __tablename__ = "wf_coverage"
    __table_args__ = (
        CheckConstraint(
            "status IN ('applied', 'attested')",
            name="status_known",
        ),
    )

    request_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("wf_requests.id"), primary_key=True
    )
    model_name: Mapped[str] = mapped_column(
        String(100), ForeignKey("wf_models.name"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    #: The apply of ``model_name`` that covered it (``applied``).
    apply_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Why the user attested the model was trained without the classes (``attested``).
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The log entry that recorded the coverage (the apply's attestation or the attest event).
    log_index: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
