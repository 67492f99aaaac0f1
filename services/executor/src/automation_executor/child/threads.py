"""Running blocking work (pywinrm's requests) off the child's event loop, in daemon threads.

``asyncio.to_thread`` would use the default executor, whose threads the interpreter joins at exit: a
step that timed out while its thread still waits on the network would then hold the child open. A
daemon thread is abandoned instead (and the executor kills the child's process group anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_blocking(function: Callable[[], T], *, name: str) -> T:
    """``function()`` in a daemon thread; its result or exception."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)  # type: ignore[arg-type]  # value is a T when error is None

    def target() -> None:
        try:
            value = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await done
