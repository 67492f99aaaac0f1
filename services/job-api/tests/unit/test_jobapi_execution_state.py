"""The monotonic rules of the executions read model."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from automation_contracts import EVENT_MODELS, CloudEvent, build_event
from automation_job_api.consumers import trigger_of
from automation_job_api.domain.executions import ExecutionState, Observation, Phase, apply, observe

EXECUTION = str(uuid.uuid4())
JOB = str(uuid.uuid4())
ACCOUNT = str(uuid.uuid4())
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def _data(event_type: str, **fields: Any) -> BaseModel:
    body = {"execution_id": EXECUTION, "job_id": JOB, "account_id": ACCOUNT, **fields}
    return EVENT_MODELS[event_type].model_validate(body)


def started(attempt: int, at: int) -> tuple[str, BaseModel]:
    return "execution.started", _data("execution.started", attempt=attempt, started_at=_at(at), worker="w1")


def log(attempt: int, seq: int) -> tuple[str, BaseModel]:
    entry = {"ts": _at(seq), "stream": "stdout", "step": "s", "text": f"line {seq}"}
    return "execution.log", _data("execution.log", attempt=attempt, seq=seq, entries=[entry], truncated=False)


def failed(attempt: int, at: int, *, will_retry: bool, kind: str = "execution.failed") -> tuple[str, BaseModel]:
    return kind, _data(
        kind,
        attempt=attempt,
        started_at=_at(at - 1),
        finished_at=_at(at),
        exit_code=3,
        error=f"attempt {attempt} exited 3",
        will_retry=will_retry,
    )


def succeeded(attempt: int, at: int) -> tuple[str, BaseModel]:
    return "execution.succeeded", _data(
        "execution.succeeded",
        attempt=attempt,
        started_at=_at(at - 1),
        finished_at=_at(at),
        exit_code=0,
        result={"ok": 1},
    )


def cancelled(attempt: int, at: int) -> tuple[str, BaseModel]:
    return "execution.cancelled", _data("execution.cancelled", attempt=attempt, finished_at=_at(at), reason="asked to")


def replay(events: list[tuple[str, BaseModel]], start: ExecutionState | None = None) -> ExecutionState:
    state = start
    for event_type, data in events:
        state = apply(state, observe(event_type, data))
    assert state is not None
    return state


def test_a_retried_run_in_order() -> None:
    state = ExecutionState.queued()
    state = replay([started(1, 1)], state)
    assert (state.status, state.attempt, state.started_at) == ("running", 1, T0 + timedelta(seconds=1))
    state = replay([failed(1, 5, will_retry=True)], state)
    assert (state.status, state.attempt, state.error, state.exit_code) == ("queued", 1, "attempt 1 exited 3", 3)
    assert state.finished_at is None
    state = replay([started(2, 10)], state)
    assert (state.status, state.attempt, state.started_at) == ("running", 2, T0 + timedelta(seconds=10))
    assert state.error == "attempt 1 exited 3"  # the last error stays visible while retrying
    assert state.exit_code is None
    state = replay([succeeded(2, 12)], state)
    assert state == ExecutionState(
        status="succeeded",
        attempt=2,
        phase=Phase.FINISHED,
        started_at=T0 + timedelta(seconds=11),
        finished_at=T0 + timedelta(seconds=12),
        exit_code=0,
        error=None,
        result={"ok": 1},
    )


RETRIED_RUN = [started(1, 1), log(1, 0), failed(1, 5, will_retry=True), started(2, 10), log(2, 0), succeeded(2, 12)]


def test_every_order_of_the_events_ends_in_the_same_state() -> None:
    expected = replay(RETRIED_RUN, ExecutionState.queued())
    for shuffled in itertools.permutations(RETRIED_RUN):
        assert replay(list(shuffled), ExecutionState.queued()) == expected
        assert replay(list(shuffled)) == expected  # a scheduled run first seen through its events


def test_duplicates_change_nothing() -> None:
    state = replay(RETRIED_RUN, ExecutionState.queued())
    for event in RETRIED_RUN:
        assert replay([event], state) == state


def test_a_lower_attempt_never_overwrites_a_higher_one() -> None:
    state = replay([started(2, 10)])
    assert replay([failed(1, 5, will_retry=False)], state) == state
    assert replay([succeeded(1, 5)], state) == state


def test_within_an_attempt_terminal_beats_running_beats_queued() -> None:
    finished = replay([succeeded(1, 5)], ExecutionState.queued())
    assert replay([started(1, 1)], finished).status == "succeeded"
    assert replay([log(1, 7)], finished).status == "succeeded"
    running = replay([started(1, 1)], ExecutionState.queued())
    assert running.status == "running"


def test_the_first_terminal_event_of_an_attempt_wins() -> None:
    state = replay([failed(1, 5, will_retry=False)])
    assert replay([cancelled(1, 6)], state) == state
    assert replay([succeeded(1, 7)], state) == state


def test_a_late_start_fills_the_start_time_a_log_could_not_give() -> None:
    state = replay([log(1, 0)], ExecutionState.queued())
    assert (state.status, state.started_at) == ("running", None)
    state = replay([started(1, 1)], state)
    assert state.started_at == T0 + timedelta(seconds=1)
    state = replay([cancelled(1, 4)])
    assert replay([started(1, 1)], state).started_at == T0 + timedelta(seconds=1)
    assert replay([started(1, 1)], state).status == "cancelled"


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (failed(1, 5, will_retry=False), "failed"),
        (failed(1, 5, will_retry=False, kind="execution.timed_out"), "timed_out"),
        (failed(1, 5, will_retry=True, kind="execution.timed_out"), "queued"),
        (cancelled(1, 5), "cancelled"),
        (succeeded(1, 5), "succeeded"),
    ],
)
def test_terminal_events_map_to_statuses(event: tuple[str, BaseModel], status: str) -> None:
    state = replay([event])
    assert state.status == status
    assert state.phase is Phase.FINISHED


def test_a_finished_attempt_with_retries_left_then_a_new_attempt_seen_only_through_logs() -> None:
    state = replay([failed(1, 5, will_retry=True), log(2, 0)])
    assert (state.status, state.attempt, state.error) == ("running", 2, "attempt 1 exited 3")


def test_observe_refuses_what_is_not_an_execution_event() -> None:
    with pytest.raises(ValueError, match="not an execution event"):
        observe("job.created", _data("execution.started", attempt=1, started_at=_at(0), worker="w"))
    assert observe(*started(3, 0)) == Observation(3, Phase.RUNNING, "running", started_at=T0)


def _event(trigger: str | None = None) -> CloudEvent:
    data = {"execution_id": EXECUTION}
    if trigger is None:
        return build_event("execution.started", source="/test", data=data)
    return build_event("execution.started", source="/test", data=data, trigger=trigger)


def test_the_trigger_of_a_run_first_seen_through_events() -> None:
    assert trigger_of(_event()) is None
    assert trigger_of(_event("event")) == "event"
    assert trigger_of(_event("bogus")) is None
    data_trigger = build_event("execution.started", source="/test", data={"trigger": "backfill"})
    assert trigger_of(data_trigger) == "backfill"
