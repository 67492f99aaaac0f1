"""Storing answered tasks and their artifacts, and reading them back."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_browser_pool.db.tables import ArtifactRow, TaskRow
from automation_browser_pool.domain import RunOutcome
from automation_contracts import Artifact, BrowserResult, BrowserTask


@dataclass(frozen=True, slots=True)
class ArtifactMeta:
    """An artifact without its bytes."""

    id: uuid.UUID
    task_id: uuid.UUID
    execution_id: uuid.UUID | None
    action_index: int
    kind: str
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """An artifact's bytes and what to serve them as."""

    content_type: str
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention cleanup removed."""

    artifacts: int
    tasks: int


META_COLUMNS = (
    ArtifactRow.id,
    ArtifactRow.task_id,
    ArtifactRow.execution_id,
    ArtifactRow.action_index,
    ArtifactRow.kind,
    ArtifactRow.name,
    ArtifactRow.content_type,
    ArtifactRow.size_bytes,
    ArtifactRow.sha256,
    ArtifactRow.created_at,
)


class TaskRepository:
    """Tasks and artifacts in the ``browser_pool`` schema."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def find_result(self, task_id: uuid.UUID) -> BrowserResult | None:
        """The reply already given to ``task_id``, or None."""
        async with self._sessions() as session:
            return await self._load_result(session, task_id)

    async def record(self, task: BrowserTask, outcome: RunOutcome, duration: float) -> BrowserResult:
        """Store the task and its artifacts in one transaction; the reply to send.

        When the task id was recorded already (a redelivery run twice at once), nothing is stored and
        the reply recorded first is returned.
        """
        async with self._sessions.begin() as session:
            inserted = await session.scalar(
                insert(TaskRow)
                .values(
                    id=task.task_id,
                    execution_id=task.execution_id,
                    status="ok" if outcome.ok else "error",
                    error=outcome.error,
                    title=outcome.title,
                    url=outcome.url,
                    outputs=outcome.outputs,
                    action_count=len(task.actions),
                    duration_seconds=duration,
                )
                .on_conflict_do_nothing(index_elements=[TaskRow.id])
                .returning(TaskRow.id)
            )
            if inserted is None:
                existing = await self._load_result(session, task.task_id)
                if existing is None:
                    raise RuntimeError(f"task {task.task_id} conflicted but cannot be read back")
                return existing
            artifacts: list[Artifact] = []
            for captured in outcome.artifacts:
                row = ArtifactRow(
                    id=uuid.uuid4(),
                    task_id=task.task_id,
                    execution_id=task.execution_id,
                    action_index=captured.action_index,
                    kind=captured.kind,
                    name=captured.name,
                    content_type=captured.content_type,
                    size_bytes=len(captured.data),
                    sha256=hashlib.sha256(captured.data).hexdigest(),
                    data=captured.data,
                )
                session.add(row)
                artifacts.append(_artifact(row.id, row.kind, row.content_type, row.size_bytes, row.action_index))
        return BrowserResult(
            task_id=task.task_id,
            ok=outcome.ok,
            title=outcome.title,
            url=outcome.url,
            outputs=outcome.outputs,
            artifacts=artifacts,
            error=outcome.error,
            duration_seconds=duration,
        )

    async def artifact_meta(self, artifact_id: uuid.UUID) -> ArtifactMeta | None:
        """An artifact's metadata (its bytes are not read)."""
        async with self._sessions() as session:
            row = (await session.execute(select(*META_COLUMNS).where(ArtifactRow.id == artifact_id))).one_or_none()
        return None if row is None else ArtifactMeta(**row._mapping)

    async def artifact_file(self, artifact_id: uuid.UUID) -> ArtifactFile | None:
        """An artifact's bytes and content type."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ArtifactRow.content_type, ArtifactRow.name, ArtifactRow.data).where(
                        ArtifactRow.id == artifact_id
                    )
                )
            ).one_or_none()
        return None if row is None else ArtifactFile(**row._mapping)

    async def prune(self, cutoff: datetime) -> Pruned:
        """Delete artifacts and task records created before ``cutoff``."""
        async with self._sessions.begin() as session:
            artifacts = await session.execute(
                delete(ArtifactRow).where(ArtifactRow.created_at < cutoff).returning(ArtifactRow.id)
            )
            artifact_count = len(artifacts.all())
            tasks = await session.execute(delete(TaskRow).where(TaskRow.created_at < cutoff).returning(TaskRow.id))
            task_count = len(tasks.all())
        return Pruned(artifacts=artifact_count, tasks=task_count)

    async def _load_result(self, session: AsyncSession, task_id: uuid.UUID) -> BrowserResult | None:
        task = await session.get(TaskRow, task_id)
        if task is None:
            return None
        rows = await session.execute(
            select(
                ArtifactRow.id,
                ArtifactRow.kind,
                ArtifactRow.content_type,
                ArtifactRow.size_bytes,
                ArtifactRow.action_index,
            )
            .where(ArtifactRow.task_id == task_id)
            .order_by(ArtifactRow.action_index, ArtifactRow.created_at)
        )
        return BrowserResult(
            task_id=task.id,
            ok=task.status == "ok",
            title=task.title,
            url=task.url,
            outputs=task.outputs,
            artifacts=[_artifact(*row) for row in rows],
            error=task.error,
            duration_seconds=task.duration_seconds,
        )


def _artifact(artifact_id: uuid.UUID, kind: str, content_type: str, size_bytes: int, action_index: int) -> Artifact:
    return Artifact.model_validate(
        {
            "id": artifact_id,
            "kind": kind,
            "content_type": content_type,
            "size_bytes": size_bytes,
            "action_index": action_index,
        }
    )
