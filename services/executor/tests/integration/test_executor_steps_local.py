"""python, event.emit and browser steps, secrets and check/perform, in real (spawned) child processes.

The platform services (event publishing, browser-pool) are the hand-written fakes of
:class:`automation_executor.bridge.RecordingServices`; the broker-backed ones are tested in
``test_executor_steps_platform``.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from automation_executor.bridge import RecordingServices

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_support import browser_answer, run_job
from executor_steps_wsman import make_certificates

pytestmark = pytest.mark.integration
EXAMPLES = "automation_executor.examples.handlers"


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with what it received, as JSON; ``/huge/<n>``: ``n`` bytes of text."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def _answer(self) -> None:
        if self.path.startswith("/huge/"):
            size = int(self.path.removeprefix("/huge/"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            line = b"0123456789abcdef" * 4 + b"\n"
            for _ in range(size // len(line)):
                self.wfile.write(line)
            self.wfile.write(b"x" * (size % len(line)))
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        payload = json.dumps({"path": self.path, "headers": dict(self.headers), "body": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _echo_server(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """An :class:`EchoHandler` server on 127.0.0.1 in a thread (over TLS with ``tls``); its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls is not None else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    yield from _echo_server()


@pytest.fixture(scope="module")
def untrusted_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An HTTPS echo server whose certificate a CA of the test's own signed (no system trusts it): its
    base URL and that CA's certificate (PEM)."""
    ca_pem, cert_file, key_file = make_certificates(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    for url in _echo_server(context):
        yield url, ca_pem


def _python(name: str, handler: str, /, **args: Any) -> dict[str, Any]:
    return {"name": name, "type": "python", "config": {"handler": f"{EXAMPLES}:{handler}", "args": args}}


async def test_python_handlers_sync_async_and_entry_point(tmp_path: Path, echo_url: str) -> None:
    outcome, sink = await run_job(
        tmp_path,
        [
            _python("greet", "greet", name="${{ parameters.who }}"),
            _python("echo", "echo_args", count="${{ parameters.count }}", text="n=${{ parameters.count }}"),
            _python("fetch", "fetch_status", url=f"{echo_url}/status"),
            {"name": "ping", "type": "python", "config": {"handler": "automation_executor.examples.entry_point:ping"}},
            _python("noop", "noop"),
        ],
        parameters={"who": "; rm -rf / #", "count": 3},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["greet"] == {"greeting": "hello ; rm -rf / #"}
    assert outcome.outputs["echo"]["args"] == {"count": 3, "text": "n=3"}  # a whole template keeps its type
    assert outcome.outputs["echo"]["parameters"] == {"who": "; rm -rf / #", "count": 3}
    assert outcome.outputs["fetch"]["status"] == 200
    assert outcome.outputs["fetch"]["body"]["path"] == "/status"
    assert outcome.outputs["ping"] == {"pong": "ping"}
    assert "noop" not in outcome.outputs  # None is no output
    assert sink.of("greet")[1:3] == ["INFO greeting ; rm -rf / #", "hello from greet"]
    assert ("stdout", "greet", "hello from greet") in sink.lines


async def test_https_certificates_are_verified_by_the_step_and_by_ctx_http(
    tmp_path: Path, untrusted_https: tuple[str, str]
) -> None:
    url, ca_pem = untrusted_https

    def step(**tls: str) -> dict[str, Any]:
        return {"name": "h", "type": "http", "config": {"url": f"{url}/x", **tls}}

    refused, _ = await run_job(tmp_path, [step()])
    assert (refused.status, "CERTIFICATE_VERIFY_FAILED" in str(refused.error)) == ("failed", True), refused
    fetched, _ = await run_job(tmp_path, [_python("fetch", "fetch_status", url=f"{url}/x")])
    assert (fetched.status, "CERTIFICATE_VERIFY_FAILED" in str(fetched.error)) == ("failed", True), fetched

    trusted, sink = await run_job(tmp_path, [step(ca_secret="INTERNAL_CA")], secrets={"INTERNAL_CA": ca_pem})
    assert trusted.status == "succeeded", trusted
    assert trusted.outputs["h"]["body"]["path"] == "/x"
    assert "BEGIN CERTIFICATE" not in sink.text("system"), "the bundle is a secret: never in the log"
    unchecked, _ = await run_job(tmp_path, [step(server_cert_validation="ignore")])
    assert unchecked.status == "succeeded", unchecked
    wrong, _ = await run_job(tmp_path, [step(ca_secret="NOT_PEM")], secrets={"NOT_PEM": "not a certificate"})
    assert wrong.status == "failed"
    assert str(wrong.error).startswith("step h: ca_secret 'NOT_PEM' is not a PEM bundle of certificates: "), wrong


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (_python("u", "undeclared"), f"handler '{EXAMPLES}:undeclared' is not declared"),
        (
            {"name": "u", "type": "python", "config": {"handler": "os:system", "args": {}}},
            "'os:system' is not declared",
        ),
        (_python("u", "fail", message="it broke"), f"{EXAMPLES}:fail raised RuntimeError: it broke"),
        (_python("u", "not_json"), "returned a value that is not JSON"),
        (_python("u", "greet", surprise=1), "TypeError"),
    ],
)
async def test_python_failures_fail_the_step(tmp_path: Path, step: dict[str, Any], error: str) -> None:
    outcome, sink = await run_job(tmp_path, [step, _python("never", "noop")])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert error in outcome.error
    assert "step never" not in sink.text("system")
    if "raised" in error:
        assert any("Traceback" in line for line in sink.of("u"))


