"""Tables of schema ``event_gateway``: the event history, the registered event types and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CheckConstraint, Index, Integer, Table, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import automation_db
from automation_db import schema_metadata
from automation_messaging import outbox_table

metadata = schema_metadata("event_gateway")
ORIGINS = ("http", "amqp")


class Base(automation_db.Base):
    """Models of the event-gateway schema."""

    __abstract__ = True
    metadata = metadata


class EventRow(Base):
    """One event, kept once per (source, id) whichever way it arrived.

    ``uuid`` is the gateway's own key (``GET /api/v1/events/{uuid}``); ``origin`` says how it was first
    seen (``http``: posted to the gateway; ``amqp``: seen on ``automation.events``); ``producer`` is the
    caller (principal subject) or the AMQP ``app_id`` of the publisher.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "id"),
        CheckConstraint("origin IN ('http', 'amqp')", name="origin"),
        Index("ix_events_received_at_uuid", "received_at", "uuid"),
        Index("ix_events_type_received_at", "type", "received_at"),
    )

    uuid: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    time: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    datacontenttype: Mapped[str | None] = mapped_column(Text)
    dataschema: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSONB(none_as_null=True), nullable=True)
    data_base64: Mapped[str | None] = mapped_column(Text)
    extensions: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    origin: Mapped[str] = mapped_column(Text)
    producer: Mapped[str | None] = mapped_column(Text)


class EventTypeRow(Base):
    """A registered event type and the JSON Schema (2020-12) its data must match.

    ``version`` grows on every replacement, so compiled validators are cached per (type, version).
    """

    __tablename__ = "event_types"

    type: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    schema: Mapped[Any] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


events = cast(Table, EventRow.__table__)
event_types = cast(Table, EventTypeRow.__table__)
outbox = outbox_table(metadata)
