"""Settings of the event-gateway (environment variables ``AUTOMATION_*``)."""

from __future__ import annotations

from pydantic import Field

from automation_core.settings import ServiceSettings


class EventGatewaySettings(ServiceSettings):
    """The shared service settings plus the gateway's own limits.

    - ``AUTOMATION_EVENTS_MAX_BODY_BYTES``: largest accepted ``POST /api/v1/events`` body (413 beyond).
    - ``AUTOMATION_EVENTS_MAX_BATCH``: most events in one batch-mode request.
    - ``AUTOMATION_EVENTS_RECORD_HISTORY``: consume ``automation.events`` into the history.
    - ``AUTOMATION_EVENTS_TYPE_CACHE_SECONDS``: how long the set of registered type names (used to
      label metrics of consumed events) is cached before it is read again.
    """

    service_name: str = "event-gateway"
    http_port: int = Field(default=8004, ge=1, le=65535)
    events_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    events_max_batch: int = Field(default=100, ge=1, le=10_000)
    events_record_history: bool = True
    events_type_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