async def test_a_hanging_sync_handler_times_out_with_its_step(tmp_path: Path) -> None:
    step = {**_python("slow", "sleep", seconds=30), "timeout_seconds": 1}
    outcome, _ = await run_job(tmp_path, [step], timeout_seconds=20)
    assert outcome.status == "timed_out"
    assert outcome.error == "step slow: timed out after 1s"


async def test_event_emit_and_browser_go_through_the_bridge(tmp_path: Path) -> None:
    services = RecordingServices(browser_answer)
    outcome, sink = await run_job(
        tmp_path,
        [
            {
                "name": "announce",
                "type": "event.emit",
                "config": {
                    "type": "inventory.synced",
                    "subject": "${{ parameters.site }}",
                    "data": {"n": "${{ parameters.n }}"},
                },
            },
            {
                "name": "login",
                "type": "browser",
                "config": {
                    "actions": [
                        {"type": "goto", "url": "https://example.org/${{ parameters.site }}"},
                        {"type": "fill", "selector": "#user", "value": "${{ parameters.site }}"},
                        {"type": "fill", "selector": "#pw", "value": "${{ secrets.WEB_PASSWORD }}"},
                    ],
                    "timeout_seconds": 10,
                },
            },
            _python("handler_emit", "emit_event", type="inventory.checked", data={"by": "handler"}),
            {"name": "broken", "type": "browser", "config": {"actions": [{"type": "click", "selector": "#missing"}]}},
        ],
        services=services,
        secrets={"WEB_PASSWORD": "pw-123456"},
        parameters={"site": "fra/1?x=y", "n": 4},
    )
    assert outcome.status == "failed"
    assert outcome.error == "step broken: browser: action 1 (click): Timeout 500ms exceeded."
    first, second = services.events
    assert (first.type, first.subject, first.data) == ("inventory.synced", "fra/1?x=y", {"n": 4})
    assert first.source.startswith("/automation/jobs/")
    assert outcome.outputs["announce"]["id"] == first.id
    assert second.type == "inventory.checked"
    assert second.subject == "handler_emit"
    assert outcome.outputs["handler_emit"] == {"id": second.id}
    login, _ = services.tasks
    assert login.actions[0].type == "goto"
    assert login.actions[0].url == "https://example.org/fra%2F1%3Fx%3Dy"  # percent-encoded, one path segment
    assert login.timeout_seconds == 10
    assert outcome.outputs["login"]["title"] == "Login"
    assert outcome.outputs["login"]["outputs"]["fills"] == {"#user": "fra/1?x=y", "#pw": "***"}  # redacted output
    assert "pw-123456" not in json.dumps(outcome.outputs)
    assert outcome.outputs["broken"]["ok"] is False
    assert "browser task ok" in sink.text("system")


async def test_no_platform_services_fail_those_steps_clearly(tmp_path: Path) -> None:
    outcome, _ = await run_job(tmp_path, [{"name": "e", "type": "event.emit", "config": {"type": "x.y"}}])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "not available" in outcome.error


