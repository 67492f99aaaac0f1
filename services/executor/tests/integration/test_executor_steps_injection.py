"""Injection: values that would run code if pasted into it reach every local step type as data.

Each value (``; rm -rf / #``, ``$(touch <marker>)``, backquotes, ``' OR 1=1 --``, quote breakouts) goes
through a shell argv, a ``shell: true`` script, an http URL, header and JSON body, python handler
arguments, an event's data and a browser fill value; the marker file is never created, and what each
step received is the literal text. ssh, sftp and winrm get the same values in their own test modules
(``test_executor_steps_ssh``, ``test_executor_steps_winrm``), against their servers.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import pytest_asyncio

from automation_contracts import BrowserResult, BrowserTask
from automation_executor.bridge import RecordingServices

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_support import forked_children, injection_values, run_job

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def _forked() -> AsyncIterator[None]:
    async with forked_children():
        yield


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        payload = json.dumps({"path": self.path, "header": self.headers.get("X-Value"), "body": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fills(task: BrowserTask) -> BrowserResult:
    return BrowserResult(
        task_id=task.task_id,
        ok=True,
        outputs={"typed": [a.value for a in task.actions if a.type == "fill"]},
        artifacts=[],
        duration_seconds=0.0,
    )


def _steps(index: int, echo_url: str) -> list[dict[str, Any]]:
    v = "${{ parameters.v" + str(index) + " }}"
    return [
        {"name": f"argv{index}", "type": "shell", "config": {"command": ["printf", "%s\\n", v]}},
        {
            "name": f"env{index}",
            "type": "shell",
            "config": {"command": ["sh", "-c", 'printf "%s\\n" "$V"'], "env": {"V": v}},
        },
        {"name": f"script{index}", "type": "shell", "config": {"command": f"printf '%s\\n' {v}", "shell": True}},
        {
            "name": f"http{index}",
            "type": "http",
            "config": {
                "method": "POST",
                "url": f"{echo_url}/items/{v}?q={v}",
                "headers": {"X-Value": v},
                "json": {"value": v, "text": f"v={v}"},
            },
        },
        {
            "name": f"python{index}",
            "type": "python",
            "config": {"handler": "automation_executor.examples.handlers:echo_args", "args": {"value": v}},
        },
        {"name": f"event{index}", "type": "event.emit", "config": {"type": "inventory.synced", "data": {"value": v}}},
        {
            "name": f"browser{index}",
            "type": "browser",
            "config": {"actions": [{"type": "fill", "selector": "#q", "value": v}]},
        },
    ]


async def test_every_local_step_type_takes_the_values_as_data(tmp_path: Path, echo_url: str) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    values = injection_values(str(marker))
    services = RecordingServices(_fills)
    steps = [step for index in range(len(values)) for step in _steps(index, echo_url)]
    outcome, _ = await run_job(tmp_path, steps, services=services, parameters=values)
    assert outcome.status == "succeeded", outcome
    out = outcome.outputs
    for index, value in enumerate(values.values()):
        for step in ("argv", "env", "script"):
            assert out[f"{step}{index}"]["stdout_tail"] == f"{value}\n", step
        body = out[f"http{index}"]["body"]
        assert body["header"] == value
        assert json.loads(body["body"]) == {"value": value, "text": f"v={value}"}
        path, _, query = body["path"].partition("?")
        assert unquote(path) == f"/items/{value}"  # one path segment, percent-encoded
        assert path.count("/") == 2
        assert unquote(query) == f"q={value}"
        assert out[f"python{index}"]["args"] == {"value": value}
        assert services.events[index].data == {"value": value}
        assert out[f"browser{index}"]["outputs"] == {"typed": [value]}
    assert not marker.exists()


async def test_templated_javascript_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Defence in depth: a definition that did not come through job-api's check is refused by the executor."""
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    services = RecordingServices(_fills)
    steps = [
        {"name": "first", "type": "shell", "config": {"command": ["touch", str(marker)]}},
        {
            "name": "page",
            "type": "browser",
            "config": {
                "actions": [
                    {"type": "goto", "url": "https://example.org"},
                    {"type": "evaluate", "name": "n", "expression": "fetch('/x?q=' + '${{ parameters.v0 }}')"},
                ]
            },
        },
    ]
    outcome, _ = await run_job(tmp_path, steps, services=services, parameters={"v0": "'); steal(); ('"})
    assert outcome.status == "failed"
    assert outcome.permanent
    assert outcome.error is not None
    assert outcome.error.startswith(
        "invalid job definition: steps.1.config.actions.1.expression: templates cannot be used in JavaScript"
    )
    assert services.tasks == []
    assert not marker.exists()  # refused as a whole: not even the first step ran
