"""The child's side of the bridge: ask the executor for a platform service and wait for its reply.

Requests go out on the protocol stream (:class:`~automation_executor.domain.protocol.RequestMessage`);
replies come back on the child's stdin, one JSON line each, matched by ``id``. A secret the executor
sends back is added to the emitter's redactor before the caller sees it. When the executor closes the
child's stdin, every waiting request fails.

Handler threads of ``python`` steps call :meth:`BridgeClient.submit`, which hands the request to the
event loop and returns a :class:`concurrent.futures.Future`. On the child's blocking path (no event
loop) a :class:`BlockingBridge` reads the reply itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from automation_executor.child.blocking import LineReader
from automation_executor.child.emitter import Emitter
from automation_executor.domain.protocol import BridgeOp, ReplyMessage, RequestMessage

T = TypeVar("T")


class BridgeFailure(Exception):
    """The executor refused or could not serve a request; the message says why."""


class BridgeClient:
    """Requests to the executor from one child process."""

    def __init__(self, emitter: Emitter, replies: asyncio.StreamReader | None) -> None:
        self._emitter = emitter
        self._replies = replies
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[ReplyMessage]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start reading replies (in the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._reader = asyncio.create_task(self._read(), name="bridge-replies")

    async def close(self) -> None:
        """Stop reading; waiting requests fail."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_all("the child is ending")

    def _fail_all(self, reason: str) -> None:
        self._closed = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BridgeFailure(reason))
        self._pending.clear()

    async def _read(self) -> None:
        assert self._replies is not None, "a bridge without a reply stream reads its replies itself"
        try:
            while line := await self._replies.readline():
                try:
                    reply = ReplyMessage.model_validate_json(line)
                except ValidationError:
                    self._emitter.log("system", None, f"unreadable reply from the executor: {line[:200]!r}")
                    continue
                future = self._pending.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (ValueError, ConnectionError) as exc:
            self._fail_all(f"the executor's replies broke off: {exc}")
            return
        self._fail_all("the executor closed the bridge")

    async def request(self, op: BridgeOp, args: dict[str, Any], *, step: str | None) -> Any:
        """Send one request and wait for its result; :class:`BridgeFailure` when it is refused."""
        if self._closed is not None:
            raise BridgeFailure(self._closed)
        request_id = next(self._ids)
        future: asyncio.Future[ReplyMessage] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._emitter.send(RequestMessage(id=request_id, op=op, step=step, args=args))
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        return result_of(op, reply)

    async def secret(self, name: str, *, step: str | None) -> str:
        """The value of secret ``name`` (redacted from the log from now on)."""
        return self._secret_value(name, await self.request("secret", {"name": name}, step=step))

    def _secret_value(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise BridgeFailure(f"secret {name!r}: the executor answered with no text")
        self._emitter.redactor.add(value)
        return value

    def submit(self, op: BridgeOp, args: dict[str, Any], *, step: str | None) -> concurrent.futures.Future[Any]:
        """:meth:`request` from another thread; the future holds the result or the BridgeFailure."""
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(self.request(op, args, step=step), self._loop)

    def submit_secret(self, name: str, *, step: str | None) -> concurrent.futures.Future[str]:
        """:meth:`secret` from another thread."""
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(self.secret(name, step=step), self._loop)


class BlockingBridge(BridgeClient):
    """The bridge of the blocking path: replies are read by a thread of its own, not an event loop.

    :meth:`request` (the child's own, for a step's secrets) waits for its reply on the calling
    thread, so the child can drive it without a loop. :meth:`submit` (a handler's) returns at once
    with a future its reply settles, so an async handler's own loop keeps running, and its requests
    overlap, while the executor answers.
    """

    def __init__(self, emitter: Emitter, replies: LineReader) -> None:
        super().__init__(emitter, None)  # no StreamReader: making one would make an event loop
        self._lines = replies
        self._lock = threading.Lock()
        self._waiting: dict[int, concurrent.futures.Future[ReplyMessage]] = {}
        self._reader_thread: threading.Thread | None = None

    def start(self) -> None:
        """Nothing to start: the reader thread starts with the first request."""

    async def close(self) -> None:
        self._fail_waiting("the child is ending")

    async def request(self, op: BridgeOp, args: dict[str, Any], *, step: str | None) -> Any:
        return result_of(op, self._send(op, args, step).result())

    def submit(self, op: BridgeOp, args: dict[str, Any], *, step: str | None) -> concurrent.futures.Future[Any]:
        return _then(self._send(op, args, step), lambda reply: result_of(op, reply))

    def submit_secret(self, name: str, *, step: str | None) -> concurrent.futures.Future[str]:
        sent = self._send("secret", {"name": name}, step)
        return _then(sent, lambda reply: self._secret_value(name, result_of("secret", reply)))

    def _send(self, op: BridgeOp, args: dict[str, Any], step: str | None) -> concurrent.futures.Future[ReplyMessage]:
        """Write one request; the future its reply will settle."""
        waiting: concurrent.futures.Future[ReplyMessage] = concurrent.futures.Future()
        with self._lock:
            if self._closed is not None:
                raise BridgeFailure(self._closed)
            request_id = next(self._ids)
            self._waiting[request_id] = waiting
            if self._reader_thread is None:
                self._reader_thread = threading.Thread(target=self._read_replies, name="bridge-replies", daemon=True)
                self._reader_thread.start()
            self._emitter.send(RequestMessage(id=request_id, op=op, step=step, args=args))
        return waiting

    def _read_replies(self) -> None:
        try:
            while line := self._lines.readline():
                try:
                    reply = ReplyMessage.model_validate_json(line)
                except ValidationError:
                    self._emitter.log("system", None, f"unreadable reply from the executor: {line[:200]!r}")
                    continue
                with self._lock:
                    waiting = self._waiting.pop(reply.id, None)
                if waiting is not None:
                    waiting.set_result(reply)
        except (OSError, ValueError) as exc:
            self._fail_waiting(f"the executor's replies broke off: {exc}")
            return
        self._fail_waiting("the executor closed the bridge")

    def _fail_waiting(self, reason: str) -> None:
        with self._lock:
            self._closed = reason
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(BridgeFailure(reason))


def result_of(op: str, reply: ReplyMessage) -> Any:
    """The result a reply carries; :class:`BridgeFailure` with its error when the request was refused."""
    if not reply.ok:
        raise BridgeFailure(reply.error or f"{op} refused")
    return reply.result


def _then(
    source: concurrent.futures.Future[ReplyMessage], step: Callable[[ReplyMessage], T]
) -> concurrent.futures.Future[T]:
    """A future settled with ``step(reply)`` (or its error) when ``source`` is."""
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def settle(done: concurrent.futures.Future[ReplyMessage]) -> None:
        try:
            result.set_result(step(done.result()))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            result.set_exception(exc)

    source.add_done_callback(settle)
    return result
