"""The parameters of each job version's scheduled runs, resolved once.

- ``schedules.run_parameters``: the defaults of the job's parameters schema, resolved and validated
  when the version is applied (``automation_contracts.parameters``), so the fire loop does not resolve
  the schema again for a schedule that is not in its in-memory cache (every fire, with a million
  schedules). Null for a job without a schedule, or for rows written before this revision (the fire
  loop then resolves them itself).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:00:00+00:00
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
        "schedules",
        sa.Column("run_parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="scheduler",
    )


def downgrade() -> None:
    op.drop_column("schedules", "run_parameters", schema="scheduler")
