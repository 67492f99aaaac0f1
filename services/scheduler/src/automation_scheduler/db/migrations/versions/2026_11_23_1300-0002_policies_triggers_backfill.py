"""Policies, event triggers and backfill.

- ``fires``: the trigger (``schedule`` or ``backfill``) joins the primary key, so a backfill of a slot is
  recorded beside the slot's scheduled outcome; a reason and a backfill id; the outcomes ``skipped``,
  ``coalesced``, ``paused``, ``dropped`` and ``backfill``. Slots recorded as ``missed`` by revision 0001
  were coalesced into a later fire (its only misfire policy), so they become ``coalesced``. A BRIN index
  on ``recorded_at`` serves the retention cleanup.
- ``schedules``: state ``completed``, the ``max_runs`` counter and the start of a pause.
- New tables ``running``, ``triggers``, ``trigger_bindings``, ``event_fires``, ``backfills`` and
  ``backfill_runs``.

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

OUTCOMES = "outcome IN ('fired', 'skipped', 'missed', 'coalesced', 'paused', 'dropped', 'backfill')"
STATES = "state IN ('active', 'paused', 'no_schedule', 'deleted', 'completed')"
OLD_STATES = "state IN ('active', 'paused', 'no_schedule', 'deleted')"


def upgrade() -> None:
    op.create_table(
        "backfill_runs",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("backfill_id", sa.Uuid(), nullable=False),
        sa.Column("nominal_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'released', 'succeeded', 'failed')", name=op.f("ck_backfill_runs_state")
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_backfill_runs")),
        schema="scheduler",
    )
    op.create_index(
        "ix_backfill_runs_queue",
        "backfill_runs",
        ["backfill_id", "state", "nominal_time"],
        unique=False,
        schema="scheduler",
    )
    op.create_table(
        "backfills",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("from_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("to_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("released", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("succeeded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfills")),
        schema="scheduler",
    )
    op.create_index(op.f("ix_backfills_job_id"), "backfills", ["job_id"], unique=False, schema="scheduler")
    op.create_table(
        "event_fires",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("outcome IN ('fired', 'skipped', 'rate_limited')", name=op.f("ck_event_fires_outcome")),
        sa.PrimaryKeyConstraint("job_id", "event_id", name=op.f("pk_event_fires")),
        schema="scheduler",
    )
    op.create_index(
        "ix_event_fires_job_recent",
        "event_fires",
        ["job_id", "position", "recorded_at"],
        unique=False,
        schema="scheduler",
    )
    op.create_index(
        "ix_event_fires_recorded_at",
        "event_fires",
        ["recorded_at"],
        unique=False,
        schema="scheduler",
        postgresql_using="brin",
    )
    op.create_table(
        "running",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_running")),
        schema="scheduler",
    )
    op.create_index(op.f("ix_running_job_id"), "running", ["job_id"], unique=False, schema="scheduler")
    op.create_table(
        "trigger_bindings",
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("pattern", name=op.f("pk_trigger_bindings")),
        schema="scheduler",
    )
    op.create_table(
        "triggers",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("head", sa.Text(), nullable=True),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_per_minute", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "position", name=op.f("pk_triggers")),
        schema="scheduler",
    )
    op.create_index(op.f("ix_triggers_head"), "triggers", ["head"], unique=False, schema="scheduler")
    op.add_column(
        "fires", sa.Column("trigger", sa.Text(), server_default="schedule", nullable=False), schema="scheduler"
    )
    op.add_column("fires", sa.Column("reason", sa.Text(), nullable=True), schema="scheduler")
    op.add_column("fires", sa.Column("backfill_id", sa.Uuid(), nullable=True), schema="scheduler")
    op.create_index(
        "ix_fires_recorded_at", "fires", ["recorded_at"], unique=False, schema="scheduler", postgresql_using="brin"
    )
    op.add_column(
        "schedules",
        sa.Column("runs_fired", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="scheduler",
    )
    op.add_column("schedules", sa.Column("paused_from", sa.DateTime(timezone=True), nullable=True), schema="scheduler")
    op.drop_constraint(op.f("pk_fires"), "fires", type_="primary", schema="scheduler")
    op.create_primary_key(op.f("pk_fires"), "fires", ["job_id", "nominal_time", "trigger"], schema="scheduler")
    op.drop_constraint(op.f("ck_fires_outcome"), "fires", type_="check", schema="scheduler")
    op.execute("UPDATE scheduler.fires SET outcome = 'coalesced' WHERE outcome = 'missed'")
    op.create_check_constraint(op.f("ck_fires_outcome"), "fires", OUTCOMES, schema="scheduler")
    op.create_check_constraint(
        op.f("ck_fires_trigger"), "fires", "trigger IN ('schedule', 'backfill')", schema="scheduler"
    )
    op.drop_constraint(op.f("ck_schedules_state"), "schedules", type_="check", schema="scheduler")
    op.create_check_constraint(op.f("ck_schedules_state"), "schedules", STATES, schema="scheduler")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_schedules_state"), "schedules", type_="check", schema="scheduler")
    op.execute("UPDATE scheduler.schedules SET state = 'active' WHERE state = 'completed'")
    op.create_check_constraint(op.f("ck_schedules_state"), "schedules", OLD_STATES, schema="scheduler")
    op.drop_constraint(op.f("ck_fires_trigger"), "fires", type_="check", schema="scheduler")
    op.drop_constraint(op.f("ck_fires_outcome"), "fires", type_="check", schema="scheduler")
    op.execute("DELETE FROM scheduler.fires WHERE trigger = 'backfill'")
    op.execute("UPDATE scheduler.fires SET outcome = 'missed' WHERE outcome <> 'fired'")
    op.create_check_constraint(op.f("ck_fires_outcome"), "fires", "outcome IN ('fired', 'missed')", schema="scheduler")
    op.drop_constraint(op.f("pk_fires"), "fires", type_="primary", schema="scheduler")
    op.create_primary_key(op.f("pk_fires"), "fires", ["job_id", "nominal_time"], schema="scheduler")
    op.drop_column("schedules", "paused_from", schema="scheduler")
    op.drop_column("schedules", "runs_fired", schema="scheduler")
    op.drop_index("ix_fires_recorded_at", table_name="fires", schema="scheduler", postgresql_using="brin")
    op.drop_column("fires", "backfill_id", schema="scheduler")
    op.drop_column("fires", "reason", schema="scheduler")
    op.drop_column("fires", "trigger", schema="scheduler")
    op.drop_index(op.f("ix_triggers_head"), table_name="triggers", schema="scheduler")
    op.drop_table("triggers", schema="scheduler")
    op.drop_table("trigger_bindings", schema="scheduler")
    op.drop_index(op.f("ix_running_job_id"), table_name="running", schema="scheduler")
    op.drop_table("running", schema="scheduler")
    op.drop_index("ix_event_fires_recorded_at", table_name="event_fires", schema="scheduler", postgresql_using="brin")
    op.drop_index("ix_event_fires_job_recent", table_name="event_fires", schema="scheduler")
    op.drop_table("event_fires", schema="scheduler")
    op.drop_index(op.f("ix_backfills_job_id"), table_name="backfills", schema="scheduler")
    op.drop_table("backfills", schema="scheduler")
    op.drop_index("ix_backfill_runs_queue", table_name="backfill_runs", schema="scheduler")
    op.drop_table("backfill_runs", schema="scheduler")
