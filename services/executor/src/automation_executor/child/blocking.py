"""The child's blocking path: running the step coroutines without an event loop.

A job whose steps all have a blocking runner (``shell``, ``python``) runs without asyncio: its runners
and the bridge do their waiting themselves (a selector, a thread's future), so the orchestration
coroutines never wait for a loop and :func:`drive` runs them to the end in one ``send``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Terminated(BaseException):
    """SIGTERM on the blocking path: the running step stops its work and the child exits 143."""


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits for an event loop to its end, in one step."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a step of the blocking path waited for an event loop")
