"""Response models of the executor API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class AttemptOut(BaseModel):
    """One attempt of an execution, as this executor recorded it."""

    execution_id: uuid.UUID
    attempt: int
    job_id: uuid.UUID
    account_id: uuid.UUID
    job_version: int
    trigger: str
    status: str
    worker_id: str
    lost_count: int
    run_count: int
    requested_at: datetime
    started_at: datetime
    finished_at: datetime | None
    lost_at: datetime | None
    lease_expires_at: datetime | None
    exit_code: int | None
    error: str | None
    will_retry: bool | None
    next_attempt_at: datetime | None


class AttemptPage(BaseModel):
    """A page of attempts, oldest first; ``next_cursor`` is null on the last page."""

    items: list[AttemptOut]
    next_cursor: str | None


class WorkerOut(BaseModel):
    """This executor replica."""

    id: str
    concurrency: int
    running: int
    utilization: float
    draining: bool
    launcher: str
    direct_commands: bool
    """Whether jobs of ``shell``, ``event.emit`` and ``browser`` steps only run without a child here now
    (the command server is up)."""
    preloaded_handlers: list[str]
    """The ``python`` handlers whose modules the fork server holds now, so that children do not import
    them (``AUTOMATION_EXECUTOR_PRELOAD_HANDLERS``), sorted."""
    preloaded_step_runners: list[str]
    """The step runner modules the fork server imported after a child used them (e.g.
    ``automation_executor.child.ssh``; ``AUTOMATION_EXECUTOR_PRELOAD_STEP_RUNNERS``), sorted. Those it
    preloads from the start (``AUTOMATION_EXECUTOR_FORKSERVER_PRELOAD``) are not listed."""
    sandbox_available: bool
    sandbox_problem: str | None
    workdir_root: str
    """Where this replica makes runs' working directories (``AUTOMATION_EXECUTOR_WORKDIR_ROOT``)."""
    workdir_filesystem: str | None
    """The filesystem type of ``workdir_root`` (``tmpfs``: in memory); null where it cannot be read."""
