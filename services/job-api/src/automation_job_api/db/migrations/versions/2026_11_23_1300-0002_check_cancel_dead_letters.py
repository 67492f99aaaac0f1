"""job-api: check steps, cancellation requests, and the dead letters store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("jobs", sa.Column("check_step", JSONB, nullable=True), schema="job_api")
    op.add_column("job_versions", sa.Column("check_step", JSONB, nullable=True), schema="job_api")
    op.add_column(
        "executions", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True), schema="job_api"
    )
    op.add_column("executions", sa.Column("cancel_reason", sa.Text(), nullable=True), schema="job_api")
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("original_exchange", sa.Text(), nullable=False),
        sa.Column("original_queue", sa.Text(), nullable=False),
        sa.Column("original_routing_key", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("message_type", sa.Text(), nullable=True),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dead_lettered_by", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requeue_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "message_id",
            "original_queue",
            "dead_lettered_at",
            name=op.f("uq_dead_letters_message_id_original_queue_dead_lettered_at"),
        ),
        schema="job_api",
    )
    op.create_index(
        op.f("ix_dead_letters_dead_lettered_at_id"),
        "dead_letters",
        ["dead_lettered_at", "id"],
        unique=False,
        schema="job_api",
    )
    op.create_index(
        op.f("ix_dead_letters_original_queue_dead_lettered_at"),
        "dead_letters",
        ["original_queue", "dead_lettered_at"],
        unique=False,
        schema="job_api",
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dead_letters_original_queue_dead_lettered_at"), table_name="dead_letters", schema="job_api")
    op.drop_index(op.f("ix_dead_letters_dead_lettered_at_id"), table_name="dead_letters", schema="job_api")
    op.drop_table("dead_letters", schema="job_api")
    op.drop_column("executions", "cancel_reason", schema="job_api")
    op.drop_column("executions", "cancel_requested_at", schema="job_api")
    op.drop_column("job_versions", "check_step", schema="job_api")
    op.drop_column("jobs", "check_step", schema="job_api")
