"""The API of ``python`` step handlers: the context a handler gets as its first argument.

A handler is a function in an installed module, declared in a manifest (see
:mod:`automation_executor.child.python_step`), called as ``handler(ctx, **args)``:

.. code-block:: python

    def cleanup(ctx: Context, days: int) -> dict[str, int]:
        ctx.logger.info("cleaning up %d days", days)           # a line in the execution log
        token = ctx.secrets["API_TOKEN"]                         # resolved by the executor, redacted from logs
        answer = ctx.http.delete("https://api.example/old", params={"days": days},
                                 headers={"Authorization": f"Bearer {token}"})
        ctx.emit("cleanup.done", {"days": days})                # an event on automation.events
        return {"status": answer.status_code}                     # the step's output (JSON)

    async def snapshot(ctx: AsyncContext, url: str) -> dict[str, object]:
        result = await ctx.browser([{"type": "goto", "url": url}, {"type": "screenshot"}])
        return {"title": result["title"]}

A plain function gets a :class:`Context` (``ctx.http`` is an :class:`httpx.Client`, ``emit`` and
``browser`` block); an ``async def`` gets an :class:`AsyncContext` (``ctx.http`` is an
:class:`httpx.AsyncClient`, ``emit`` and ``browser`` are awaited). Both run in a thread of their own
(an async handler on an event loop of its own), so a handler never stalls the child's protocol.
``ctx.secrets`` is a mapping in both: a lookup asks the executor, quickly, and blocks until it answers.
``ctx.http`` is made on first use (and closed when the handler returns), so a handler that does not use
it does not pay for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncContext", "BaseContext", "Context", "Platform", "Secrets", "UnknownSecretError"]
HTTP_TIMEOUT_SECONDS = 30.0


class Platform(Protocol):
    """How a context reaches the executor (the child's bridge; a fake in tests). Thread-safe."""

    def request(self, op: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        """Send an ``emit`` or ``browser`` request; the future holds its result or the refusal."""
        ...

    def secret(self, name: str) -> concurrent.futures.Future[str]:
        """Resolve a secret by name."""
        ...


class UnknownSecretError(KeyError):
    """A secret the executor does not have (or refused); ``str()`` says which and why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown secret"


class Secrets(Mapping[str, str]):
    """Secrets by name, resolved by the executor on first use (iteration lists those resolved so far)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._values: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._values:
            try:
                self._values[name] = self._platform.secret(name).result()
            except Exception as exc:
                raise UnknownSecretError(str(exc)) from exc
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Secrets resolved={sorted(self._values)}>"  # names only, never values


class BaseContext:
    """What every handler's context has: parameters, the log, secrets and where the run is."""

    def __init__(
        self,
        *,
        platform: Platform,
        parameters: Mapping[str, Any],
        logger: logging.Logger,
        execution_id: str,
        job_id: str,
        attempt: int,
        step: str,
        workdir: Path,
    ) -> None:
        self._platform = platform
        self._emits = itertools.count()
        self.parameters: Mapping[str, Any] = parameters
        """The run's parameters (validated and defaulted by job-api)."""
        self.logger = logger
        """A logger whose records become lines of the execution log (stdout below WARNING, stderr from it)."""
        self.secrets = Secrets(platform)
        """Secrets by NAME (``ctx.secrets["API_TOKEN"]``); their values are redacted from logs and outputs."""
        self.execution_id = execution_id
        self.job_id = job_id
        self.attempt = attempt
        self.step = step
        self.workdir = workdir
        """The execution's temporary working directory (removed after the run)."""

    def _emit_args(self, event_type: str, data: Any, subject: str | None, source: str | None) -> dict[str, Any]:
        json.dumps(data, allow_nan=False)  # a TypeError/ValueError here names the culprit early
        key = f"{self.step}:{next(self._emits)}"
        return {"type": event_type, "data": data, "subject": subject, "source": source, "key": key}

    @staticmethod
    def _browser_args(
        actions: Sequence[Mapping[str, Any]], timeout_seconds: float, viewport: Mapping[str, int] | None
    ) -> dict[str, Any]:
        return {
            "actions": [dict(action) for action in actions],
            "timeout_seconds": float(timeout_seconds),
            "viewport": dict(viewport) if viewport is not None else None,
        }


class Context(BaseContext):
    """The context of a plain (synchronous) handler."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """An HTTP client (no proxies or certificates from the environment; 30 s timeout)."""
        if self._http is None:
            import httpx

            from automation_executor.child.http import ssl_context

            self._http = httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False, verify=ssl_context())
        return self._http

    def close(self) -> None:
        """Close the HTTP client, if one was made (the executor does it when the handler returns)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def emit(self, event_type: str, data: Any = None, *, subject: str | None = None, source: str | None = None) -> str:
        """Publish an event to ``automation.events`` (not a platform type); its id."""
        result = self._platform.request("emit", self._emit_args(event_type, data, subject, source)).result()
        return str(result["id"])

    def browser(
        self,
        actions: Sequence[Mapping[str, Any]],
        *,
        timeout_seconds: float = 30.0,
        viewport: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Run ``actions`` in browser-pool (one ``browser.task``); the ``browser.result`` data."""
        args = self._browser_args(actions, timeout_seconds, viewport)
        result: dict[str, Any] = self._platform.request("browser", args).result()
        return result


class AsyncContext(BaseContext):
    """The context of an ``async def`` handler."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """An async HTTP client (no proxies or certificates from the environment; 30 s timeout)."""
        if self._http is None:
            import httpx

            from automation_executor.child.http import ssl_context

            self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False, verify=ssl_context())
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client, if one was made (the executor does it when the handler returns)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def emit(
        self, event_type: str, data: Any = None, *, subject: str | None = None, source: str | None = None
    ) -> str:
        """Publish an event to ``automation.events`` (not a platform type); its id."""
        future = self._platform.request("emit", self._emit_args(event_type, data, subject, source))
        result = await asyncio.wrap_future(future)
        return str(result["id"])

    async def browser(
        self,
        actions: Sequence[Mapping[str, Any]],
        *,
        timeout_seconds: float = 30.0,
        viewport: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Run ``actions`` in browser-pool (one ``browser.task``); the ``browser.result`` data."""
        future = self._platform.request("browser", self._browser_args(actions, timeout_seconds, viewport))
        result: dict[str, Any] = await asyncio.wrap_future(future)
        return result
