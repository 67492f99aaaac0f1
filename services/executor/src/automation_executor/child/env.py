"""What every step runner gets besides its step and templates: the spec, the emitter, the bridge, the workdir."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from automation_contracts.steps import check_relative_path
from automation_executor.child.bridge import BridgeClient
from automation_executor.child.emitter import Emitter
from automation_executor.domain.protocol import ChildSpec
from automation_executor.processes import Spawned, spawn


class CommandSpawner(Protocol):
    """How a ``shell`` step starts its command: stdin ``/dev/null``, stdout and stderr piped."""

    async def __call__(self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> Spawned: ...


def never() -> bool:
    """The default of :attr:`StepEnv.stopping`: a child learns of a stop by its signal, not by asking."""
    return False


class PathOutsideWorkdir(ValueError):
    """A local path (after templates and symlinks) that leaves the execution's working directory."""


@dataclass
class StepEnv:
    """The execution-wide services a step runner uses."""

    spec: ChildSpec
    emitter: Emitter
    bridge: BridgeClient
    workdir: str
    blocking: bool = False
    """On the child's blocking path: runners must never wait for an event loop."""
    spawn: CommandSpawner = spawn
    """Starts a shell step's command: as a child of this process, or (in the executor, for a job of
    commands, requests, events and browser tasks) from the command server (:mod:`automation_executor.direct`)."""
    stopping: Callable[[], bool] = never
    """Whether the run is being stopped (cancelled): then no further step starts. The executor, running
    a job of commands itself, asks its slot; a child's stop is its signal, which ends the child."""
    output_bytes: int = 0
    """What the outputs kept so far take as JSON (see :attr:`ChildSpec.max_result_bytes`)."""
    _emits: dict[str, itertools.count[int]] = field(default_factory=dict)

    def emit_key(self, step: str) -> str:
        """A key naming the next event a step emits (``<step>:<n>``); the executor derives the event id."""
        counter = self._emits.setdefault(step, itertools.count())
        return f"{step}:{next(counter)}"

    def local_path(self, relative: str) -> Path:
        """``relative`` inside the working directory, symlinks resolved; :class:`PathOutsideWorkdir` otherwise."""
        try:
            check_relative_path(relative)
        except ValueError as exc:
            raise PathOutsideWorkdir(f"local_path {relative!r}: {exc}") from exc
        root = Path(self.workdir).resolve()
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            raise PathOutsideWorkdir(f"local_path {relative!r} leads outside the working directory")
        return path
