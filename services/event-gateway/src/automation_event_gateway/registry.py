"""The schema registry's use cases and the caches the ingress uses.

Registered types are read from the database when an event is posted (so every replica enforces a
schema as soon as it is registered); compiled validators are cached per (type, version). The set of
registered names, used only to label metrics of consumed events, is cached for a few seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import load_schemas, urn
from automation_contracts.schema_safety import CompiledSchema
from automation_core.errors import InvalidInput, NotFound
from automation_core.logging import get_logger
from automation_event_gateway.db.repository import EventTypeRepository
from automation_event_gateway.db.tables import EventTypeRow
from automation_event_gateway.domain.envelope import PLATFORM_TYPES, is_reserved_type
from automation_event_gateway.domain.routing import routing_key_problem
from automation_event_gateway.domain.schemas import InvalidSchema, check_schema, compile_schema

log = get_logger(__name__)
VALIDATOR_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class EventTypeView:
    """A type as the registry shows it; ``builtin`` types are the platform's, from ``proto-schemas/``."""

    type: str
    description: str | None
    schema: Any
    builtin: bool
    version: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of_row(cls, row: EventTypeRow) -> EventTypeView:
        return cls(row.type, row.description, row.schema, False, row.version, row.created_at, row.updated_at)

    @classmethod
    def builtin_type(cls, event_type: str) -> EventTypeView:
        schema = load_schemas()[urn(event_type)]
        description = schema.get("description") or schema.get("title")
        return cls(event_type, str(description) if description else None, schema, True)


class ValidatorCache:
    """Compiled validators of registered schemas, per (type, version, updated_at), least recently used out."""

    def __init__(self, size: int = VALIDATOR_CACHE_SIZE) -> None:
        self._size = size
        self._cache: OrderedDict[tuple[str, int, datetime], CompiledSchema] = OrderedDict()

    def get(self, row: EventTypeRow) -> CompiledSchema:
        key = (row.type, row.version, row.updated_at)
        validator = self._cache.get(key)
        if validator is None:
            validator = compile_schema(row.type, row.schema)
            self._cache[key] = validator
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return validator


class RegisteredNames:
    """The registered type names, re-read at most every ``ttl`` seconds (metric labels only)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._names: frozenset[str] = frozenset()
        self._loaded_at: float | None = None

    async def current(self) -> frozenset[str]:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._ttl:
            async with self._sessions() as session:
                self._names = frozenset(await EventTypeRepository(session).names())
            self._loaded_at = now
        return self._names

    def add(self, name: str) -> None:
        self._names = self._names | {name}


class EventTypeService:
    """Registering, replacing, reading and listing event types."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], names: RegisteredNames) -> None:
        self._sessions = sessions
        self._names = names

    async def put(self, event_type: str, *, description: str | None, schema: Any) -> tuple[EventTypeView, bool]:
        """Register or replace ``event_type``; the stored type, and whether it was created."""
        problem = routing_key_problem(event_type)
        if problem is not None:
            raise InvalidInput(f"type: {problem}", field="type")
        if is_reserved_type(event_type):
            raise InvalidInput(
                f"{event_type!r} is in a platform namespace; platform schemas live in proto-schemas/", field="type"
            )
        try:
            check_schema(event_type, schema)
        except InvalidSchema as exc:
            raise InvalidInput(f"{exc.field}: {exc.message}", field=exc.field) from exc
        async with self._sessions.begin() as session:
            row, created = await EventTypeRepository(session).upsert(event_type, description=description, schema=schema)
        self._names.add(event_type)
        log.info("event_type_registered" if created else "event_type_replaced", event_type=event_type)
        return EventTypeView.of_row(row), created

    async def get(self, event_type: str) -> EventTypeView:
        if event_type in PLATFORM_TYPES:
            return EventTypeView.builtin_type(event_type)
        async with self._sessions() as session:
            row = await EventTypeRepository(session).get(event_type)
        if row is None:
            raise NotFound(f"event type {event_type!r} is not registered")
        return EventTypeView.of_row(row)

    async def list(self, *, after: str | None, limit: int) -> tuple[Sequence[EventTypeView], str | None]:
        """Platform and registered types by name; the page and the name to continue after (None at the end)."""
        async with self._sessions() as session:
            rows = await EventTypeRepository(session).list(after=after, limit=limit + 1)
        merged = [EventTypeView.of_row(row) for row in rows]
        merged += [EventTypeView.builtin_type(t) for t in PLATFORM_TYPES if after is None or t > after]
        merged.sort(key=lambda view: view.type)
        page = merged[:limit]
        return page, (page[-1].type if len(merged) > limit else None)
