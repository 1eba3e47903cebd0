"""Principals and roles: API tokens (hash only) and who filed / decided / applied / shredded.

Revision ID: 0004_principals
Revises: 0003_erase_phase
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_principals"
down_revision: str | Sequence[str] | None = "0003_erase_phase"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wf_tokens",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("revoked_at", _UTC, nullable=True),
        sa.CheckConstraint(
            "role IN ('app', 'dpo', 'operator', 'auditor')", name=op.f("ck_wf_tokens_role_known")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_wf_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_wf_tokens_token_hash")),
    )
    with op.batch_alter_table("wf_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("filed_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("filed_by_role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("decided_by_role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("shredded_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("shredded_by_role", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_wf_requests_filed_by"), ["filed_by"], unique=False)
    with op.batch_alter_table("wf_applies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("applied_by_role", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wf_applies", schema=None) as batch_op:
        batch_op.drop_column("applied_by_role")
        batch_op.drop_column("applied_by")
    with op.batch_alter_table("wf_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wf_requests_filed_by"))
        batch_op.drop_column("shredded_by_role")
        batch_op.drop_column("shredded_by")
        batch_op.drop_column("decided_by_role")
        batch_op.drop_column("filed_by_role")
        batch_op.drop_column("filed_by")
    op.drop_table("wf_tokens")
