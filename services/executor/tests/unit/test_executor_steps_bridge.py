"""The executor's side of the child bridge, with hand-written fake platform services (no broker)."""

from __future__ import annotations

import uuid
from typing import Any

from automation_contracts import BrowserResult, BrowserTask
from automation_executor.bridge import ExecutionBridge, RecordingServices
from automation_executor.domain.protocol import ReplyMessage, RequestMessage
from automation_executor.domain.redact import Redactor
from automation_executor.secrets import SecretResolver, SecretsConfig

EXECUTION = str(uuid.uuid4())
JOB = str(uuid.uuid4())


def _answer(task: BrowserTask) -> BrowserResult:
    fills = [a.value for a in task.actions if a.type == "fill"]
    return BrowserResult(
        task_id=task.task_id,
        ok=True,
        title="Fake",
        url="https://example.org/",
        outputs={"filled": fills},
        artifacts=[],
        duration_seconds=0.1,
    )


def _bridge(services: RecordingServices | None, redactor: Redactor | None = None) -> ExecutionBridge:
    return ExecutionBridge(
        execution_id=EXECUTION,
        job_id=JOB,
        attempt=2,
        secrets=SecretResolver(SecretsConfig(), {"AUTOMATION_SECRET_API_TOKEN": "tok-123"}),
        redactor=redactor if redactor is not None else Redactor(),
        services=services,
    )


async def _ask(bridge: ExecutionBridge, op: str, **args: Any) -> ReplyMessage:
    return await bridge.handle(RequestMessage.model_validate({"id": 7, "op": op, "step": "s", "args": args}))


async def test_secret_requests_feed_the_redactor_first() -> None:
    redactor = Redactor()
    bridge = _bridge(None, redactor)
    reply = await _ask(bridge, "secret", name="API_TOKEN")
    assert reply == ReplyMessage(id=7, ok=True, result="tok-123")
    assert redactor.text("Bearer tok-123") == "Bearer ***"
    assert bridge.secrets_resolved == {"API_TOKEN"}
    missing = await _ask(bridge, "secret", name="NOPE")
    assert not missing.ok
    assert missing.error is not None
    assert "secret 'NOPE': not found" in missing.error
    malformed = await _ask(bridge, "secret", nom="x")
    assert not malformed.ok
    assert malformed.error is not None
    assert "invalid secret request" in malformed.error


async def test_emit_publishes_with_a_stable_id_and_the_job_source() -> None:
    services = RecordingServices()
    redactor = Redactor(["tok-123"])
    bridge = _bridge(services, redactor)
    args = {"type": "inventory.synced", "data": {"n": 1, "leak": "tok-123"}, "key": "s:0", "subject": "site"}
    first = await _ask(bridge, "emit", **args)
    again = await _ask(bridge, "emit", **args)
    assert first.ok, first.error
    assert first.result == again.result  # a rerun of the same emission has the same id
    [event, _] = services.events
    assert event.type == "inventory.synced"
    assert event.source == f"/automation/jobs/{JOB}"
    assert event.subject == "site"
    assert event.data == {"n": 1, "leak": "***"}
    assert event.extensions == {"executionid": EXECUTION}
    other = await _ask(bridge, "emit", **{**args, "key": "s:1"})
    assert other.result["id"] != first.result["id"]
    own_sub = await _ask(bridge, "emit", **{**args, "key": "s:2", "source": f"/automation/jobs/{JOB}/sync"})
    assert own_sub.ok
    custom = await _ask(bridge, "emit", **{**args, "key": "s:3", "source": "/inventory/sync"})
    assert custom.ok


async def test_emit_refuses_platform_types_and_platform_sources() -> None:
    services = RecordingServices()
    bridge = _bridge(services)
    for event_type in ("execution.succeeded", "run.requested", "job.created", "browser.task", "bad type"):
        reply = await _ask(bridge, "emit", type=event_type, data={}, key="s:0")
        assert not reply.ok, event_type
    spoof = await _ask(bridge, "emit", type="x.y", data={}, key="s:0", source="/automation/executor")
    assert not spoof.ok
    assert spoof.error is not None
    assert "belongs to the platform" in spoof.error
    assert services.events == []
    unavailable = await _ask(_bridge(None), "emit", type="x.y", data={}, key="s:0")
    assert not unavailable.ok
    assert unavailable.error is not None
    assert "not available" in unavailable.error


async def test_browser_tasks_are_checked_and_answered() -> None:
    services = RecordingServices(_answer)
    bridge = _bridge(services)
    value = "'; DROP TABLE users; --"
    reply = await _ask(
        bridge,
        "browser",
        actions=[{"type": "goto", "url": "https://example.org/"}, {"type": "fill", "selector": "#q", "value": value}],
        timeout_seconds=12.0,
        viewport={"width": 640, "height": 480},
    )
    assert reply.ok, reply.error
    assert reply.result["outputs"] == {"filled": [value]}
    assert reply.result["title"] == "Fake"
    [task] = services.tasks
    assert str(task.execution_id) == EXECUTION
    assert task.timeout_seconds == 12.0
    assert services.timeouts == [12.0 + 15.0]
    invalid = await _ask(bridge, "browser", actions=[{"type": "goto", "url": "not a url"}])
    assert not invalid.ok
    assert invalid.error is not None
    assert "invalid browser task: actions.0" in invalid.error
    down = await _ask(_bridge(RecordingServices()), "browser", actions=[{"type": "goto", "url": "https://x.org/"}])
    assert not down.ok
    assert down.error == "no browser-pool in this test"
