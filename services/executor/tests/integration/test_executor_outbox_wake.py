"""A replica's relay publishes what its runs commit at once, with a poll too long to be what does it.

The hot statements wake the replica's own relay in process instead of by ``pg_notify`` (see
:mod:`automation_executor.db.hot`); the session path still notifies. With
``AUTOMATION_OUTBOX_POLL_SECONDS`` at 60, an event that takes the poll to reach the broker would miss
every wait below. (A module of its own: no other replica may consume the run requests meanwhile.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from automation_executor.testing import ExecutorHarness, harness_settings, run_request_data

pytestmark = pytest.mark.integration
POLL_SECONDS = 60.0
PROMPT_SECONDS = 10.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(database_url: str, amqp_url: str) -> AsyncIterator[ExecutorHarness]:
    settings = harness_settings(database_url, amqp_url, outbox_poll_seconds=POLL_SECONDS, shutdown_grace_seconds=5)
    async with ExecutorHarness(settings) as h:
        yield h


async def test_each_runs_events_are_published_at_once_by_the_in_process_wake(harness: ExecutorHarness) -> None:
    for _ in range(3):  # one wake per statement, not only the relay's first drain at start
        data = run_request_data([{"name": "t", "type": "shell", "config": {"command": ["true"]}}])
        await harness.request_run(data)
        await harness.wait_for(data["execution_id"], "execution.started", timeout=PROMPT_SECONDS)
        outcome = await harness.wait_outcome(data["execution_id"], timeout=PROMPT_SECONDS)
        assert outcome.type == "execution.succeeded", outcome.data


async def test_what_the_session_path_enqueues_is_published_at_once_by_its_notification(
    harness: ExecutorHarness,
) -> None:
    # A job with max_concurrency is claimed in a session (under the job's advisory lock), whose
    # enqueue still wakes the relay with pg_notify at commit.
    data = run_request_data([{"name": "t", "type": "shell", "config": {"command": ["true"]}}], max_concurrency=1)
    await harness.request_run(data)
    await harness.wait_for(data["execution_id"], "execution.started", timeout=PROMPT_SECONDS)
    outcome = await harness.wait_outcome(data["execution_id"], timeout=PROMPT_SECONDS)
    assert outcome.type == "execution.succeeded", outcome.data


async def test_the_replicas_database_pools_are_in_its_metrics(harness: ExecutorHarness) -> None:
    assert harness.client is not None
    text = (await harness.client.get("/metrics")).text
    for pool in ("main", "hot"):
        assert f'automation_db_pool_max_connections{{pool="{pool}",service="executor"}}' in text, pool
        assert f'automation_db_pool_connections{{pool="{pool}",service="executor",state="in_use"}}' in text, pool
