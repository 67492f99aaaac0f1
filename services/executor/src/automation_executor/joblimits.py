"""Per-job resource limits on top of the executor's.

The executor sets limits for every execution (``AUTOMATION_EXECUTOR_MAX_*``); a job may ask for lower
ones (``limits`` in its definition). The effective limit is the lower of the two, a missing one on
either side meaning "no limit from this side": a job can tighten its sandbox, never loosen it.
:class:`JobLimitsRunner` runs each request with a child runner configured with the effective limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from automation_contracts import ResourceLimits, RunRequested
from automation_executor.domain.outcome import RunOutcome
from automation_executor.logstream import LogSink
from automation_executor.settings import ExecutorSettings

LIMIT_SETTINGS = {
    "address_space_bytes": "executor_max_address_space_bytes",
    "cpu_seconds": "executor_max_cpu_seconds",
    "open_files": "executor_max_open_files",
    "file_size_bytes": "executor_max_file_size_bytes",
}
"""Job limit field → the executor setting it tightens."""


class Runner(Protocol):
    """Runs an execution's steps once (:class:`~automation_executor.runner.ChildRunner`)."""

    async def run(self, request: RunRequested, logs: LogSink) -> RunOutcome: ...


def _lower(executor: int | None, job: int | None) -> int | None:
    if executor is None:
        return job
    if job is None:
        return executor
    return min(executor, job)


def effective_settings(settings: ExecutorSettings, limits: ResourceLimits | None) -> ExecutorSettings:
    """``settings`` with each limit lowered to the job's where the job asks for less."""
    if limits is None:
        return settings
    update: dict[str, int | None] = {}
    for field, setting in LIMIT_SETTINGS.items():
        current = getattr(settings, setting)
        wanted = _lower(current, getattr(limits, field))
        if wanted != current:
            update[setting] = wanted
    return settings.model_copy(update=update) if update else settings


class JobLimitsRunner:
    """A runner that applies each job's own limits (a child runner per job that has some)."""

    def __init__(self, settings: ExecutorSettings, factory: Callable[[ExecutorSettings], Runner]) -> None:
        self._settings = settings
        self._factory = factory
        self._default = factory(settings)

    def runner_for(self, request: RunRequested) -> Runner:
        """The runner configured for this request's job."""
        settings = effective_settings(self._settings, request.job.limits)
        return self._default if settings is self._settings else self._factory(settings)

    async def run(self, request: RunRequested, logs: LogSink) -> RunOutcome:
        """Run the request's steps with the job's effective limits."""
        return await self.runner_for(request).run(request, logs)
