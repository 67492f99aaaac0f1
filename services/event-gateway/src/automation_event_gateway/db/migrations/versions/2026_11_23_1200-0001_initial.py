"""Initial schema: event history, registered event types, outbox.

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

SCHEMA = "event_gateway"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("datacontenttype", sa.Text(), nullable=True),
        sa.Column("dataschema", sa.Text(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("data_base64", sa.Text(), nullable=True),
        sa.Column(
            "extensions", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("producer", sa.Text(), nullable=True),
        sa.CheckConstraint("origin IN ('http', 'amqp')", name=op.f("ck_events_origin")),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "id", name=op.f("uq_events_source_id")),
        schema=SCHEMA,
    )
    op.create_index("ix_events_received_at_uuid", "events", ["received_at", "uuid"], unique=False, schema=SCHEMA)
    op.create_index("ix_events_type_received_at", "events", ["type", "received_at"], unique=False, schema=SCHEMA)
    op.create_table(
        "event_types",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("schema", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("type", name=op.f("pk_event_types")),
        schema=SCHEMA,
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
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("event_types", schema=SCHEMA)
    op.drop_index("ix_events_type_received_at", table_name="events", schema=SCHEMA)
    op.drop_index("ix_events_received_at_uuid", table_name="events", schema=SCHEMA)
    op.drop_table("events", schema=SCHEMA)
