"""Initial scheduler schema: schedules, fires and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fires",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("nominal_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("outcome IN ('fired', 'missed')", name=op.f("ck_fires_outcome")),
        sa.PrimaryKeyConstraint("job_id", "nominal_time", name=op.f("pk_fires")),
        schema="scheduler",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="scheduler",
    )
    op.create_table(
        "schedules",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("expression", sa.Text(), nullable=True),
        sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False),
        sa.Column("anchor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('active', 'paused', 'no_schedule', 'deleted')", name=op.f("ck_schedules_state")),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_schedules")),
        schema="scheduler",
    )
    op.create_index(op.f("ix_schedules_account_id"), "schedules", ["account_id"], unique=False, schema="scheduler")
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        unique=False,
        schema="scheduler",
        postgresql_where=sa.text("state = 'active' AND next_fire_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_schedules_due",
        table_name="schedules",
        schema="scheduler",
        postgresql_where=sa.text("state = 'active' AND next_fire_at IS NOT NULL"),
    )
    op.drop_index(op.f("ix_schedules_account_id"), table_name="schedules", schema="scheduler")
    op.drop_table("schedules", schema="scheduler")
    op.drop_table("outbox", schema="scheduler")
    op.drop_table("fires", schema="scheduler")
