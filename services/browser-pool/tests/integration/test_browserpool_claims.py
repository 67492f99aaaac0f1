"""A task received twice runs once: claims on running tasks across replicas, on the real PostgreSQL.

The replicas here are :class:`BrowserTaskService` instances sharing the real ``browser_pool`` schema, each
with claims of its own (:class:`DatabaseClaims`, one connection each, as two processes have); the browser
is a stand-in that counts its runs, so the test is about who runs a task, not about Chromium.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_browser_pool.claims import DatabaseClaims
from automation_browser_pool.db import MIGRATIONS_DIR
from automation_browser_pool.db.repository import TaskRepository
from automation_browser_pool.domain import RunOutcome
from automation_browser_pool.service import BrowserTaskService, TaskRunningElsewhere
from automation_contracts import BrowserTask
from automation_db import create_engine, migrate, session_factory

pytestmark = pytest.mark.integration


class Browser:
    """What the stand-in pool lends: nothing but a name."""


class Pool:
    @asynccontextmanager
    async def slot(self, timeout: float) -> AsyncIterator[Browser]:
        yield Browser()


class CountingRunner:
    """Runs a task by waiting ``seconds``; counts the runs of each task."""

    def __init__(self, seconds: float = 0.8) -> None:
        self.seconds = seconds
        self.runs: dict[uuid.UUID, int] = {}

    async def run(self, browser: Browser, task: BrowserTask, deadline: float) -> RunOutcome:
        self.runs[task.task_id] = self.runs.get(task.task_id, 0) + 1
        await asyncio.sleep(self.seconds)
        return RunOutcome(title="counted", url="http://127.0.0.1/", outputs={"runs": self.runs[task.task_id]})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def repository(database_url: str) -> AsyncIterator[TaskRepository]:
    await migrate(database_url, MIGRATIONS_DIR)
    engine = create_engine(database_url, pool_size=4)
    sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
    yield TaskRepository(sessions)
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def claims(database_url: str) -> AsyncIterator[list[DatabaseClaims]]:
    made = [DatabaseClaims(database_url), DatabaseClaims(database_url)]
    yield made
    for c in made:
        await c.aclose()


def replica(repository: TaskRepository, claims: DatabaseClaims, runner: CountingRunner) -> BrowserTaskService[Any]:
    return BrowserTaskService(Pool(), runner, repository, claims)  # type: ignore[arg-type]


def a_task(timeout: float = 10) -> BrowserTask:
    return BrowserTask.model_validate(
        {
            "task_id": str(uuid.uuid4()),
            "timeout_seconds": timeout,
            "actions": [{"type": "goto", "url": "http://x.test/"}],
        }
    )


async def kill_backend_of(claims: DatabaseClaims, database_url: str) -> None:
    """End the claims connection's backend from outside, as PostgreSQL sees a replica that died."""
    pid = claims._connection.get_server_pid()  # type: ignore[union-attr]
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_claim_holds_until_released_or_its_connection_ends(
    claims: list[DatabaseClaims], database_url: str
) -> None:
    first, second = claims
    task_id = uuid.uuid4()
    assert await first.try_claim(task_id)
    assert not await first.try_claim(task_id), "a claim is not taken twice within one replica"
    assert not await second.try_claim(task_id)
    await first.release(task_id)
    assert await second.try_claim(task_id)
    await second.release(task_id)

    other = uuid.uuid4()
    assert await first.try_claim(other)
    await kill_backend_of(first, database_url)
    assert await second.try_claim(other), "a replica's claims end with its connection"
    await second.release(other)
    assert await first.try_claim(uuid.uuid4()), "a broken claims connection is opened again"


async def test_a_task_received_by_two_replicas_at_once_runs_once(
    repository: TaskRepository, claims: list[DatabaseClaims]
) -> None:
    runner = CountingRunner()
    one, two = replica(repository, claims[0], runner), replica(repository, claims[1], runner)
    task = a_task()
    first, second = await asyncio.gather(one.answer(task), two.answer(task))
    assert runner.runs == {task.task_id: 1}
    assert first.ok
    assert first == second
    again = await two.answer(task)
    assert again == first, "a task answered before gets its stored result"
    assert runner.runs == {task.task_id: 1}


async def test_a_task_received_twice_by_one_replica_joins_its_run(
    repository: TaskRepository, claims: list[DatabaseClaims]
) -> None:
    runner = CountingRunner()
    one = replica(repository, claims[0], runner)
    task = a_task()
    results = await asyncio.gather(one.answer(task), one.answer(task), one.answer(task))
    assert runner.runs == {task.task_id: 1}
    assert results[0] == results[1] == results[2]


async def test_a_task_whose_replica_died_runs_at_once_on_another(
    repository: TaskRepository, claims: list[DatabaseClaims], database_url: str
) -> None:
    """The first replica claimed the task and died before recording it (its connection ended): the
    task's next delivery runs it without waiting for the task's timeout."""
    runner = CountingRunner(seconds=0.1)
    task = a_task(timeout=60)
    assert await claims[0].try_claim(task.task_id)
    await kill_backend_of(claims[0], database_url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await asyncio.wait_for(replica(repository, claims[1], runner).answer(task), 10)
    assert result.ok
    assert runner.runs == {task.task_id: 1}
    assert loop.time() - started < 5


async def test_a_replica_that_keeps_its_claim_past_the_deadline_gets_a_conflict(
    repository: TaskRepository, claims: list[DatabaseClaims], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("automation_browser_pool.service.ELSEWHERE_SLACK_SECONDS", 0.5)
    runner = CountingRunner(seconds=0.1)
    task = a_task(timeout=1)
    assert await claims[0].try_claim(task.task_id)
    try:
        with pytest.raises(TaskRunningElsewhere, match="claimed by another browser-pool replica") as caught:
            await replica(repository, claims[1], runner).answer(task)
        assert caught.value.status == 409
        assert runner.runs == {}
    finally:
        await claims[0].release(task.task_id)
