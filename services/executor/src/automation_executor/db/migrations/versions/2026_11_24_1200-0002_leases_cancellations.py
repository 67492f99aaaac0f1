"""leases, released/cancelled attempts, cancellations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "executor"
STATUSES_0001 = "status IN ('running', 'succeeded', 'failed', 'timed_out', 'lost')"
STATUSES_0002 = "status IN ('running', 'released', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost')"


def upgrade() -> None:
    op.add_column("attempts", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA)
    op.add_column(
        "attempts", sa.Column("run_count", sa.Integer(), server_default=sa.text("1"), nullable=False), schema=SCHEMA
    )
    op.add_column(
        "attempts",
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema=SCHEMA,
    )
    op.drop_constraint(op.f("ck_attempts_status"), "attempts", schema=SCHEMA, type_="check")
    op.create_check_constraint(op.f("ck_attempts_status"), "attempts", STATUSES_0002, schema=SCHEMA)
    op.create_index(
        "ix_attempts_running_lease",
        "attempts",
        ["lease_expires_at"],
        unique=False,
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "cancellations",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_cancellations")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_cancellations_requested_at"), "cancellations", ["requested_at"], unique=False, schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cancellations_requested_at"), table_name="cancellations", schema=SCHEMA)
    op.drop_table("cancellations", schema=SCHEMA)
    op.drop_index("ix_attempts_running_lease", table_name="attempts", schema=SCHEMA)
    op.execute(
        "UPDATE executor.attempts SET status = CASE status WHEN 'cancelled' THEN 'failed' ELSE 'running' END"
        " WHERE status IN ('cancelled', 'released')"
    )
    op.drop_constraint(op.f("ck_attempts_status"), "attempts", schema=SCHEMA, type_="check")
    op.create_check_constraint(op.f("ck_attempts_status"), "attempts", STATUSES_0001, schema=SCHEMA)
    op.drop_column("attempts", "request", schema=SCHEMA)
    op.drop_column("attempts", "run_count", schema=SCHEMA)
    op.drop_column("attempts", "lease_expires_at", schema=SCHEMA)
