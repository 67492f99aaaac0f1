"""Executor settings: the shared ``AUTOMATION_*`` base plus the worker pool's own knobs."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from automation_core.settings import ServiceSettings
from automation_executor.domain.protocol import DEFAULT_MAX_RESULT_BYTES

KIB = 1024
MIB = 1024 * KIB


class ExecutorSettings(ServiceSettings):
    """Configuration of one executor replica (environment variables ``AUTOMATION_EXECUTOR_*``)."""

    service_name: str = "executor"
    http_port: int = Field(default=8002, ge=1, le=65535)

    executor_concurrency: int = Field(default=4, ge=1, le=256)
    """Executions run at once by this replica; also the consumer's prefetch."""
    executor_worker_id: str | None = Field(default=None, min_length=1, max_length=200)
    """Name of this replica in attempts and ``execution.started``; default ``<hostname>:<pid>:<random>``."""
    executor_kill_grace_seconds: float = Field(default=5.0, ge=0, le=300)
    """Time between SIGTERM and SIGKILL when an execution times out."""
    executor_workdir_root: str | None = None
    """Parent directory of the per-execution temporary working directories (default: the system's).

    An absolute path; the replica does not start when it cannot create a directory there."""

    executor_max_log_bytes: int = Field(default=MIB, ge=KIB, le=256 * MIB)
    """Step output kept per attempt (each retry has its own); beyond it output is dropped behind a
    ``[log truncated]`` entry."""
    executor_max_line_bytes: int = Field(default=8 * KIB, ge=64, le=MIB)
    """Longest log line; longer lines are cut."""
    executor_log_batch_seconds: float = Field(default=0.2, gt=0, le=10)
    """Longest time a log line waits before its ``execution.log`` batch is published."""
    executor_log_batch_entries: int = Field(default=100, ge=1, le=10_000)
    """Most entries in one ``execution.log`` batch."""
    executor_stdout_tail_bytes: int = Field(default=4 * KIB, ge=0, le=MIB)
    """Size of the ``stdout_tail`` a shell step keeps as its output."""
    executor_http_max_body_bytes: int = Field(default=64 * KIB, ge=0, le=64 * MIB)
    """Largest HTTP response body kept as an http step's output."""
    executor_max_result_bytes: int = Field(default=DEFAULT_MAX_RESULT_BYTES, ge=MIB, le=512 * MIB)
    """Most step output (as JSON, the check's included) an attempt keeps; a step whose output would pass it
    fails. Keep it below RabbitMQ's ``max_message_size``: the outcome event carries the outputs."""

    executor_max_open_files: int = Field(default=1024, ge=16, le=1_048_576)
    """RLIMIT_NOFILE of the child process and its commands."""
    executor_max_address_space_bytes: int | None = Field(default=None, ge=64 * MIB)
    """RLIMIT_AS of the child process and its commands; unset means no limit."""
    executor_max_cpu_seconds: int | None = Field(default=None, ge=1)
    """RLIMIT_CPU (per process) of the child process and its commands; unset means no limit."""
    executor_max_file_size_bytes: int | None = Field(default=None, ge=KIB)
    """RLIMIT_FSIZE of the child process and its commands; unset means no limit."""

    executor_lease_seconds: float = Field(default=30.0, ge=0.5, le=3600)
    """Lease of a running attempt; the heartbeat renews it every third of it. Expired: the attempt is lost."""
    executor_reaper_interval_seconds: float | None = Field(default=None, gt=0, le=3600)
    """How often each replica looks for expired leases (default: a third of the lease)."""
    executor_max_lost: int = Field(default=3, ge=1, le=100)
    """Lost attempts after which a run is poison: it fails for good and is dead-lettered."""
    executor_throttle_delay_seconds: int = Field(default=1, ge=1, le=60)
    """Delay before a run over its job's ``max_concurrency`` is offered again (rounded to the retry ladder)."""
    executor_cancellation_retention_seconds: float = Field(default=7 * 86400, ge=60)
    """How long a cancellation is remembered for runs that have not arrived yet."""
    executor_launcher: Literal["forkserver", "spawn"] = "forkserver"
    """How children start: forked from a pre-imported fork server (falls back to spawning), or spawned."""
    executor_forkserver_preload: list[str] = Field(
        default_factory=lambda: [
            "httpx",
            "automation_executor.child.shell",
            "automation_executor.child.http",
            "automation_executor.child.python_step",
        ]
    )
    """Modules the fork server imports besides the child's own (JSON list in the environment).

    The common step runners are imported once in the fork server so no child imports them again
    (measured +50 % shell and +90 % python runs/s in make bench-executor); ssh and winrm are learned on use
    (``executor_preload_step_runners``).
    """
    executor_preload_handlers: bool = True
    """Once a child has loaded a declared ``python`` handler, the fork server imports its module too, so
    later children find it loaded instead of importing (and, without bytecode, compiling) it each run.
    The module's top-level code then runs once, in the fork server. ``false``: every child imports it.
    """
    executor_preload_step_runners: bool = True
    """Once a child has run a step whose runner the fork server does not preload (``ssh.exec``, the sftp
    steps, ``winrm.*``), the fork server imports that runner too, so later children skip its import
    (asyncssh: ~0.4 s, pywinrm: ~0.3 s of CPU per run here). The server grows by what it imports
    (asyncssh 25 MiB, pywinrm 15 MiB), and every later fork costs in proportion (~1 ms per child with
    asyncssh here). ``false``: every child imports them itself.
    """
    executor_child_fast_path: bool = True
    """A job of ``shell`` and ``python`` steps only runs in its child without an event loop (the
    blocking path): ~2 ms less CPU per child. ``false`` runs every job on the child's asyncio loop.
    """
    executor_direct_commands: bool = True
    """A job of ``shell``, ``event.emit`` and ``browser`` steps only runs without a child: the executor
    runs its steps and a small command server (~12 MiB) starts each command in its own process group
    under the job's limits (:mod:`automation_executor.direct`). ``false`` runs such jobs in a child
    like every other job.
    """
    executor_secrets_dir: str | None = None
    """Directory of secrets, one file per secret NAME (as Kubernetes mounts a Secret); unset: none."""
    executor_secret_sources: str = Field(default="dir,env", pattern=r"^\s*(dir|env)\s*(,\s*(dir|env)\s*)?$")
    """Where secrets are looked up, in order: ``dir``, ``env`` (``AUTOMATION_SECRET_<NAME>``), comma-separated."""

    @property
    def heartbeat_seconds(self) -> float:
        """Interval of lease renewals: a third of the lease."""
        return self.executor_lease_seconds / 3

    @property
    def reaper_interval_seconds(self) -> float:
        """Interval of the expired-lease scan."""
        return self.executor_reaper_interval_seconds or self.executor_lease_seconds / 3

    @field_validator("executor_workdir_root")
    @classmethod
    def _absolute_workdir_root(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isabs(value):
            raise ValueError(f"must be an absolute path, not {value!r}")
        return value
