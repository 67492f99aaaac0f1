"""The executor's side of the child bridge: platform services a child asks for, answered by the executor.

The child process has no broker connection, no credentials and a minimal environment. When a step needs
a secret, wants to publish an event, or runs a browser task, the child sends a
:class:`~automation_executor.domain.protocol.RequestMessage` on its protocol stream and waits for the
:class:`~automation_executor.domain.protocol.ReplyMessage` the executor writes on its stdin.
:class:`ExecutionBridge` (one per run) checks each request and answers it:

- ``secret``: resolved by the :class:`~automation_executor.secrets.SecretResolver`; the value is added
  to the run's :class:`~automation_executor.domain.redact.Redactor` *before* it is sent, so it is
  redacted from everything the run reports afterwards.
- ``emit``: a CloudEvent for ``automation.events`` (routing key = type). Platform types (``job.*``,
  ``execution.*``, ``run.*``, ``browser.*``) are refused, the source defaults to
  ``/automation/jobs/<job_id>`` and may not pose as another part of the platform (``/automation/...``),
  the id is derived from the execution, attempt and emission key, and secret values in the data are
  redacted.
- ``browser``: a ``browser.task`` (checked against the contract) sent to browser-pool by request/reply;
  the answer is the ``browser.result`` data.

:class:`PlatformServices` is what the bridge publishes with: :class:`BrokerServices` in the service (the
broker publisher and an :class:`~automation_messaging.RpcClient`), :class:`RecordingServices` in tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from automation_contracts import (
    BROWSER_REPLY_SLACK_SECONDS,
    BrowserResult,
    BrowserTask,
    CloudEvent,
    ContractError,
    build_event,
    parse_data,
)
from automation_contracts.steps import check_event_type
from automation_core.logging import get_logger
from automation_executor.domain.protocol import BrowserArgs, EmitArgs, ReplyMessage, RequestMessage, SecretArgs
from automation_executor.domain.redact import Redactor
from automation_executor.secrets import SecretResolver, UnknownSecret
from automation_messaging.topology import BROWSER_TASK, EVENTS

log = get_logger(__name__)
SOURCE = "/automation/executor"
EMIT_ID_NAMESPACE = uuid.UUID("8d0c8a4e-2f57-4b0e-9a3c-5e6b7f1d2c90")
PLATFORM_SOURCE_PREFIX = "/automation/"


class BridgeError(Exception):
    """A request the executor refuses or cannot serve; the message goes back to the child."""


class PlatformServices(Protocol):
    """What the executor does for its children over the broker."""

    async def publish(self, event: CloudEvent) -> None:
        """Publish ``event`` to ``automation.events`` (confirmed)."""
        ...

    async def browser(self, task: BrowserTask, *, timeout: float) -> BrowserResult:
        """Send a ``browser.task`` to browser-pool and wait up to ``timeout`` seconds for its result."""
        ...


class EventPublisherLike(Protocol):
    """The publish method of :class:`automation_messaging.Publisher`."""

    async def publish(self, event: CloudEvent, *, exchange: str) -> None: ...


class RpcClientLike(Protocol):
    """The call method of :class:`automation_messaging.RpcClient`."""

    async def call(self, event: CloudEvent, *, routing_key: str, timeout: float) -> CloudEvent: ...


class BrokerServices:
    """:class:`PlatformServices` over RabbitMQ: the service's publisher and a started RpcClient."""

    def __init__(self, publisher: EventPublisherLike, rpc: RpcClientLike) -> None:
        self._publisher = publisher
        self._rpc = rpc

    async def publish(self, event: CloudEvent) -> None:
        await self._publisher.publish(event, exchange=EVENTS)

    async def browser(self, task: BrowserTask, *, timeout: float) -> BrowserResult:
        subject = str(task.execution_id) if task.execution_id is not None else None
        request = build_event(BROWSER_TASK, source=SOURCE, data=task, subject=subject)
        reply = await self._rpc.call(request, routing_key=BROWSER_TASK, timeout=timeout)
        return parse_data(reply, BrowserResult)


class RecordingServices:
    """In-memory :class:`PlatformServices` for tests: records events and tasks, answers tasks with ``answer``."""

    def __init__(self, answer: Callable[[BrowserTask], BrowserResult] | None = None) -> None:
        self.events: list[CloudEvent] = []
        self.tasks: list[BrowserTask] = []
        self.timeouts: list[float] = []
        self._answer = answer

    async def publish(self, event: CloudEvent) -> None:
        self.events.append(event)

    async def browser(self, task: BrowserTask, *, timeout: float) -> BrowserResult:
        self.tasks.append(task)
        self.timeouts.append(timeout)
        if self._answer is None:
            raise BridgeError("no browser-pool in this test")
        return self._answer(task)


