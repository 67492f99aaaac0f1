"""SQL of the gateway, one small class per table, each working inside the caller's session."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import literal, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from automation_contracts import CloudEvent
from automation_event_gateway.db.tables import EventRow, EventTypeRow, event_types, events
from automation_event_gateway.domain.cursor import EventCursor
from automation_event_gateway.domain.query import EventFilter


class EventRepository:
    """The ``events`` table."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert(self, event: CloudEvent, *, origin: str, producer: str | None) -> uuid.UUID | None:
        """Store ``event`` unless (source, id) is already kept; its new uuid, or None for a duplicate."""
        stmt = (
            insert(events)
            .values(
                uuid=uuid.uuid4(),
                id=event.id,
                source=event.source,
                type=event.type,
                subject=event.subject,
                time=event.time,
                datacontenttype=event.datacontenttype,
                dataschema=event.dataschema,
                data=event.data,
                data_base64=event.data_base64,
                extensions=event.extensions,
                origin=origin,
                producer=producer,
            )
            .on_conflict_do_nothing(index_elements=[events.c.source, events.c.id])
            .returning(events.c.uuid)
        )
        result: uuid.UUID | None = (await self._session.execute(stmt)).scalar_one_or_none()
        return result

    async def uuid_of(self, source: str, event_id: str) -> uuid.UUID:
        """The uuid of the kept event (source, id)."""
        stmt = select(EventRow.uuid).where(EventRow.source == source, EventRow.id == event_id)
        found: uuid.UUID = (await self._session.execute(stmt)).scalar_one()
        return found

    async def get(self, event_uuid: uuid.UUID) -> EventRow | None:
        return await self._session.get(EventRow, event_uuid)

    async def list(self, where: EventFilter, *, after: EventCursor | None, limit: int) -> Sequence[EventRow]:
        """Newest first (by ``received_at``, then ``uuid``), at most ``limit`` rows after the cursor."""
        stmt = select(EventRow)
        if where.type is not None:
            if where.type.is_exact:
                stmt = stmt.where(EventRow.type == where.type.text)
            else:
                stmt = stmt.where(literal(".").concat(EventRow.type).regexp_match(where.type.regex))
        if where.source is not None:
            stmt = stmt.where(EventRow.source == where.source)
        if where.subject is not None:
            stmt = stmt.where(EventRow.subject == where.subject)
        if where.since is not None:
            stmt = stmt.where(EventRow.received_at >= where.since)
        if where.until is not None:
            stmt = stmt.where(EventRow.received_at < where.until)
        if after is not None:
            stmt = stmt.where(tuple_(EventRow.received_at, EventRow.uuid) < tuple_(after.received_at, after.uuid))
        stmt = stmt.order_by(EventRow.received_at.desc(), EventRow.uuid.desc()).limit(limit)
        return (await self._session.scalars(stmt)).all()


class EventTypeRepository:
    """The ``event_types`` table."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, event_type: str) -> EventTypeRow | None:
        return await self._session.get(EventTypeRow, event_type)

    async def for_types(self, names: Collection[str]) -> Sequence[EventTypeRow]:
        """The registered types among ``names``."""
        if not names:
            return []
        return (await self._session.scalars(select(EventTypeRow).where(EventTypeRow.type.in_(names)))).all()

    async def names(self) -> set[str]:
        return set((await self._session.scalars(select(EventTypeRow.type))).all())

    async def upsert(self, event_type: str, *, description: str | None, schema: Any) -> tuple[EventTypeRow, bool]:
        """Register or replace a type (replacing bumps ``version``); the row, and whether it was created."""
        values = insert(event_types).values(type=event_type, description=description, schema=schema)
        stmt = values.on_conflict_do_update(
            index_elements=[event_types.c.type],
            set_={
                "description": values.excluded.description,
                "schema": values.excluded.schema,
                "version": event_types.c.version + 1,
                "updated_at": literal_column("now()"),
            },
        ).returning(*event_types.c, literal_column("xmax = 0").label("created"))
        row = (await self._session.execute(stmt)).one()
        created = bool(row.created)
        model = EventTypeRow(
            type=row.type,
            description=row.description,
            schema=row.schema,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        return model, created

    async def list(self, *, after: str | None, limit: int) -> Sequence[EventTypeRow]:
        """Ordered by type name, at most ``limit`` after ``after``."""
        name = EventTypeRow.type.collate("C")  # code-point order, as Python sorts the platform's types
        stmt = select(EventTypeRow).order_by(name).limit(limit)
        if after is not None:
            stmt = stmt.where(name > after)
        return (await self._session.scalars(stmt)).all()
