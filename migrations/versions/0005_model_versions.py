"""Model versions that keep their deletions: a model's predecessor, and per-(request, model)
coverage (a request of the old model applied to, or attested absent from, a newer one).

Revision ID: 0005_model_versions
Revises: 0004_principals
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_model_versions"
down_revision: str | Sequence[str] | None = "0004_principals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("wf_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("supersedes", sa.String(length=100), nullable=True))
    op.create_table(
        "wf_coverage",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("apply_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.CheckConstraint(
            "status IN ('applied', 'attested')", name=op.f("ck_wf_coverage_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["wf_requests.id"], name=op.f("fk_wf_coverage_request_id_wf_requests")
        ),
        sa.ForeignKeyConstraint(
            ["model_name"], ["wf_models.name"], name=op.f("fk_wf_coverage_model_name_wf_models")
        ),
        sa.PrimaryKeyConstraint("request_id", "model_name", name=op.f("pk_wf_coverage")),
    )


def downgrade() -> None:
    op.drop_table("wf_coverage")
    with op.batch_alter_table("wf_models", schema=None) as batch_op:
        batch_op.drop_column("supersedes")
