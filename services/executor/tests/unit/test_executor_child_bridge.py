"""The blocking path's bridge over real pipes: requests overlap, replies find their request, secrets are redacted."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from automation_executor.child.blocking import LineReader, drive
from automation_executor.child.bridge import BlockingBridge, BridgeFailure
from automation_executor.child.emitter import Emitter


@dataclass
class Pipes:
    bridge: BlockingBridge
    emitter: Emitter
    requests_fd: int  # what the child wrote (the protocol)
    replies_fd: int  # where the "executor" writes replies

    def reply(self, request_id: int, result: object = None, *, ok: bool = True, error: str | None = None) -> None:
        line = {"type": "reply", "id": request_id, "ok": ok, "result": result, "error": error}
        os.write(self.replies_fd, json.dumps(line).encode() + b"\n")

    def requests(self, count: int) -> list[dict[str, object]]:
        data = b""
        while data.count(b"\n") < count:
            data += os.read(self.requests_fd, 65536)
        return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    child_in, executor_out = os.pipe()
    executor_in, child_out = os.pipe()
    emitter = Emitter(child_out)
    yield Pipes(BlockingBridge(emitter, LineReader(child_in, limit=1 << 20)), emitter, executor_in, executor_out)
    for fd in (child_in, executor_out, executor_in, child_out):
        os.close(fd)


def test_handler_requests_overlap_and_each_reply_finds_its_request(pipes: Pipes) -> None:
    first = pipes.bridge.submit("emit", {"n": 1}, step="s")
    second = pipes.bridge.submit("emit", {"n": 2}, step="s")
    sent = pipes.requests(2)  # both went out before either was answered
    assert [(r["id"], r["args"]) for r in sent] == [(1, {"n": 1}), (2, {"n": 2})]
    assert not first.done()
    assert not second.done()
    pipes.reply(2, "two")
    assert second.result(timeout=5) == "two"
    assert not first.done()
    pipes.reply(1, None, ok=False, error="no such exchange")
    with pytest.raises(BridgeFailure, match="no such exchange"):
        first.result(timeout=5)


def test_a_secret_is_redacted_from_then_on_either_way(pipes: Pipes) -> None:
    pipes.reply(1, "s3cret-one")
    assert drive(pipes.bridge.secret("ONE", step="s")) == "s3cret-one"  # the child's own request
    pending = pipes.bridge.submit_secret("TWO", step="s")  # a handler's
    pipes.reply(2, "s3cret-two")
    assert pending.result(timeout=5) == "s3cret-two"
    assert pipes.emitter.redactor.text("s3cret-one and s3cret-two") == "*** and ***"


def test_when_the_executor_closes_the_bridge_waiting_requests_fail(pipes: Pipes) -> None:
    waiting = pipes.bridge.submit("browser", {}, step="s")
    os.close(pipes.replies_fd)
    pipes.replies_fd = os.open(os.devnull, os.O_RDONLY)  # the fixture closes something
    with pytest.raises(BridgeFailure, match="closed the bridge"):
        waiting.result(timeout=5)
    with pytest.raises(BridgeFailure, match="closed the bridge"):
        pipes.bridge.submit("emit", {}, step="s")


def test_the_line_reader_keeps_what_follows_and_refuses_an_endless_line() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"spec": 1}\n{"reply": 2}\npartial')
    os.close(write_fd)
    reader = LineReader(read_fd, limit=64)
    assert reader.readline() == b'{"spec": 1}\n'
    assert reader.take_buffered() == b'{"reply": 2}\npartial'  # read with the spec, handed on
    assert reader.readline() == b""
    os.close(read_fd)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"x" * 100)
    with pytest.raises(ValueError, match="longer than 64 bytes"):
        LineReader(read_fd, limit=64).readline()
    os.close(read_fd)
    os.close(write_fd)
