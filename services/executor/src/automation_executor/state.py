"""The typed state of a running executor app (``app.state.executor``), built by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from automation_executor.launch import Launcher
from automation_executor.pool import WorkerPool
from automation_executor.sandbox import SandboxStatus
from automation_executor.service import AttemptService
from automation_executor.settings import ExecutorSettings


@dataclass(frozen=True, slots=True)
class ExecutorState:
    """What the HTTP API reads: settings, the attempt use cases, this replica's pool and capabilities."""

    settings: ExecutorSettings
    service: AttemptService
    pool: WorkerPool
    sandbox: SandboxStatus
    launcher: Launcher
    workdir_root: str
    """Where runs' working directories go (checked at start-up)."""
    workdir_filesystem: str | None
    """The type of the filesystem it is on (``tmpfs``, ``ext4`` …); None where it cannot be read."""
