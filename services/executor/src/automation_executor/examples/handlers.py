"""Example handlers: each shows one thing a ``python`` step can do (declared in the package's manifest)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from automation_executor.handlers import AsyncContext, Context

IMPORTED_IN = os.getpid()
"""The process that ran this module's top-level code (see :func:`where`)."""


def noop(_ctx: Context) -> None:
    """Do nothing (the benchmark's trivial step); a handler returning None has no output."""


def greet(ctx: Context, name: str = "world") -> dict[str, str]:
    """Log a line, print one, and return a greeting."""
    ctx.logger.info("greeting %s", name)
    print(f"hello from {ctx.step}")
    return {"greeting": f"hello {name}"}


def echo_args(ctx: Context, **args: Any) -> dict[str, Any]:
    """Return the arguments as received (values from templates keep their JSON types) and the parameters."""
    return {"args": args, "parameters": dict(ctx.parameters), "attempt": ctx.attempt}


async def fetch_status(ctx: AsyncContext, url: str) -> dict[str, Any]:
    """GET ``url`` with the async client; its status and JSON body."""
    response = await ctx.http.get(url)
    return {"status": response.status_code, "body": response.json()}


async def emit_event(ctx: AsyncContext, type: str, data: dict[str, Any]) -> dict[str, str]:
    """Publish an event (the executor picks the source: ``/automation/jobs/<job_id>``)."""
    event_id = await ctx.emit(type, data, subject=ctx.step)
    return {"id": event_id}


def page_title(ctx: Context, url: str) -> dict[str, Any]:
    """Open ``url`` in browser-pool and return the page title."""
    result = ctx.browser([{"type": "goto", "url": url}], timeout_seconds=20)
    return {"title": result["title"], "ok": result["ok"]}


def use_secret(ctx: Context, token_secret: str) -> dict[str, Any]:
    """Read a secret by NAME and (carelessly) log and return it: the executor redacts it from both."""
    token = ctx.secrets[token_secret]
    ctx.logger.info("the token is %s", token)
    return {"token": token, "length": len(token)}


def inventory_check(_ctx: Context, pending: int) -> dict[str, Any]:
    """A check: perform only when something is pending, and hand the count to the steps."""
    return {"should_perform": pending > 0, "perform_payload": {"pending": pending}}


def fail(_ctx: Context, message: str = "boom") -> None:
    """Raise: the step fails with the message, and the traceback goes to the log."""
    raise RuntimeError(message)


def not_json(_ctx: Context) -> object:
    """Return something that is not JSON: the step fails."""
    return {1, 2}


def where(_ctx: Context) -> dict[str, int]:
    """Which process runs the handler, and which one imported its module: the child itself, or (once a
    child has loaded it) the fork server, for every child forked after (``AUTOMATION_EXECUTOR_PRELOAD_HANDLERS``)."""
    return {"pid": os.getpid(), "imported_in": IMPORTED_IN}


def loaded(_ctx: Context, module: str) -> dict[str, bool]:
    """Whether ``module`` is imported already when the handler runs: by the fork server before the
    fork, or not (``AUTOMATION_EXECUTOR_PRELOAD_STEP_RUNNERS``)."""
    return {"loaded": module in sys.modules}


def sleep(_ctx: Context, seconds: float) -> dict[str, float]:
    """Sleep (for timeout tests)."""
    time.sleep(seconds)
    return {"slept": seconds}


async def async_sleep(_ctx: AsyncContext, seconds: float) -> dict[str, float]:
    """Not declared: the executor refuses it."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def undeclared(_ctx: Context) -> str:
    """Not in the manifest: the executor refuses to call it."""
    return "should never run"
