"""Deep deletion: apply phases (mask / erase), erased requests, depth references.

Revision ID: 0003_erase_phase
Revises: 0002_workflow
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_erase_phase"
down_revision: str | Sequence[str] | None = "0002_workflow"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("wf_applies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phase", sa.String(length=8), server_default="mask", nullable=False)
        )
        batch_op.add_column(sa.Column("starts_from", sa.String(length=64), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f("ck_wf_applies_phase_known"), "phase IN ('mask', 'erase')"
        )
    with op.batch_alter_table("wf_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "wf_references",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("recipe", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("relearn_runs", sa.Text(), nullable=False),
        sa.Column("relearn_steps", sa.Float(), nullable=False),
        sa.Column("seeds", sa.Text(), nullable=False),
        sa.Column("probe_auc", sa.Float(), nullable=True),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"], ["wf_models.name"], name=op.f("fk_wf_references_model_name_wf_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wf_references")),
    )
    with op.batch_alter_table("wf_references", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wf_references_model_name"), ["model_name"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("wf_references", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wf_references_model_name"))
    op.drop_table("wf_references")
    with op.batch_alter_table("wf_requests", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
    with op.batch_alter_table("wf_applies", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_wf_applies_phase_known"), type_="check")
        batch_op.drop_column("starts_from")
        batch_op.drop_column("phase")
