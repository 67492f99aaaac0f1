"""Bodies of the dead letters API (admin only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from automation_contracts.primitives import Instant
from automation_job_api.db.tables import DeadLetter
from automation_job_api.domain.dead_letters import body_base64, body_text


class DeadLetterOut(BaseModel):
    """A stored dead letter: where it was dead-lettered from, why, when and by whom."""

    id: uuid.UUID
    message_id: str = Field(description="The AMQP message id (sha256:<hex of the body> when it had none).")
    routing_key: str = Field(description="The routing key it reached automation.dead with.")
    original_exchange: str = Field(description="The exchange it was published to ('' is the default exchange).")
    original_queue: str = Field(description="The queue it was dead-lettered from.")
    original_routing_key: str
    reason: str = Field(description="x-dead-letter-reason, or RabbitMQ's own reason (delivery_limit, expired...).")
    content_type: str | None
    message_type: str | None
    body_size: int = Field(description="Size of the body in bytes.")
    dead_lettered_at: datetime
    dead_lettered_by: str = Field(description="The service that dead-lettered it, or rabbitmq.")
    received_at: datetime = Field(description="When job-api took it off automation.dead.")
    requeued_at: datetime | None = Field(description="When it was last requeued.")
    requeue_count: int

    @classmethod
    def of(cls, row: DeadLetter) -> DeadLetterOut:
        return cls.model_validate(_fields(row))


class DeadLetterDetail(DeadLetterOut):
    """A stored dead letter with its headers and body."""

    headers: dict[str, Any] = Field(description="Its AMQP headers as received (JSON-safe).")
    body_text: str | None = Field(description="The body as text when it is UTF-8, else null.")
    body_base64: str = Field(description="The body in base64, always.")

    @classmethod
    def of(cls, row: DeadLetter) -> DeadLetterDetail:
        return cls.model_validate(
            _fields(row)
            | {"headers": row.headers, "body_text": body_text(row.body), "body_base64": body_base64(row.body)}
        )


def _fields(row: DeadLetter) -> dict[str, Any]:
    names = set(DeadLetterOut.model_fields) - {"body_size"}
    return {name: getattr(row, name) for name in names} | {"body_size": len(row.body)}


class DeadLetterList(BaseModel):
    """A page of dead letters, newest dead-lettered first."""

    items: list[DeadLetterOut]
    next_cursor: str | None


class PurgeRequest(BaseModel):
    """Which dead letters to forget: all, or those of one original queue and/or dead-lettered before a time."""

    model_config = ConfigDict(extra="forbid")

    original_queue: Annotated[str, Field(min_length=1)] | None = None
    before: Instant | None = None


class PurgeResult(BaseModel):
    """How many dead letters were deleted."""

    purged: int
