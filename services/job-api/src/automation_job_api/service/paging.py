"""Keyset pagination, newest first, over ``(created_at, id)``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from automation_job_api.domain.cursor import Position, decode_cursor, encode_cursor

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None


async def newest_first(
    session: AsyncSession,
    stmt: Select[T],
    *,
    created_at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
    cursor: str | None,
    limit: int,
) -> Page[T]:
    """Run ``stmt`` for the page after ``cursor`` (``limit`` rows at most)."""
    if cursor:
        position = decode_cursor(cursor)
        stmt = stmt.where(tuple_(created_at, id_) < tuple_(position.at, position.id))
    stmt = stmt.order_by(created_at.desc(), id_.desc()).limit(limit + 1)
    rows: list[Any] = list((await session.scalars(stmt)).all())
    if len(rows) <= limit:
        return Page(items=rows, next_cursor=None)
    last = rows[limit - 1]
    position = Position(at=getattr(last, created_at.key), id=getattr(last, id_.key))
    return Page(items=rows[:limit], next_cursor=encode_cursor(position))
