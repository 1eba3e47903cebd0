"""Deletion workflow: registered models, requests, subject-commitment keys, applies.

Revision ID: 0002_workflow
Revises: 0001_audit_log
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_workflow"
down_revision: str | Sequence[str] | None = "0001_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wf_models",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("class_names", sa.Text(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("base_digest", sa.String(length=64), nullable=False),
        sa.Column("eval_data_path", sa.Text(), nullable=False),
        sa.Column("eval_data_digest", sa.String(length=64), nullable=False),
        sa.Column("train_data_path", sa.Text(), nullable=True),
        sa.Column("train_data_digest", sa.String(length=64), nullable=True),
        sa.Column("bank_path", sa.Text(), nullable=True),
        sa.Column("bank_digest", sa.String(length=64), nullable=True),
        sa.Column("base_onnx_path", sa.Text(), nullable=True),
        sa.Column("base_onnx_sha256", sa.String(length=64), nullable=True),
        sa.Column("current_apply_id", sa.String(length=64), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_wf_models")),
    )
    op.create_table(
        "wf_applies",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forgotten_classes", sa.Text(), nullable=False),
        sa.Column("request_ids", sa.Text(), nullable=False),
        sa.Column("folded_digest", sa.String(length=64), nullable=False),
        sa.Column("bank_digest", sa.String(length=64), nullable=False),
        sa.Column("onnx_sha256", sa.String(length=64), nullable=True),
        sa.Column("onnx_content_hash", sa.String(length=80), nullable=True),
        sa.Column("artifact_dir", sa.Text(), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('applied', 'failed')", name=op.f("ck_wf_applies_outcome_known")
        ),
        sa.ForeignKeyConstraint(
            ["model_name"], ["wf_models.name"], name=op.f("fk_wf_applies_model_name_wf_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wf_applies")),
    )
    with op.batch_alter_table("wf_applies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wf_applies_model_name"), ["model_name"], unique=False)

    op.create_table(
        "wf_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("subject_commitment", sa.String(length=80), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("apply_id", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_index", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'approved', 'rejected', 'applied', 'failed', 'superseded')",
            name=op.f("ck_wf_requests_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["model_name"], ["wf_models.name"], name=op.f("fk_wf_requests_model_name_wf_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wf_requests")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_wf_requests_idempotency_key")),
    )
    with op.batch_alter_table("wf_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wf_requests_model_name"), ["model_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_wf_requests_status"), ["status"], unique=False)

    op.create_table(
        "wf_subject_keys",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["wf_requests.id"],
            name=op.f("fk_wf_subject_keys_request_id_wf_requests"),
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_wf_subject_keys")),
    )


def downgrade() -> None:
    op.drop_table("wf_subject_keys")
    with op.batch_alter_table("wf_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wf_requests_status"))
        batch_op.drop_index(batch_op.f("ix_wf_requests_model_name"))

    op.drop_table("wf_requests")
    with op.batch_alter_table("wf_applies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wf_applies_model_name"))

    op.drop_table("wf_applies")
    op.drop_table("wf_models")
