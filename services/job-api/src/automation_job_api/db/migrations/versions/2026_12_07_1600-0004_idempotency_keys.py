"""job-api: the Idempotency-Key of a manual run, unique per job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 16:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("executions", sa.Column("idempotency_key", sa.Text(), nullable=True), schema="job_api")
    op.add_column("executions", sa.Column("idempotency_fingerprint", sa.Text(), nullable=True), schema="job_api")
    op.create_index(
        "uq_executions_job_id_idempotency_key",
        "executions",
        ["job_id", "idempotency_key"],
        unique=True,
        schema="job_api",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_executions_job_id_idempotency_key", table_name="executions", schema="job_api")
    op.drop_column("executions", "idempotency_fingerprint", schema="job_api")
    op.drop_column("executions", "idempotency_key", schema="job_api")