async def test_secrets_from_dir_and_env_are_redacted_everywhere(tmp_path: Path, echo_url: str) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "API_TOKEN").write_text("tok-from-dir-0123\n")
    key = "-----BEGIN TEST KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n-----END TEST KEY-----"
    (secrets_dir / "TEST_KEY").write_text(key)
    filler = "x" * 105  # the secret crosses the line cap (128) unless it is redacted before the cut
    outcome, sink = await run_job(
        tmp_path,
        [
            {
                "name": "shell",
                "type": "shell",
                "config": {
                    "command": ["sh", "-c", 'echo "token=$T"; echo "$K"; echo "err $T" >&2; echo "$F${T}yyyyyyyyyy"'],
                    "env": {"T": "${{ secrets.API_TOKEN }}", "K": "${{ secrets.TEST_KEY }}", "F": filler},
                },
            },
            {
                "name": "call",
                "type": "http",
                "config": {"url": f"{echo_url}/x", "headers": {"Authorization": "Bearer ${{ secrets.ENV_TOKEN }}"}},
            },
            _python("handler", "use_secret", token_secret="ENV_TOKEN"),
            {
                "name": "leak",
                "type": "shell",
                "config": {"command": ["sh", "-c", 'echo "bye $0"; exit 3', "${{ secrets.ENV_TOKEN }}"]},
            },
        ],
        secrets_dir=secrets_dir,
        secrets={"ENV_TOKEN": "env-secret-9876"},
        settings={"executor_max_line_bytes": 128},
    )
    assert outcome.status == "failed"
    everything = json.dumps(outcome.outputs) + (outcome.error or "") + sink.text()
    for value in (
        "tok-from-dir-0123",
        "env-secret-9876",
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
        "tok-from",
        "env-sec",
    ):
        assert value not in everything, value
    shell_lines = sink.of("shell")
    assert "token=***" in shell_lines
    assert "err ***" in shell_lines
    assert "***" in shell_lines  # the key's middle line
    assert filler + "***" + "y" * 10 in shell_lines  # redacted before the cut: no half secret left
    assert outcome.outputs["shell"]["stdout_tail"].startswith("token=***\n")
    assert outcome.outputs["call"]["body"]["headers"]["Authorization"] == "Bearer ***"
    assert outcome.outputs["handler"] == {"token": "***", "length": 15}
    assert "INFO the token is ***" in sink.of("handler")
    assert outcome.outputs["leak"]["stdout_tail"] == "bye ***\n"


