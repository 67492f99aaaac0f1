"""What an ending attempt records and sends: the row's new values and its outbox messages.

:func:`plan_outcome` (the steps ran), :func:`plan_lost` (the lease expired) and :func:`plan_cancelled`
build an :class:`Ending`; :func:`enqueue_ending` writes its messages to the outbox in the caller's
transaction, beside the compare-and-set that records the attempt. After a failure there is either a
retry (``run.requested`` of ``attempt + 1`` on the retry delay queue for the jittered backoff, with the
job's priority) or the final failure (``execution.failed`` with ``will_retry: false`` and the run
request on ``automation.dlx`` with its reason).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from automation_contracts import CloudEvent, RunRequested
from automation_executor.db.tables import outbox
from automation_executor.domain.attempts import LOST_ERROR, after_failure
from automation_executor.domain.backoff import retry_delay
from automation_executor.domain.outcome import RunOutcome
from automation_executor.events import cancelled_event, dead_letter, outcome_event, retry_request
from automation_executor.retry import RetryRoutes
from automation_messaging import enqueue
from automation_messaging.topology import DLX, EVENTS, RETRY, RUN_REQUESTED

Rand = Callable[[float, float], float]
DeadLetterKind = Literal["final_failure", "poison"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the outbox."""

    event: CloudEvent
    exchange: str
    routing_key: str | None = None
    headers: Mapping[str, Any] | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ends: the values recorded on its row and the messages sent with them."""

    status: str
    values: dict[str, Any]
    messages: list[Outgoing] = field(default_factory=list)
    will_retry: bool = False
    next_attempt_at: datetime | None = None
    delay_seconds: int | None = None
    dead_letter: DeadLetterKind | None = None
    error: str | None = None


def _row_values(
    status: str,
    *,
    finished_at: datetime,
    exit_code: int | None,
    error: str | None,
    next_at: datetime | None,
) -> dict[str, Any]:
    return {
        "status": status,
        "finished_at": finished_at,
        "exit_code": exit_code,
        "error": error,
        "will_retry": next_at is not None,
        "next_attempt_at": next_at,
        "lease_expires_at": None,
        "request": None,
    }


def _failure(
    request: RunRequested,
    outcome: RunOutcome,
    *,
    started_at: datetime,
    finished_at: datetime,
    routes: RetryRoutes,
    rand: Rand,
    lost_total: int,
    max_lost: int,
    status: str,
) -> Ending:
    decision = after_failure(
        attempt=request.attempt,
        retries=request.job.retries,
        error=outcome.error or outcome.status.replace("_", " "),
        permanent=outcome.permanent,
        lost_total=lost_total,
        max_lost=max_lost,
    )
    if decision.retry:
        backoff = request.job.retry_backoff
        delay = retry_delay(request.attempt, backoff.base_seconds, backoff.max_seconds, rand=rand)
        next_at = finished_at + timedelta(seconds=delay)
        terminal = outcome_event(
            request, outcome, started_at=started_at, finished_at=finished_at, next_attempt_at=next_at
        )
        retry = Outgoing(
            retry_request(request, next_attempt_at=next_at), RETRY, routes[delay], priority=request.job.priority
        )
        values = _row_values(
            status, finished_at=finished_at, exit_code=outcome.exit_code, error=decision.error, next_at=next_at
        )
        return Ending(
            status,
            values,
            [Outgoing(terminal, EVENTS), retry],
            will_retry=True,
            next_attempt_at=next_at,
            delay_seconds=delay,
            error=decision.error,
        )
    final = RunOutcome(
        status=outcome.status, exit_code=outcome.exit_code, error=decision.error, outputs=outcome.outputs
    )
    terminal = outcome_event(request, final, started_at=started_at, finished_at=finished_at, next_attempt_at=None)
    assert decision.dead_letter_reason is not None
    letter, headers = dead_letter(request, reason=decision.dead_letter_reason, at=finished_at)
    values = _row_values(
        status, finished_at=finished_at, exit_code=outcome.exit_code, error=decision.error, next_at=None
    )
    return Ending(
        status,
        values,
        [Outgoing(terminal, EVENTS), Outgoing(letter, DLX, RUN_REQUESTED, headers=headers)],
        dead_letter="poison" if decision.poison else "final_failure",
        error=decision.error,
    )


def plan_outcome(
    request: RunRequested,
    outcome: RunOutcome,
    *,
    started_at: datetime,
    finished_at: datetime,
    routes: RetryRoutes,
    rand: Rand = random.uniform,
) -> Ending:
    """The steps ran to ``outcome``: success, or a failure followed by a retry or the final failure."""
    if outcome.succeeded:
        event = outcome_event(request, outcome, started_at=started_at, finished_at=finished_at, next_attempt_at=None)
        values = _row_values(
            outcome.status, finished_at=finished_at, exit_code=outcome.exit_code, error=None, next_at=None
        )
        return Ending(outcome.status, values, [Outgoing(event, EVENTS)])
    return _failure(
        request,
        outcome,
        started_at=started_at,
        finished_at=finished_at,
        routes=routes,
        rand=rand,
        lost_total=0,
        max_lost=0,
        status=outcome.status,
    )


def plan_lost(
    request: RunRequested,
    *,
    started_at: datetime,
    finished_at: datetime,
    lost_total: int,
    max_lost: int,
    routes: RetryRoutes,
    rand: Rand = random.uniform,
) -> Ending:
    """The attempt's executor vanished (``lost_total`` lost attempts so far, this one included)."""
    ending = _failure(
        request,
        RunOutcome(status="failed", error=LOST_ERROR),
        started_at=started_at,
        finished_at=finished_at,
        routes=routes,
        rand=rand,
        lost_total=lost_total,
        max_lost=max_lost,
        status="lost",
    )
    ending.values.update(lost_at=finished_at, lost_count=lost_total)
    return ending


def plan_cancelled(request: RunRequested, *, finished_at: datetime, reason: str) -> Ending:
    """The attempt was stopped, or dropped before it started, on request: no retry, no dead letter."""
    event = cancelled_event(request, finished_at=finished_at, reason=reason)
    values = _row_values("cancelled", finished_at=finished_at, exit_code=None, error=reason, next_at=None)
    return Ending("cancelled", values, [Outgoing(event, EVENTS)], error=reason)


async def enqueue_ending(session: AsyncSession, ending: Ending) -> None:
    """Write the ending's messages to the outbox (plain ones in one statement)."""
    await enqueue_all(session, ending.messages)


async def enqueue_all(session: AsyncSession, messages: list[Outgoing]) -> None:
    """Write messages to the outbox in the caller's transaction."""
    plain = [(m.event, m.exchange, m.routing_key) for m in messages if m.headers is None and m.priority is None]
    if plain:
        await enqueue(session, outbox, plain)
    for m in messages:
        if m.headers is not None or m.priority is not None:
            await enqueue(
                session,
                outbox,
                m.event,
                exchange=m.exchange,
                routing_key=m.routing_key,
                headers=m.headers,
                priority=m.priority,
            )
