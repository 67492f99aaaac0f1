"""Response bodies of the HTTP API (requests and task results are the message contracts themselves)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from automation_browser_pool.db.repository import ArtifactMeta
from automation_browser_pool.pool import PoolStatus


class ArtifactMetaOut(BaseModel):
    """An artifact's metadata; ``GET /api/v1/artifacts/{id}`` serves its bytes."""

    id: uuid.UUID
    task_id: uuid.UUID
    execution_id: uuid.UUID | None
    action_index: int
    kind: Literal["screenshot", "pdf"]
    name: str
    content_type: str
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the bytes, hex")
    created_at: datetime

    @classmethod
    def of(cls, meta: ArtifactMeta) -> ArtifactMetaOut:
        return cls.model_validate(meta, from_attributes=True)


class BrowserOut(BaseModel):
    """One browser of the pool."""

    number: int
    connected: bool
    active_contexts: int
    tasks_served: int
    retiring: bool = Field(description="served its quota: takes no new task, closes when idle")


class PoolOut(BaseModel):
    """The pool's browsers, busy contexts and capacity."""

    size: int = Field(description="warm browsers the pool keeps (AUTOMATION_BROWSER_POOL_SIZE)")
    contexts_per_browser: int
    capacity_contexts: int
    connected_browsers: int
    busy_contexts: int
    waiting_tasks: int
    restarts: int = Field(description="browsers replaced since start (crashed or recycled)")
    browsers: list[BrowserOut]

    @classmethod
    def of(cls, status: PoolStatus) -> PoolOut:
        return cls(
            size=status.size,
            contexts_per_browser=status.contexts_per_browser,
            capacity_contexts=status.capacity_contexts,
            connected_browsers=status.connected_browsers,
            busy_contexts=status.busy_contexts,
            waiting_tasks=status.waiting_tasks,
            restarts=status.restarts,
            browsers=[BrowserOut.model_validate(b, from_attributes=True) for b in status.browsers],
        )
