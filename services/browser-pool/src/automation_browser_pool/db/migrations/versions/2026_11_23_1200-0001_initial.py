"""initial: tasks and artifacts

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "browser_pool"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("outputs", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("action_count", sa.Integer(), nullable=False),
        sa.Column("duration_seconds", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'error')", name="ck_tasks_status"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        schema=SCHEMA,
    )
    op.create_index("ix_tasks_execution_id", "tasks", ["execution_id"], schema=SCHEMA)
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"], schema=SCHEMA)
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.Column("action_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("kind IN ('screenshot', 'pdf')", name="ck_artifacts_kind"),
        sa.CheckConstraint("size_bytes >= 0", name="ck_artifacts_size_bytes"),
        sa.ForeignKeyConstraint(
            ["task_id"], [f"{SCHEMA}.tasks.id"], name="fk_artifacts_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        schema=SCHEMA,
    )
    op.create_index("ix_artifacts_task_id", "artifacts", ["task_id"], schema=SCHEMA)
    op.create_index("ix_artifacts_execution_id", "artifacts", ["execution_id"], schema=SCHEMA)
    op.create_index("ix_artifacts_created_at", "artifacts", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("artifacts", schema=SCHEMA)
    op.drop_table("tasks", schema=SCHEMA)
