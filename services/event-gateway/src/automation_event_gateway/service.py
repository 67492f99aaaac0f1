"""Use cases of the event history: accepting posted events, recording consumed ones, reading them back.

Accepting a submission is one transaction: the events are stored (once per (source, id)) and the new
ones enqueued in the outbox for ``automation.events`` with their type as routing key; the relay
publishes them after the commit. A submission is all or nothing: one refused event refuses it all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import CloudEvent
from automation_core.auth import Principal
from automation_core.errors import NotFound
from automation_core.logging import get_logger
from automation_event_gateway import metrics
from automation_event_gateway.db.repository import EventRepository, EventTypeRepository
from automation_event_gateway.db.tables import EventRow
from automation_event_gateway.domain.binding import Submission
from automation_event_gateway.domain.cursor import EventCursor
from automation_event_gateway.domain.envelope import check_storable
from automation_event_gateway.domain.errors import EventRejected
from automation_event_gateway.domain.intake import check_data, check_envelopes
from automation_event_gateway.domain.query import EventFilter
from automation_event_gateway.registry import RegisteredNames, ValidatorCache
from automation_messaging import enqueue
from automation_messaging.topology import EVENTS

log = get_logger(__name__)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one submitted event."""

    id: str
    source: str
    event_uuid: uuid.UUID
    status: Outcome


@dataclass(frozen=True, slots=True)
class EventPage:
    items: Sequence[EventRow]
    next_cursor: str | None


class EventService:
    """The gateway's event use cases."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        outbox: Table,
        validators: ValidatorCache,
        names: RegisteredNames,
        wake_relay: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._validators = validators
        self._names = names
        self._wake_relay = wake_relay

    async def submit(self, submission: Submission, principal: Principal) -> list[IngestResult]:
        """Check, store and enqueue for publication every event of ``submission``; EventRejected otherwise."""
        try:
            events = check_envelopes(submission, is_admin=principal.is_admin)
            async with self._sessions.begin() as session:
                rows = await EventTypeRepository(session).for_types({event.type for event in events})
                validators = {row.type: self._validators.get(row) for row in rows}
                check_data(submission, events, validators)
                results, accepted = await self._store(session, events, principal.subject)
                if accepted:
                    await enqueue(session, self._outbox, [(event, EVENTS, event.type) for event in accepted])
        except EventRejected as exc:
            metrics.count_rejected(exc.reason)
            log.info("events_rejected", reason=exc.reason.value, field=exc.field, error=exc.message)
            raise
        metrics.count_ingested((event.type for event in events), validators.keys(), "http")
        metrics.count_stored("http", len(accepted))
        if accepted:
            self._wake_relay()
        log.info("events_accepted", accepted=len(accepted), duplicates=len(results) - len(accepted))
        return results

    async def _store(
        self, session: AsyncSession, events: list[CloudEvent], producer: str
    ) -> tuple[list[IngestResult], list[CloudEvent]]:
        """Insert in (source, id) order, so concurrent overlapping batches cannot deadlock; answer in the order sent."""
        repo = EventRepository(session)
        results: dict[int, IngestResult] = {}
        for index in sorted(range(len(events)), key=lambda i: (events[i].source, events[i].id)):
            event = events[index]
            new_uuid = await repo.insert(event, origin="http", producer=producer)
            if new_uuid is None:
                existing = await repo.uuid_of(event.source, event.id)
                results[index] = IngestResult(event.id, event.source, existing, Outcome.DUPLICATE)
            else:
                results[index] = IngestResult(event.id, event.source, new_uuid, Outcome.ACCEPTED)
        ordered = [results[index] for index in range(len(events))]
        accepted = [event for event, result in zip(events, ordered, strict=True) if result.status is Outcome.ACCEPTED]
        return ordered, accepted

    async def record(self, event: CloudEvent, *, producer: str | None) -> bool:
        """Keep an event seen on ``automation.events``; False when (source, id) was already kept."""
        try:
            check_storable(event)
        except EventRejected as exc:
            metrics.count_rejected(exc.reason)
            raise
        async with self._sessions.begin() as session:
            new_uuid = await EventRepository(session).insert(event, origin="amqp", producer=producer)
        metrics.count_ingested([event.type], await self._names.current(), "amqp")
        metrics.count_stored("amqp", 1 if new_uuid is not None else 0)
        log.debug("event_recorded" if new_uuid is not None else "event_already_recorded", event_type=event.type)
        return new_uuid is not None

    async def get(self, event_uuid: uuid.UUID) -> EventRow:
        async with self._sessions() as session:
            row = await EventRepository(session).get(event_uuid)
        if row is None:
            raise NotFound(f"no event {event_uuid}")
        return row

    async def list(self, where: EventFilter, *, after: EventCursor | None, limit: int) -> EventPage:
        """Newest first; ``next_cursor`` is None on the last page."""
        async with self._sessions() as session:
            rows = await EventRepository(session).list(where, after=after, limit=limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        cursor = EventCursor(page[-1].received_at, page[-1].uuid).encode() if more and page else None
        return EventPage(page, cursor)
