"""Recording execution events in batches: the group commit, the in-memory fold and the notify payloads."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from automation_contracts import ExecutionFailed, ExecutionStarted, ExecutionSucceeded
from automation_job_api.domain.executions import ExecutionState, Phase, observe
from automation_job_api.domain.notifications import notify_payloads, parse_payload
from automation_job_api.service.executions import (
    BatchFailed,
    ForeignExecution,
    GroupCommit,
    RecordedEvent,
    _fold,
    _Row,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Recorder:
    """An ``apply_batch`` that records its batches; answers ``item * 10``, or an error for negatives."""

    def __init__(self, *, fail_with: BaseException | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_with = fail_with
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> list[int | ValueError]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_callers_arriving_together_share_one_batch_and_get_their_own_answers() -> None:
    recorder = Recorder()
    commits: GroupCommit[int, int | ValueError] = GroupCommit(recorder, max_batch=10)
    answers = await asyncio.gather(*(commits.submit(i) for i in range(1, 6)))
    assert answers == [10, 20, 30, 40, 50]
    assert recorder.batches == [[1, 2, 3, 4, 5]]
    assert await commits.submit(7) == 70, "alone, an item is written at once"
    assert recorder.batches[-1] == [7]


async def test_callers_arriving_during_a_batch_go_in_the_next_one_bounded_by_max_batch() -> None:
    recorder = Recorder()
    recorder.release.clear()
    commits: GroupCommit[int, int | ValueError] = GroupCommit(recorder, max_batch=3)
    first = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0.01)
    assert recorder.batches == [[1]]
    later = [asyncio.create_task(commits.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0.01)
    recorder.release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40, 50, 60]
    assert recorder.batches == [[1], [2, 3, 4], [5, 6]]


async def test_an_error_answer_is_raised_to_its_own_caller_only() -> None:
    commits: GroupCommit[int, int | ValueError] = GroupCommit(Recorder())
    results = await asyncio.gather(commits.submit(1), commits.submit(-2), commits.submit(3), return_exceptions=True)
    assert results[0] == 10
    assert results[2] == 30
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad -2"


async def test_a_failed_batch_fails_every_caller_and_the_next_batch_still_runs() -> None:
    recorder = Recorder(fail_with=OSError("database gone"))
    commits: GroupCommit[int, int | ValueError] = GroupCommit(recorder)
    results = await asyncio.gather(commits.submit(1), commits.submit(2), return_exceptions=True)
    assert isinstance(results[0], OSError)
    assert isinstance(results[1], BatchFailed)
    assert "database gone" in str(results[1])
    recorder.fail_with = None
    assert await commits.submit(4) == 40


async def test_a_cancelled_waiter_leaves_the_queue_and_the_lead_passes_on() -> None:
    recorder = Recorder()
    recorder.release.clear()
    commits: GroupCommit[int, int | ValueError] = GroupCommit(recorder)
    leader = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(commits.submit(2))
    kept = asyncio.create_task(commits.submit(3))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    recorder.release.set()
    assert (await leader, await kept) == (10, 30)
    assert gone.cancelled()
    assert recorder.batches == [[1], [3]]


async def test_a_waiter_cancelled_as_its_turn_comes_hands_the_lead_to_the_next() -> None:
    recorder = Recorder()
    recorder.release.clear()
    commits: GroupCommit[int, int | ValueError] = GroupCommit(recorder, max_batch=1)
    leader = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0.01)
    heir = asyncio.create_task(commits.submit(2))
    after = asyncio.create_task(commits.submit(3))
    await asyncio.sleep(0.01)
    recorder.release.set()
    assert await leader == 10  # the lead is now heir's, which has not run yet
    heir.cancel()
    assert await after == 30, "the lead must not be lost with the cancelled heir"
    with pytest.raises(asyncio.CancelledError):
        await heir
    assert await commits.submit(4) == 40


def _event(execution: uuid.UUID, event_type: str, attempt: int = 1, **extra: object) -> RecordedEvent:
    job, account = uuid.UUID(int=1), uuid.UUID(int=2)
    ids = {"execution_id": execution, "job_id": job, "account_id": account, "attempt": attempt}
    data: ExecutionStarted | ExecutionSucceeded | ExecutionFailed
    if event_type == "execution.started":
        data = ExecutionStarted(**ids, started_at=T0, worker="w")  # type: ignore[arg-type]
    elif event_type == "execution.succeeded":
        data = ExecutionSucceeded(**ids, started_at=T0, finished_at=T0)  # type: ignore[arg-type]
    else:
        data = ExecutionFailed(**ids, started_at=T0, finished_at=T0, error="x", will_retry=True)  # type: ignore[arg-type]
    return RecordedEvent(
        observation=observe(event_type, data),
        execution_id=execution,
        account_id=extra.get("account", account),  # type: ignore[arg-type]
        job_id=job,
        trigger="manual" if event_type == "execution.started" else None,
    )


def test_a_batch_folds_like_one_transaction_per_event_in_arrival_order() -> None:
    new, known, foreign = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = {
        known: _Row(known, uuid.UUID(int=2), uuid.UUID(int=1), "schedule", None, ExecutionState.queued()),
        foreign: _Row(foreign, uuid.UUID(int=3), uuid.UUID(int=1), "schedule", None, ExecutionState.queued()),
    }
    events = [
        _event(new, "execution.succeeded"),  # the outcome first: the row is created finished
        _event(new, "execution.started"),  # a late start changes no status, but names the trigger
        _event(known, "execution.started"),
        _event(known, "execution.failed"),  # will retry: queued again
        _event(known, "execution.started", attempt=2),
        _event(foreign, "execution.started"),
    ]
    plan = _fold(events, rows)
    assert plan.results[:5] == [True, False, True, True, True]
    assert isinstance(plan.results[5], ForeignExecution)
    assert plan.recorded == ["succeeded", "running", "queued", "running"]
    assert plan.notify == [new, known]
    created = plan.rows[new]
    assert (created.new, created.trigger, created.state.status) == (True, "manual", "succeeded")
    assert (plan.rows[known].state.status, plan.rows[known].state.attempt) == ("running", 2)
    assert plan.rows[known].state.phase is Phase.RUNNING
    assert plan.rows[known].dirty
    assert not plan.rows[foreign].dirty


def test_notify_payloads_carry_many_ids_within_the_limit_and_parse_back() -> None:
    ids = [uuid.uuid4() for _ in range(500)]
    payloads = notify_payloads(ids)
    assert len(payloads) == 3
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert [i for p in payloads for i in parse_payload(p)] == ids
    assert notify_payloads([]) == []
    assert parse_payload(f"{ids[0]},not-a-uuid,{ids[1]}") == ids[:2]
