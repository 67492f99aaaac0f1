"""Request and response bodies of the routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from automation_event_gateway.db.tables import EventRow
from automation_event_gateway.registry import EventTypeView
from automation_event_gateway.service import IngestResult, Outcome


class IngestResultOut(BaseModel):
    """What became of one posted event: ``accepted`` (stored, to be published) or ``duplicate``."""

    id: str
    source: str
    event_uuid: uuid.UUID
    status: Outcome

    @classmethod
    def of(cls, result: IngestResult) -> IngestResultOut:
        return cls(id=result.id, source=result.source, event_uuid=result.event_uuid, status=result.status)


class BatchResultOut(BaseModel):
    """Per-event results of a batch, in the order sent."""

    items: list[IngestResultOut]
    accepted: int
    duplicates: int


class EventOut(BaseModel):
    """A kept event: its CloudEvents attributes, plus the gateway's ``event_uuid``, ``received_at`` and ``origin``."""

    event_uuid: uuid.UUID
    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str | None
    time: datetime | None
    datacontenttype: str | None
    dataschema: str | None
    data: Any = None
    data_base64: str | None
    extensions: dict[str, str | int | bool]
    received_at: datetime
    origin: Literal["http", "amqp"]

    @classmethod
    def of(cls, row: EventRow) -> EventOut:
        return cls(
            event_uuid=row.uuid,
            id=row.id,
            source=row.source,
            type=row.type,
            subject=row.subject,
            time=row.time,
            datacontenttype=row.datacontenttype,
            dataschema=row.dataschema,
            data=row.data,
            data_base64=row.data_base64,
            extensions=row.extensions,
            received_at=row.received_at,
            origin="amqp" if row.origin == "amqp" else "http",
        )


class EventListOut(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class EventTypeIn(BaseModel):
    """A type's registration: a description and the JSON Schema (2020-12) its ``data`` must match."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    json_schema: Any = Field(alias="schema", description="A JSON Schema (draft 2020-12) for the type's data.")


class EventTypeOut(BaseModel):
    """A type; ``builtin`` ones are the platform's own (read-only, from proto-schemas/)."""

    type: str
    description: str | None
    json_schema: Any = Field(serialization_alias="schema")
    builtin: bool
    version: int | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, view: EventTypeView) -> EventTypeOut:
        return cls(
            type=view.type,
            description=view.description,
            json_schema=view.schema,
            builtin=view.builtin,
            version=view.version,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class EventTypeListOut(BaseModel):
    items: list[EventTypeOut]
    next_cursor: str | None
