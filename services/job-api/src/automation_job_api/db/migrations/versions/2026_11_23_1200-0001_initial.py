"""job-api initial schema: accounts, api keys, jobs and versions, executions read model, outbox.

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
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
        schema="job_api",
    )
    op.create_table(
        "execution_logs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("entries", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_logs")),
        sa.UniqueConstraint("execution_id", "attempt", "seq", name=op.f("uq_execution_logs_execution_id_attempt_seq")),
        schema="job_api",
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("phase", sa.SmallInteger(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=True),
        sa.Column("parameters", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')",
            name=op.f("ck_executions_status"),
        ),
        sa.CheckConstraint(
            "trigger IN ('schedule', 'manual', 'event', 'backfill')", name=op.f("ck_executions_trigger")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        schema="job_api",
    )
    op.create_index(
        op.f("ix_executions_account_id_created_at_id"),
        "executions",
        ["account_id", "created_at", "id"],
        unique=False,
        schema="job_api",
    )
    op.create_index(
        op.f("ix_executions_job_id_created_at_id"),
        "executions",
        ["job_id", "created_at", "id"],
        unique=False,
        schema="job_api",
    )
    op.create_table(
        "job_versions",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("spec", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "change IN ('created', 'updated', 'enabled', 'disabled', 'deleted')", name=op.f("ck_job_versions_change")
        ),
        sa.PrimaryKeyConstraint("job_id", "version", name=op.f("pk_job_versions")),
        schema="job_api",
    )
    op.create_index(op.f("ix_job_versions_account_id"), "job_versions", ["account_id"], unique=False, schema="job_api")
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
        schema="job_api",
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["job_api.accounts.id"], name=op.f("fk_api_keys_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        schema="job_api",
    )
    op.create_index(
        op.f("ix_api_keys_account_id_created_at"),
        "api_keys",
        ["account_id", "created_at"],
        unique=False,
        schema="job_api",
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("retry_backoff", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=True),
        sa.Column("parameters", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False),
        sa.Column("steps", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["job_api.accounts.id"], name=op.f("fk_jobs_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_jobs_account_id_name")),
        schema="job_api",
    )
    op.create_index(
        op.f("ix_jobs_account_id_created_at_id"),
        "jobs",
        ["account_id", "created_at", "id"],
        unique=False,
        schema="job_api",
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_account_id_created_at_id"), table_name="jobs", schema="job_api")
    op.drop_table("jobs", schema="job_api")
    op.drop_index(op.f("ix_api_keys_account_id_created_at"), table_name="api_keys", schema="job_api")
    op.drop_table("api_keys", schema="job_api")
    op.drop_table("outbox", schema="job_api")
    op.drop_index(op.f("ix_job_versions_account_id"), table_name="job_versions", schema="job_api")
    op.drop_table("job_versions", schema="job_api")
    op.drop_index(op.f("ix_executions_job_id_created_at_id"), table_name="executions", schema="job_api")
    op.drop_index(op.f("ix_executions_account_id_created_at_id"), table_name="executions", schema="job_api")
    op.drop_table("executions", schema="job_api")
    op.drop_table("execution_logs", schema="job_api")
    op.drop_table("accounts", schema="job_api")
