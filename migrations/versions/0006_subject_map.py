"""Subject mapping (commitment -> classes per model) and Fides privacy requests (webhook).

Revision ID: 0006_subject_map
Revises: 0005_model_versions
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_subject_map"
down_revision: str | Sequence[str] | None = "0005_model_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wf_subject_map",
        sa.Column("commitment", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("registered_by", sa.String(length=200), nullable=True),
        sa.Column("registered_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"], ["wf_models.name"], name=op.f("fk_wf_subject_map_model_name_wf_models")
        ),
        sa.PrimaryKeyConstraint("commitment", "model_name", name=op.f("pk_wf_subject_map")),
    )
    op.create_table(
        "wf_fides_requests",
        sa.Column("privacy_request_id", sa.String(length=200), nullable=False),
        sa.Column("filed_by", sa.String(length=200), nullable=False),
        sa.Column("request_ids", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reply_to", sa.Text(), nullable=True),
        sa.Column("reply_token", sa.LargeBinary(), nullable=True),
        sa.Column("received_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.Column("resumed_at", _UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('halted', 'resuming', 'resumed', 'resume_failed', 'rejected', "
            "'not_halted', 'unmapped')",
            name=op.f("ck_wf_fides_requests_status_known"),
        ),
        sa.PrimaryKeyConstraint("privacy_request_id", name=op.f("pk_wf_fides_requests")),
    )
    with op.batch_alter_table("wf_fides_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wf_fides_requests_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wf_fides_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wf_fides_requests_status"))
    op.drop_table("wf_fides_requests")
    op.drop_table("wf_subject_map")
