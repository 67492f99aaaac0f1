"""Dead letters: storing what arrives on ``automation.dead``, and the admin's list, inspect, requeue, delete, purge.

Storing is idempotent on ``(message_id, original_queue, dead_lettered_at)``. A requeue re-publishes
the stored body to the original exchange and routing key, with the original headers minus what
dead-lettering added, waits for the broker's confirm (a message no queue takes is refused, not
lost), and then marks the letter ``requeued_at``; the letter stays until it is deleted or purged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_core.auth import Principal
from automation_core.errors import Conflict, NotFound
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_job_api.db.tables import DeadLetter
from automation_job_api.domain.dead_letters import IncomingLetter, requeue_headers
from automation_job_api.metrics import DEAD_LETTERS, DEAD_LETTERS_REQUEUED
from automation_job_api.service.paging import Page, newest_first
from automation_messaging.topology import DLX

log = get_logger(__name__)


class Unroutable(Exception):
    """The broker could not deliver a re-published message (no such exchange, or no queue bound)."""


class Republisher(Protocol):
    """Publishes raw bytes with a confirm, refusing (:class:`Unroutable`) what no queue takes."""

    async def __call__(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, Any],
        message_id: str,
        content_type: str | None,
        message_type: str | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters a list or purge covers (None: any)."""

    original_queue: str | None = None
    routing_key: str | None = None
    since: datetime | None = None
    before: datetime | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        if self.original_queue is not None:
            stmt = stmt.where(DeadLetter.original_queue == self.original_queue)
        if self.routing_key is not None:
            stmt = stmt.where(DeadLetter.original_routing_key == self.routing_key)
        if self.since is not None:
            stmt = stmt.where(DeadLetter.dead_lettered_at >= self.since)
        if self.before is not None:
            stmt = stmt.where(DeadLetter.dead_lettered_at < self.before)
        return stmt


class DeadLetterService:
    """Use cases on the dead letters store; everything but :meth:`store` is for the admin only."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        republish: Republisher | None,
        on_change: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._republish = republish
        self._on_change = on_change

    async def store(self, letter: IncomingLetter) -> bool:
        """Store one letter; False when it was already stored (a redelivery)."""
        origin = letter.origin
        async with self._sessions.begin() as session:
            inserted = await session.scalar(
                insert(DeadLetter)
                .values(
                    id=uuid.uuid4(),
                    message_id=letter.message_id,
                    routing_key=letter.routing_key,
                    original_exchange=origin.exchange,
                    original_queue=origin.queue,
                    original_routing_key=origin.routing_key,
                    reason=origin.reason,
                    headers=letter.headers,
                    body=letter.body,
                    content_type=letter.content_type,
                    message_type=letter.message_type,
                    dead_lettered_at=origin.dead_lettered_at,
                    dead_lettered_by=origin.dead_lettered_by,
                    received_at=letter.received_at,
                    requeued_at=None,
                    requeue_count=0,
                )
                .on_conflict_do_nothing(index_elements=["message_id", "original_queue", "dead_lettered_at"])
                .returning(DeadLetter.id)
            )
        if inserted is None:
            return False
        DEAD_LETTERS.labels(origin.queue).inc()
        self._on_change()
        log.info(
            "dead_letter_stored",
            dead_letter_id=str(inserted),
            message_id=letter.message_id,
            original_queue=origin.queue,
            reason=origin.reason[:200],
        )
        return True

    async def list(
        self, principal: Principal, letters: LetterFilter, *, cursor: str | None, limit: int
    ) -> Page[DeadLetter]:
        """Stored letters, newest dead-lettered first."""
        principal.require_admin()
        async with self._sessions() as session:
            return await newest_first(
                session,
                letters.apply(select(DeadLetter)),
                created_at=DeadLetter.dead_lettered_at,
                id_=DeadLetter.id,
                cursor=cursor,
                limit=limit,
            )

    async def get(self, principal: Principal, letter_id: uuid.UUID) -> DeadLetter:
        """One stored letter, body and headers included."""
        principal.require_admin()
        async with self._sessions() as session:
            return await self._load(session, letter_id)

    async def requeue(self, principal: Principal, letter_id: uuid.UUID) -> DeadLetter:
        """Re-publish the letter where it came from (confirmed), then mark it ``requeued_at``."""
        principal.require_admin()
        if self._republish is None:
            raise Conflict("requeueing needs the broker, which this process does not use")
        async with self._sessions.begin() as session:
            row = await self._load(session, letter_id, for_update=True)
            if row.original_exchange == DLX or (not row.original_exchange and not row.original_routing_key):
                raise Conflict(f"dead letter {letter_id} has no original destination to requeue to")
            try:
                await self._republish(
                    exchange=row.original_exchange,
                    routing_key=row.original_routing_key,
                    body=row.body,
                    headers=requeue_headers(row.headers),
                    message_id=row.message_id,
                    content_type=row.content_type,
                    message_type=row.message_type,
                )
            except Unroutable as exc:
                raise Conflict(f"the broker did not take the message back: {exc}") from exc
            row.requeued_at = utcnow()
            row.requeue_count += 1
        DEAD_LETTERS_REQUEUED.inc()
        log.info(
            "dead_letter_requeued",
            dead_letter_id=str(letter_id),
            exchange=row.original_exchange,
            routing_key=row.original_routing_key,
        )
        return row

    async def delete(self, principal: Principal, letter_id: uuid.UUID) -> None:
        """Forget one letter."""
        principal.require_admin()
        async with self._sessions.begin() as session:
            deleted = await session.scalar(
                delete(DeadLetter).where(DeadLetter.id == letter_id).returning(DeadLetter.id)
            )
        if deleted is None:
            raise NotFound("dead letter not found")
        self._on_change()
        log.info("dead_letter_deleted", dead_letter_id=str(letter_id))

    async def purge(self, principal: Principal, letters: LetterFilter) -> int:
        """Forget every letter the filter covers; how many were deleted."""
        principal.require_admin()
        async with self._sessions.begin() as session:
            stmt = letters.apply(select(DeadLetter.id))
            result = await session.execute(delete(DeadLetter).where(DeadLetter.id.in_(stmt)).returning(DeadLetter.id))
            purged = len(result.all())
        self._on_change()
        log.info("dead_letters_purged", purged=purged, original_queue=letters.original_queue)
        return purged

    @staticmethod
    async def _load(session: AsyncSession, letter_id: uuid.UUID, *, for_update: bool = False) -> DeadLetter:
        stmt = select(DeadLetter).where(DeadLetter.id == letter_id)
        row = await session.scalar(stmt.with_for_update() if for_update else stmt)
        if row is None:
            raise NotFound("dead letter not found")
        return row
