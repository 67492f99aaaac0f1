"""The ``python`` step: call a declared handler ``package.module:function`` with a context and ``args``.

**Manifests.** Only declared handlers run. A handler is declared when

- the ``automation-handlers`` entry-point group of an installed distribution has an entry whose value is
  the handler (``[project.entry-points."automation-handlers"] ping = "pkg.mod:ping"``), or
- the handler's module, or a package above it, has a list attribute ``automation_handlers`` naming it
  (``automation_handlers = ["pkg.mod:ping"]`` in ``pkg/__init__.py``).

Anything else (``os:system``, ``subprocess:run``, a module the job planted in its working directory:
the child runs ``python -P``, so the working directory is never on ``sys.path``) is refused before the
handler's module is imported.

**Calling.** ``args`` are rendered (a string that is exactly one template keeps the value's JSON type)
and passed as keyword arguments after the context (:mod:`automation_executor.handlers`). The handler
runs in a daemon thread: a plain function directly, an ``async def`` on an event loop of its own. Its
``print()`` and log records become lines of the execution log. Its return value, which must be JSON,
is the step output; an exception fails the step, with the traceback in the log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import importlib.metadata
import inspect
import json
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from automation_executor.child.blocking import Terminated, timed_out
from automation_executor.child.bridge import BridgeClient
from automation_executor.child.emitter import Emitter
from automation_executor.child.env import StepEnv
from automation_executor.domain.protocol import LogStream, StepMessage
from automation_executor.domain.steps import ParsedStep, PythonConfig
from automation_executor.domain.templates import TemplateContext, render_json
from automation_executor.handlers import AsyncContext, Context

ENTRY_POINT_GROUP = "automation-handlers"
MANIFEST_ATTRIBUTE = "automation_handlers"
CANCEL_WAIT_SECONDS = 1.0

EntryPoints = Callable[[], Iterable[importlib.metadata.EntryPoint]]


class HandlerRefused(Exception):
    """The handler is not declared, cannot be imported, or is not a function."""


_prepared_entry_points: tuple[importlib.metadata.EntryPoint, ...] | None = None


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    if _prepared_entry_points is not None:
        return _prepared_entry_points
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def prepare_fork() -> None:
    """Read the ``automation-handlers`` entry points once, in the fork server, for every child it forks.

    Reading them scans the metadata of every installed distribution (~5 ms); a child forked after
    this finds them in memory. Distributions installed later need a restart of the executor, as
    their modules do anyway.
    """
    global _prepared_entry_points  # noqa: PLW0603 - the fork server's one-time preparation
    _prepared_entry_points = tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _declared_by_module(handler: str) -> bool:
    module_name = handler.split(":", 1)[0]
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise HandlerRefused(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc
        declared = getattr(module, MANIFEST_ATTRIBUTE, None)
        if isinstance(declared, list | tuple) and handler in declared:
            return True
    return False


def is_declared(handler: str, entry_points: EntryPoints = _entry_points) -> bool:
    """Whether a manifest declares ``handler`` (imports only the packages above it and its module).

    The module's own manifest is looked at first (the module is imported to run the handler anyway);
    the entry points, which are dearer to read, only when it does not declare the handler.
    """
    try:
        if _declared_by_module(handler):
            return True
    except HandlerRefused:
        if not any(ep.value.replace(" ", "") == handler for ep in entry_points()):
            raise
        return True
    return any(ep.value.replace(" ", "") == handler for ep in entry_points())


def load_handler(handler: str, entry_points: EntryPoints = _entry_points) -> Callable[..., Any]:
    """The declared handler's function; :class:`HandlerRefused` otherwise."""
    if not is_declared(handler, entry_points):
        raise HandlerRefused(
            f"handler {handler!r} is not declared: list it in the {MANIFEST_ATTRIBUTE} of its module or package,"
            f" or in the {ENTRY_POINT_GROUP!r} entry points of its distribution"
        )
    module_name, function_name = handler.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerRefused(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise HandlerRefused(f"handler {handler!r}: {module_name} has no function {function_name}")
    return function  # type: ignore[no-any-return]


class _LogHandler(logging.Handler):
    def __init__(self, emitter: Emitter, step: str) -> None:
        super().__init__(logging.DEBUG)
        self._emitter = emitter
        self._step = step

    def emit(self, record: logging.LogRecord) -> None:
        stream: LogStream = "stderr" if record.levelno >= logging.WARNING else "stdout"
        text = self.format(record)
        for line in text.splitlines() or [""]:
            self._emitter.log(stream, self._step, line)


class _LineWriter:
    """A text stream whose lines go to the execution log (``print()`` in a handler)."""

    def __init__(self, emitter: Emitter, stream: LogStream, step: str) -> None:
        self._emitter = emitter
        self._stream: LogStream = stream
        self._step = step
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            self._emitter.log(self._stream, self._step, line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            partial, self._partial = self._partial, ""
        if partial:
            self._emitter.log(self._stream, self._step, partial)


def step_logger(emitter: Emitter, step: str) -> logging.Logger:
    """A logger for one step whose records become log lines (not registered globally)."""
    logger = logging.Logger(f"automation.handler.{step}", logging.INFO)
    handler = _LogHandler(emitter, step)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


class _Platform:
    """:class:`automation_executor.handlers.Platform` over the child's bridge."""

    def __init__(self, bridge: BridgeClient, step: str) -> None:
        self._bridge = bridge
        self._step = step

    def request(self, op: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        if op not in {"emit", "browser"}:
            raise ValueError(f"unknown request {op!r}")
        return self._bridge.submit(op, args, step=self._step)  # type: ignore[arg-type]  # checked above

    def secret(self, name: str) -> concurrent.futures.Future[str]:
        return self._bridge.submit_secret(name, step=self._step)


@dataclass
class _Call:
    """One handler call in its thread; ``loop``/``task`` let an async handler be cancelled."""

    function: Callable[..., Any]
    args: dict[str, Any]
    context_kwargs: dict[str, Any]
    done: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    trace: str = ""
    """The traceback of what the handler raised, as it stood in the handler's thread (none of the
    waiting side's frames)."""

    def _settle(self, value: Any, error: BaseException | None) -> None:
        # Cancelled, or the child's loop is gone (an abandoned handler ending late): nobody waits any more.
        with contextlib.suppress(concurrent.futures.InvalidStateError, RuntimeError):
            if error is not None:
                self.done.set_exception(error)
            else:
                self.done.set_result(value)

    def run(self) -> None:
        try:
            if inspect.iscoroutinefunction(self.function):
                value = asyncio.run(self._run_async())
            else:
                context = Context(**self.context_kwargs)
                try:
                    value = self.function(context, **self.args)
                finally:
                    context.close()
        except BaseException as exc:  # noqa: BLE001 - everything the handler raises fails the step
            below_run = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
            self.trace = "".join(traceback.format_exception(type(exc), exc, below_run))
            self._settle(None, exc)
            return
        self._settle(value, None)

    async def _run_async(self) -> Any:
        self.loop = asyncio.get_running_loop()
        context = AsyncContext(**self.context_kwargs)
        try:
            self.task = asyncio.ensure_future(self.function(context, **self.args))
            return await self.task
        finally:
            await context.aclose()

    def cancel(self) -> None:
        """Cancel an async handler (a plain function cannot be stopped: its thread is abandoned)."""
        if self.loop is not None and self.task is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.task.cancel)


def _json_output(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def _start(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> tuple[PythonConfig, _Call] | StepMessage:
    """The handler's call, started in its thread; or the step's result when the handler is refused."""
    config = step.config
    assert isinstance(config, PythonConfig)
    args = render_json(config.args, ctx)
    try:
        function = load_handler(config.handler)
    except HandlerRefused as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    call = _Call(
        function=function,
        args=args,
        context_kwargs={
            "platform": _Platform(env.bridge, step.name),
            "parameters": env.spec.parameters,
            "logger": step_logger(env.emitter, step.name),
            "execution_id": env.spec.execution_id,
            "job_id": env.spec.job_id,
            "attempt": env.spec.attempt,
            "step": step.name,
            "workdir": Path(env.workdir),
        },
    )
    threading.Thread(target=call.run, name=f"handler-{step.name}", daemon=True).start()
    return config, call


@contextlib.contextmanager
def _captured_output(env: StepEnv, step: str) -> Iterator[None]:
    """``print()`` in the handler (``sys.stdout``/``sys.stderr``) becomes lines of the execution log."""
    stdout, stderr = _LineWriter(env.emitter, "stdout", step), _LineWriter(env.emitter, "stderr", step)
    saved: tuple[TextIO, TextIO] = (sys.stdout, sys.stderr)
    sys.stdout, sys.stderr = stdout, stderr  # a minimal text stream: write() and flush()
    try:
        yield
    finally:
        stdout.flush()
        stderr.flush()
        sys.stdout, sys.stderr = saved


def _raised(step: ParsedStep, config: PythonConfig, env: StepEnv, call: _Call, exc: BaseException) -> StepMessage:
    """The step's result when the handler raised (its traceback goes to the log)."""
    for line in (call.trace or "".join(traceback.format_exception(exc))).splitlines():
        env.emitter.log("stderr", step.name, line)
    return StepMessage(
        name=step.name,
        status="failed",
        error=f"{config.handler} raised {type(exc).__name__}: {exc}",
        handler=config.handler,
    )


def _returned(step: ParsedStep, config: PythonConfig, value: Any) -> StepMessage:
    """The step's result from the handler's return value, which must be JSON."""
    try:
        output = _json_output(value)
    except (TypeError, ValueError) as exc:
        return StepMessage(
            name=step.name,
            status="failed",
            error=f"{config.handler} returned a value that is not JSON: {exc}",
            handler=config.handler,
        )
    return StepMessage(name=step.name, status="succeeded", output=output, handler=config.handler)


def preload_handler(handler: str) -> str | None:
    """Import a declared handler's module in the fork server, so that the children forked after it find
    it loaded; the error (never raised) when that fails. The executor only asks for handlers that a
    child has loaded already (:attr:`StepMessage.handler`), so nothing undeclared is imported here.
    """
    try:
        load_handler(handler)
    except BaseException as exc:  # noqa: BLE001 - whatever the module's import does, the fork server goes on
        return f"{type(exc).__name__}: {exc}"
    return None


async def run_python(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Import (if declared) and call the handler; its JSON return value is the output."""
    with _captured_output(env, step.name):
        started = _start(step, ctx, env)
        if isinstance(started, StepMessage):
            return started
        config, call = started
        waiter = asyncio.wrap_future(call.done)
        try:
            value = await waiter
        except asyncio.CancelledError:
            call.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(waiter), CANCEL_WAIT_SECONDS)
            raise
        except BaseException as exc:  # noqa: BLE001 - the handler's own failure
            return _raised(step, config, env, call, exc)
    return _returned(step, config, value)


async def run_python_blocking(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """:func:`run_python` on the child's blocking path: the child waits on the handler's future itself.

    The step's ``timeout_seconds`` is kept here (an async handler is cancelled; a plain function's
    thread is abandoned, as on the asyncio path); SIGTERM (:class:`Terminated`) cancels it too.
    """
    with _captured_output(env, step.name):
        started = _start(step, ctx, env)
        if isinstance(started, StepMessage):
            return started
        config, call = started
        try:
            value = call.done.result(timeout=step.timeout_seconds)
        except Terminated:
            call.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - the handler's own failure, or the step's timeout
            if _raised_by(call.done, exc):
                return _raised(step, config, env, call, exc)
            call.cancel()
            return timed_out(step).model_copy(update={"handler": config.handler})
    return _returned(step, config, value)


def _raised_by(done: concurrent.futures.Future[Any], exc: BaseException) -> bool:
    """Whether ``exc`` is the handler's own (and not the wait for it timing out)."""
    return done.done() and not done.cancelled() and done.exception() is exc
