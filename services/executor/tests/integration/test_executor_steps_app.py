"""The step types through the whole service: run.requested in, child (fork server) with its bridge, events out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from automation_contracts import CloudEvent, validate_event
from automation_executor.testing import ExecutorHarness, harness_settings, run_request_data
from automation_messaging.topology import EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration
TOKEN = "app-level-secret-4242"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(
    database_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ExecutorHarness]:
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "APP_TOKEN").write_text(TOKEN + "\n")
    settings = harness_settings(
        database_url, amqp_url, executor_secrets_dir=str(secrets), executor_secret_sources="dir"
    )
    async with ExecutorHarness(settings) as h:
        yield h


async def test_python_event_and_secret_steps_run_in_the_service(harness: ExecutorHarness, tmp_path: Path) -> None:
    queue = await harness.channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS, routing_key="inventory.#")
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    data = run_request_data(
        [
            {
                "name": "greet",
                "type": "python",
                "config": {
                    "handler": "automation_executor.examples.handlers:greet",
                    "args": {"name": "${{ parameters.who }}"},
                },
            },
            {"name": "token", "type": "shell", "config": {"command": ["echo", "token ${{ secrets.APP_TOKEN }}"]}},
            {
                "name": "announce",
                "type": "event.emit",
                "config": {"type": "inventory.synced", "data": {"greeting": "${{ steps.greet.output.greeting }}"}},
            },
        ],
        parameters={"who": f"$(touch {marker})"},
    )
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"], timeout=60)
    assert outcome.type == "execution.succeeded", outcome.data
    validate_event(outcome)
    result = outcome.data["result"]
    assert result["greet"] == {"greeting": f"hello $(touch {marker})"}
    assert result["token"]["stdout_tail"] == "token ***\n"
    received: list[CloudEvent] = []

    async def published() -> bool:
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            received.append(CloudEvent.from_json_bytes(message.body))
        return bool(received)

    await wait_until(published, timeout=10, what="the emitted event")
    [event] = received
    assert event.id == result["announce"]["id"]
    assert event.source == f"/automation/jobs/{data['job_id']}"
    assert event.data == {"greeting": f"hello $(touch {marker})"}

    async def logged() -> bool:
        return "token ***" in harness.log_text(data["execution_id"])

    await wait_until(logged, timeout=10, what="the redacted log line")
    assert TOKEN not in harness.log_text(data["execution_id"])
    assert not marker.exists()


async def test_an_unknown_secret_fails_the_run_naming_it(harness: ExecutorHarness) -> None:
    data = run_request_data(
        [{"name": "s", "type": "shell", "config": {"command": ["echo", "${{ secrets.NOT_THERE }}"]}}]
    )
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"], timeout=60)
    assert outcome.type == "execution.failed"
    assert "secret 'NOT_THERE': not found (looked in the secrets directory)" in outcome.data["error"]


@pytest.mark.parametrize("pending", [0, 2])
async def test_check_and_perform_through_the_service(harness: ExecutorHarness, pending: int) -> None:
    data = run_request_data(
        [{"name": "work", "type": "shell", "config": {"command": ["echo", "pending ${{ check.payload.pending }}"]}}]
    )
    data["job"]["check"] = {
        "name": "probe",
        "type": "python",
        "config": {"handler": "automation_executor.examples.handlers:inventory_check", "args": {"pending": pending}},
    }
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"], timeout=60)
    assert outcome.type == "execution.succeeded", outcome.data
    result = outcome.data["result"]
    assert result["check"] == {"should_perform": pending > 0, "perform_payload": {"pending": pending}}
    assert result["performed"] is (pending > 0)
    assert result["steps"] == ({"work": {"exit_code": 0, "stdout_tail": "pending 2\n"}} if pending else {})