async def test_secrets_are_redacted_in_the_forms_the_executor_encoded_them_in(tmp_path: Path, echo_url: str) -> None:
    """Found by hand: a secret put into a URL went out percent-encoded (the executor's own doing), and
    came back in the server's echo, the step's log line and output, unredacted; one in a ``json`` body
    came back escaped as in a JSON string."""
    url_token, quoted = "Tok+en/9f3a==", 'pa"ss\\word9'
    outcome, sink = await run_job(
        tmp_path,
        [
            {"name": "get", "type": "http", "config": {"url": f"{echo_url}/p/${{{{ secrets.URL_TOKEN }}}}?x=1"}},
            {
                "name": "post",
                "type": "http",
                "config": {"method": "POST", "url": f"{echo_url}/q", "json": {"t": "${{ secrets.QUOTED }}"}},
            },
        ],
        secrets={"URL_TOKEN": url_token, "QUOTED": quoted},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["get"]["body"]["path"] == "/p/***?x=1"
    assert outcome.outputs["post"]["body"]["body"] == '{"t":"***"}'
    everything = json.dumps(outcome.outputs, ensure_ascii=False) + sink.text()
    for form in (url_token, "Tok%2Ben%2F9f3a%3D%3D", quoted, 'pa\\"ss\\\\word9', "Tok", "word9"):
        assert form not in everything, form
    assert "/p/*** -> 200" in sink.text(), "the log line of the request"


async def test_an_unknown_secret_fails_the_step_naming_it(tmp_path: Path) -> None:
    outcome, _ = await run_job(
        tmp_path,
        [{"name": "s", "type": "shell", "config": {"command": ["echo", "${{ secrets.MISSING_ONE }}"]}}],
        secrets={"OTHER": "x"},
    )
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "secret 'MISSING_ONE': not found" in outcome.error
    assert not outcome.permanent


async def test_check_false_skips_the_steps(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    outcome, sink = await run_job(
        tmp_path,
        [{"name": "work", "type": "shell", "config": {"command": ["touch", str(marker)]}}],
        check={"type": "python", "config": {"handler": f"{EXAMPLES}:inventory_check", "args": {"pending": 0}}},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs == {
        "performed": False,
        "check": {"should_perform": False, "perform_payload": {"pending": 0}},
        "steps": {},
    }
    assert not marker.exists()
    assert "nothing to do" in sink.text("system")


async def test_check_true_hands_its_payload_to_the_steps(tmp_path: Path) -> None:
    outcome, _ = await run_job(
        tmp_path,
        [{"name": "work", "type": "shell", "config": {"command": ["echo", "pending=${{ check.payload.pending }}"]}}],
        check={"type": "python", "config": {"handler": f"{EXAMPLES}:inventory_check", "args": {"pending": 5}}},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["performed"] is True
    assert outcome.outputs["check"]["perform_payload"] == {"pending": 5}
    assert outcome.outputs["steps"] == {"work": {"exit_code": 0, "stdout_tail": "pending=5\n"}}


async def test_shell_check_and_checks_that_do_not_decide(tmp_path: Path) -> None:
    shell_check = {
        "type": "shell",
        "config": {
            "command": ["sh", "-c", 'echo looking; echo \'{"should_perform": true, "perform_payload": {"n": 2}}\'']
        },
    }
    step = {"name": "w", "type": "shell", "config": {"command": ["echo", "${{ check.payload.n }}"]}}
    performed, _ = await run_job(tmp_path, [step], check=shell_check)
    assert performed.status == "succeeded", performed
    assert performed.outputs["steps"]["w"]["stdout_tail"] == "2\n"
    undecided, _ = await run_job(tmp_path, [step], check={"type": "shell", "config": {"command": ["echo", "hm"]}})
    assert undecided.status == "failed"
    assert undecided.error is not None
    assert undecided.error.startswith("check: the check's output has no should_perform")
    assert undecided.outputs["performed"] is False
    failing, _ = await run_job(tmp_path, [step], check={"type": "shell", "config": {"command": ["false"]}})
    assert failing.status == "failed"
    assert failing.error == "check: exit code 1; expected 0"
    assert failing.outputs == {"performed": False, "check": {"exit_code": 1, "stdout_tail": ""}, "steps": {}}
    refused, _ = await run_job(tmp_path, [step])
    assert refused.permanent
    assert refused.error is not None
    assert "this job has no check step" in refused.error


async def test_an_http_body_far_above_the_old_8_mib_protocol_line_is_kept_whole(tmp_path: Path, echo_url: str) -> None:
    """``max_body_bytes`` goes up to 64 MiB: a step output that large crosses the child's protocol whole."""
    steps = [
        {"name": "big", "type": "http", "config": {"url": f"{echo_url}/huge/20000000", "max_body_bytes": 64 << 20}},
        {"name": "after", "type": "shell", "config": {"command": ["echo", "${{ steps.big.output.status }}"]}},
    ]
    outcome, _ = await run_job(tmp_path, steps)
    assert outcome.status == "succeeded", outcome.error
    body = outcome.outputs["big"]["body"]
    assert len(body) == 20_000_000
    assert body.startswith("0123456789abcdef")
    assert outcome.outputs["after"]["stdout_tail"] == "200\n"


async def test_outputs_past_what_an_execution_keeps_fail_their_step_clearly(tmp_path: Path, echo_url: str) -> None:
    def fetch(name: str) -> dict[str, Any]:
        return {"name": name, "type": "http", "config": {"url": f"{echo_url}/huge/600000", "max_body_bytes": 1 << 20}}

    outcome, sink = await run_job(
        tmp_path, [fetch("first"), fetch("second"), fetch("never")], settings={"executor_max_result_bytes": 1 << 20}
    )
    assert outcome.status == "failed"
    assert set(outcome.outputs) == {"first"}, "the step that does not fit keeps no output"
    assert outcome.error is not None
    assert re.fullmatch(
        r"step second: output too large: 6\d{5} bytes as JSON, and the outputs of an execution are kept up to"
        r" 1048576 bytes \(AUTOMATION_EXECUTOR_MAX_RESULT_BYTES\); earlier steps took 6\d{5}",
        outcome.error,
    ), outcome.error
    assert sink.of("never") == []
