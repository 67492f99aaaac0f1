"""The composition root: the gateway's parts, built once per process from the open runtime."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_event_gateway.consumers import HistoryConsumer
from automation_event_gateway.db.tables import outbox
from automation_event_gateway.registry import EventTypeService, RegisteredNames, ValidatorCache
from automation_event_gateway.service import EventService
from automation_event_gateway.settings import EventGatewaySettings
from automation_messaging import OutboxRelay


@dataclass(frozen=True, slots=True)
class Gateway:
    """Everything the HTTP routes and the consumer use (``app.state.gateway``)."""

    settings: EventGatewaySettings
    events: EventService
    event_types: EventTypeService
    history: HistoryConsumer


def build_gateway(
    settings: EventGatewaySettings, sessions: async_sessionmaker[AsyncSession], relay: OutboxRelay | None
) -> Gateway:
    """Wire the use cases over ``sessions``; posted events wake ``relay`` at commit."""
    names = RegisteredNames(sessions, settings.events_type_cache_seconds)
    events = EventService(
        sessions,
        outbox=outbox,
        validators=ValidatorCache(),
        names=names,
        wake_relay=relay.wake if relay is not None else (lambda: None),
    )
    return Gateway(
        settings=settings,
        events=events,
        event_types=EventTypeService(sessions, names),
        history=HistoryConsumer(events, settings),
    )
