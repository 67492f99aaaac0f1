"""job-api: the scheduler's policy fields of a job (start/end, DST, misfire, overlap, max runs, triggers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column(
            "policies",
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        schema="job_api",
    )


def downgrade() -> None:
    op.drop_column("jobs", "policies", schema="job_api")