class ExecutionBridge:
    """Answers the requests of one execution's child."""

    def __init__(
        self,
        *,
        execution_id: str,
        job_id: str,
        attempt: int,
        secrets: SecretResolver,
        redactor: Redactor,
        services: PlatformServices | None,
    ) -> None:
        self._execution_id = execution_id
        self._job_id = job_id
        self._attempt = attempt
        self._secrets = secrets
        self._redactor = redactor
        self._services = services
        self.secrets_resolved: set[str] = set()

    async def handle(self, request: RequestMessage) -> ReplyMessage:
        """The reply to ``request``; never raises for anything the child asked."""
        try:
            if request.op == "secret":
                result: Any = self._secret(SecretArgs.model_validate(request.args))
            elif request.op == "emit":
                result = await self._emit(EmitArgs.model_validate(request.args))
            else:
                result = await self._browser(BrowserArgs.model_validate(request.args))
        except (BridgeError, UnknownSecret) as exc:
            return ReplyMessage(id=request.id, ok=False, error=self._redactor.text(str(exc)))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            error = f"invalid {request.op} request: {where}: {first['msg']}"
            return ReplyMessage(id=request.id, ok=False, error=self._redactor.text(error))
        except Exception as exc:  # noqa: BLE001 - the child gets the error; the executor logs it
            log.warning("bridge_request_failed", op=request.op, error=repr(exc))
            error = f"{request.op} failed: {type(exc).__name__}: {exc}"
            return ReplyMessage(id=request.id, ok=False, error=self._redactor.text(error))
        return ReplyMessage(id=request.id, ok=True, result=result)

    def _secret(self, args: SecretArgs) -> str:
        value = self._secrets.resolve(args.name)
        self._redactor.add(value)  # before the child can print it
        self.secrets_resolved.add(args.name)
        return value

    def _services_or_error(self, what: str) -> PlatformServices:
        if self._services is None:
            raise BridgeError(f"{what} is not available: this executor has no broker services configured")
        return self._services

    def _event_source(self, source: str | None) -> str:
        own = f"/automation/jobs/{self._job_id}"
        if source is None:
            return own
        if source.startswith(PLATFORM_SOURCE_PREFIX) and not (source == own or source.startswith(own + "/")):
            raise BridgeError(f"source {source!r} belongs to the platform; use {own}[/...] or a source of your own")
        return source

    async def _emit(self, args: EmitArgs) -> dict[str, Any]:
        try:
            check_event_type(args.type)
        except ValueError as exc:
            raise BridgeError(f"event type {args.type!r}: {exc}") from exc
        services = self._services_or_error("publishing events")
        event_id = str(uuid.uuid5(EMIT_ID_NAMESPACE, f"{self._execution_id}:{self._attempt}:{args.key}"))
        try:
            event = build_event(
                args.type,
                source=self._event_source(args.source),
                data=self._redactor.value(args.data) if args.data is not None else {},
                subject=self._redactor.text(args.subject) if args.subject is not None else None,
                id=event_id,
                executionid=self._execution_id,
            )
        except (ContractError, ValueError, TypeError) as exc:
            raise BridgeError(f"invalid event: {exc}") from exc
        await services.publish(event)
        return {"id": event.id, "type": event.type, "source": event.source, "subject": event.subject}

    async def _browser(self, args: BrowserArgs) -> dict[str, Any]:
        services = self._services_or_error("browser steps")
        try:
            task = BrowserTask.model_validate(
                {
                    "task_id": str(uuid.uuid4()),
                    "execution_id": self._execution_id,
                    "timeout_seconds": args.timeout_seconds,
                    "viewport": args.viewport,
                    "actions": args.actions,
                }
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BridgeError(f"invalid browser task: {where}: {first['msg']}") from exc
        try:
            result = await services.browser(task, timeout=task.timeout_seconds + BROWSER_REPLY_SLACK_SECONDS)
        except TimeoutError as exc:
            raise BridgeError(f"browser-pool did not answer within {task.timeout_seconds:g}s (+ slack)") from exc
        except asyncio.CancelledError:
            raise
        data: dict[str, Any] = result.model_dump(mode="json")
        return data
