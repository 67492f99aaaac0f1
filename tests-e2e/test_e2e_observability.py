"""Observability end to end: what the five running services expose, export and log.

- every ``/metrics`` passes ``promtool check metrics``, and offers the queue RED series;
- every metric a Grafana panel or an alert rule names is really exposed (Prometheus' own ``up`` aside);
- one manual run is one trace: job-api's HTTP request and outbox publish, the executor's consume and
  publishes, browser-pool's consume of the browser step (spans captured by an in-memory OTLP receiver);
- every log line is JSON with the service, trace and span ids inside a span, and a run's ids.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from e2e_support import Account, Platform
from otlp_receiver import OtlpReceiver, ReceivedSpan

from automation_suite import SERVICES
from automation_testing import wait_until

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
EXECUTE_ROUTE = "/api/v1/jobs/{job_id}/execute"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
#: Attributes every messaging span carries (OpenTelemetry messaging semantic conventions).
MESSAGING_ATTRIBUTES = (
    "messaging.system",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.rabbitmq.destination.routing_key",
    "messaging.message.id",
)
#: messaging.operation.type of a publish: ``send`` in current conventions, ``publish`` before 1.28.
SEND_TYPES = {"send", "publish"}
BROWSER_WAIT_MESSAGE = (
    "the executor has no working `browser` step yet (services/executor: a browser step is a "
    "browser.task request to browser-pool); this trace test waits on it"
)
BROWSER_TRACE_WHY = (
    "the executor's browser step must send browser.task while the run's consume span is current, so "
    "the request carries the run's traceparent (services/executor)"
)


def deploy_checks() -> ModuleType:
    """The PromQL and exposition helpers of deploy/tests/test_metric_names.py (one parser for both suites)."""
    path = REPO_ROOT / "deploy" / "tests" / "test_metric_names.py"
    spec = importlib.util.spec_from_file_location("deploy_metric_names", path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def scrape(platform: Platform, service: str) -> str:
    async with httpx.AsyncClient(base_url=platform.url(service), timeout=10) as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200, f"{service} /metrics: {resp.status_code}"
    return resp.text


# --- metrics -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is required: install Debian's `prometheus` package (apt-get install prometheus)")
    return found


@pytest.mark.parametrize("service", list(SERVICES))
async def test_promtool_accepts_the_metrics_of(platform: Platform, promtool: str, service: str) -> None:
    exposition = await scrape(platform, service)
    process = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(exposition.encode()), timeout=30)
    report = (out + err).decode(errors="replace")
    assert process.returncode == 0, f"promtool check metrics rejects {service}'s /metrics:\n{report}"
    assert "automation_build_info" in exposition


async def test_dashboards_and_alert_rules_name_only_metrics_the_services_expose(platform: Platform) -> None:
    checks = deploy_checks()
    exposed: set[str] = set()
    for service in SERVICES:
        exposed |= checks.exposed_metric_names(await scrape(platform, service))
    used: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for expr in checks.dashboard_expressions(json.loads(path.read_text())):
            for name in checks.metric_names(expr):
                used.setdefault(name, set()).add(f"dashboard {path.stem}")
    for expr in checks.rule_expressions(REPO_ROOT):
        for name in checks.metric_names(expr):
            used.setdefault(name, set()).add("alert rules")
    assert len(used) >= 30, sorted(used)
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if name not in exposed and name not in checks.PROMETHEUS_SYNTHESIZED
    }
    assert not missing, f"named in dashboards or alerts but exposed by no running service: {missing}"


async def test_every_consumed_queue_has_its_red_series(platform: Platform) -> None:
    sample = re.compile(r"^automation_messages_(received|consumed)_total\{([^}]*)\} ", re.MULTILINE)
    received: set[tuple[str, str]] = set()
    outcomes: dict[tuple[str, str], set[str]] = {}
    for service in SERVICES:
        for kind, raw in sample.findall(await scrape(platform, service)):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', raw))
            key = (labels["service"], labels["queue"])
            if kind == "received":
                received.add(key)
            else:
                outcomes.setdefault(key, set()).add(labels["outcome"])
    assert {
        ("job-api", "job-api.execution-events"),
        ("job-api", "automation.dead"),
        ("executor", "executor.runs"),
        ("browser-pool", "browser-pool.tasks"),
        ("event-gateway", "event-gateway.history"),
    } <= received
    for key in received:
        assert {"acked", "requeued", "dead_lettered"} <= outcomes.get(key, set()), key


# --- traces ------------------------------------------------------------------------------------------


class TraceView:
    """The spans of one trace, with parent links."""

    def __init__(self, spans: list[ReceivedSpan]) -> None:
        self.spans = spans
        self.by_id = {span.span_id: span for span in spans}

    def find(self, service: str, kind: str, **attributes: Any) -> list[ReceivedSpan]:
        return [
            span
            for span in self.spans
            if span.service == service
            and span.kind == kind
            and all(span.attributes.get(key) == value for key, value in attributes.items())
        ]

    def descends(self, span: ReceivedSpan, ancestors: list[ReceivedSpan]) -> bool:
        """Whether ``span`` has one of ``ancestors`` up its (received) parent chain."""
        wanted = {ancestor.span_id for ancestor in ancestors}
        seen: set[str] = set()
        current: ReceivedSpan | None = span
        while current is not None and current.parent_span_id and current.span_id not in seen:
            seen.add(current.span_id)
            if current.parent_span_id in wanted:
                return True
            current = self.by_id.get(current.parent_span_id)
        return False

    def listing(self) -> str:
        return "\n".join(span.describe() for span in self.spans) or "(no span received)"


Expectation = Callable[[TraceView], str | None]


def messaging_problems(span: ReceivedSpan, operation_types: set[str]) -> str | None:
    """What ``span`` lacks of the messaging semantic conventions, if anything."""
    absent = [key for key in MESSAGING_ATTRIBUTES if not span.attributes.get(key)]
    if absent:
        return f"{span.service} span {span.name!r} lacks {absent}"
    if span.attributes["messaging.system"] != "rabbitmq":
        return f"{span.name!r}: messaging.system is {span.attributes['messaging.system']!r}"
    if span.attributes["messaging.operation.type"] not in operation_types:
        return f"{span.name!r}: messaging.operation.type {span.attributes['messaging.operation.type']!r}"
    return None


def request_span(job_id: str, parent_id: str) -> Expectation:
    def check(view: TraceView) -> str | None:
        found = view.find("job-api", "SERVER", **{"http.route": EXECUTE_ROUTE})
        if len(found) != 1:
            return f"job-api SERVER span for {EXECUTE_ROUTE}: found {len(found)}"
        span = found[0]
        expected = {
            "http.request.method": "POST",
            "http.response.status_code": 202,
            "url.path": f"/api/v1/jobs/{job_id}/execute",
            "url.scheme": "http",
        }
        wrong = {key: span.attributes.get(key) for key, value in expected.items() if span.attributes.get(key) != value}
        if span.name != f"POST {EXECUTE_ROUTE}" or wrong:
            return f"job-api SERVER span {span.name!r} has {wrong} (expected {expected})"
        if span.parent_span_id != parent_id:
            return f"job-api SERVER span's parent is {span.parent_span_id!r}, not the caller's {parent_id}"
        return None

    return check


def message_span(
    service: str, kind: str, *, chained_to: tuple[str, str], why: str = "", **attributes: Any
) -> Expectation:
    """A PRODUCER/CONSUMER span of ``service`` with ``attributes``, below a span of ``chained_to``
    (service, kind) in the trace, following the messaging conventions."""

    def check(view: TraceView) -> str | None:
        what = f"{service} {kind} span with {attributes}"
        found = view.find(service, kind, **attributes)
        if not found:
            return f"no {what}" + (f" ({why})" if why else "")
        ancestors = view.find(*chained_to)
        chained = [span for span in found if view.descends(span, ancestors)]
        if not chained:
            return f"{what} is not below the {chained_to[0]} {chained_to[1]} span" + (f" ({why})" if why else "")
        return messaging_problems(chained[0], {"process"} if kind == "CONSUMER" else SEND_TYPES)

    return check


async def wait_for_trace(receiver: OtlpReceiver, trace_id: str, expectations: list[Expectation]) -> None:
    """Wait until every expectation holds for the trace; fail naming each that does not."""
    deadline = time.monotonic() + 20
    while True:
        view = TraceView(receiver.trace(trace_id))
        problems = [problem for check in expectations if (problem := check(view))]
        if not problems:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"trace {trace_id} is incomplete:\n- "
                + "\n- ".join(problems)
                + f"\nspans received of this trace:\n{view.listing()}"
                + (f"\nreceiver errors: {receiver.errors}" if receiver.errors else ""),
                pytrace=False,
            )
        await asyncio.sleep(0.2)


def new_traceparent() -> tuple[str, str, str]:
    """(trace id, parent span id, ``traceparent`` header) of a sampled remote caller."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


async def run_job(
    client: httpx.AsyncClient, account: Account, steps: list[dict[str, Any]], traceparent: str
) -> tuple[str, str, dict[str, Any]]:
    """Create a job with ``steps``, run it by hand under ``traceparent``; (job id, execution id, final state)."""
    created = await client.post(
        "/api/v1/jobs",
        headers=account.headers,
        json={"name": f"observed-{secrets.token_hex(4)}", "timeout_seconds": 60, "steps": steps},
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    run = await client.post(
        f"/api/v1/jobs/{job_id}/execute", json={}, headers={**account.headers, "traceparent": traceparent}
    )
    assert run.status_code == 202, run.text
    execution_id = run.json()["execution_id"]

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)).json()
        return body if body.get("status") in TERMINAL else None

    state = await wait_until(finished, timeout=60, interval=0.3, what=f"execution {execution_id} to finish")
    return job_id, execution_id, state


def shell_step(marker: str) -> dict[str, Any]:
    return {"name": "say", "type": "shell", "config": {"command": ["echo", marker]}}


def run_chain(job_id: str, parent_id: str) -> list[Expectation]:
    """job-api's request → the executor's consume of run.requested → what the run publishes → job-api
    recording the outcome: the part of a run's trace that needs no browser."""
    executor_consume = ("executor", "CONSUMER")
    return [
        request_span(job_id, parent_id),
        message_span(
            "executor",
            "CONSUMER",
            chained_to=("job-api", "SERVER"),
            **{
                "messaging.destination.name": "executor.runs",
                "messaging.rabbitmq.destination.routing_key": "run.requested",
            },
        ),
        message_span(
            "executor",
            "PRODUCER",
            chained_to=executor_consume,
            **{"messaging.destination.name": "automation.events"},
        ),
        # A short run's log goes through the outbox with its outcome (the relay publishes both in one
        # batch), so its consume descends from the executor's consume like the outcome's.
        message_span(
            "job-api",
            "CONSUMER",
            chained_to=executor_consume,
            **{"messaging.rabbitmq.destination.routing_key": "execution.log"},
        ),
        message_span(
            "job-api",
            "CONSUMER",
            chained_to=executor_consume,
            **{"messaging.rabbitmq.destination.routing_key": "execution.succeeded"},
        ),
    ]


async def test_a_manual_shell_run_is_one_trace_from_job_api_through_the_executor(
    platform: Platform, account: Account, otlp_receiver: OtlpReceiver
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        job_id, _, state = await run_job(client, account, [shell_step("traced")], traceparent)
    assert state["status"] == "succeeded", state
    await wait_for_trace(otlp_receiver, trace_id, run_chain(job_id, parent_id))


async def test_a_manual_run_with_a_browser_step_is_one_trace_across_job_api_executor_and_browser_pool(
    platform: Platform, account: Account, otlp_receiver: OtlpReceiver, page_server: str
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    steps = [
        shell_step("before-browsing"),
        {
            "name": "browse",
            "type": "browser",
            "config": {"actions": [{"type": "goto", "url": page_server}, {"type": "screenshot"}]},
        },
    ]
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        job_id, _, state = await run_job(client, account, steps, traceparent)
    if state["status"] != "succeeded":
        pytest.fail(f"{BROWSER_WAIT_MESSAGE}: the run ended {state['status']}: {state.get('error')}", pytrace=False)
    executor_consume = ("executor", "CONSUMER")
    await wait_for_trace(
        otlp_receiver,
        trace_id,
        [
            *run_chain(job_id, parent_id),
            message_span(
                "job-api",
                "PRODUCER",
                chained_to=("job-api", "SERVER"),
                why="the outbox relay's publish must continue the trace its row carries: "
                "Publisher.publish_raw in libs/messaging broker.py starts its span from the headers' traceparent",
                **{
                    "messaging.destination.name": "automation.commands",
                    "messaging.rabbitmq.destination.routing_key": "run.requested",
                },
            ),
            message_span(
                "executor",
                "PRODUCER",
                chained_to=executor_consume,
                why=BROWSER_TRACE_WHY,
                **{
                    "messaging.destination.name": "automation.commands",
                    "messaging.rabbitmq.destination.routing_key": "browser.task",
                },
            ),
            message_span(
                "browser-pool",
                "CONSUMER",
                chained_to=executor_consume,
                why=BROWSER_TRACE_WHY,
                **{
                    "messaging.destination.name": "browser-pool.tasks",
                    "messaging.rabbitmq.destination.routing_key": "browser.task",
                },
            ),
        ],
    )


# --- logs --------------------------------------------------------------------------------------------


def read_log(platform: Platform, service: str) -> list[dict[str, Any]]:
    """Every line ``service`` wrote so far, each parsed as a JSON object (fails on any other line)."""
    assert platform.config.log_dir is not None
    lines = (platform.config.log_dir / f"{service}.log").read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{service}.log line {number} is not JSON: {line[:300]!r}", pytrace=False)
        assert isinstance(record, dict), f"{service}.log line {number}: {line[:300]!r}"
        records.append(record)
    return records


async def test_every_log_line_is_json_with_service_trace_and_run_ids(platform: Platform, account: Account) -> None:
    trace_id, _, traceparent = new_traceparent()
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        job_id, execution_id, state = await run_job(client, account, [shell_step("logged")], traceparent)
    assert state["status"] == "succeeded", state

    async def run_logged() -> bool:
        return any(
            r.get("event") == "execution_finished" and r.get("execution_id") == execution_id
            for r in read_log(platform, "executor")
        )

    await wait_until(run_logged, timeout=10, what="the executor's execution_finished line")
    for service in SERVICES:
        records = read_log(platform, service)
        assert records, f"{service} logged nothing"
        for record in records:
            where = f"{service}: {record}"
            assert record.get("service") == service, where
            assert {"event", "level", "timestamp"} <= set(record), where
            # Inside a consumer span (event_id bound) or an HTTP request span, the ids are there.
            if "event_id" in record or record.get("event") == "http_request":
                assert HEX32.match(str(record.get("trace_id", ""))), where
                assert HEX16.match(str(record.get("span_id", ""))), where

    run_lines = [r for r in read_log(platform, "executor") if r.get("execution_id") == execution_id]
    assert {"execution_started", "execution_finished"} <= {r["event"] for r in run_lines}, run_lines
    for record in run_lines:
        assert record.get("job_id") == job_id, record
        assert record.get("trace_id") == trace_id, record
    requests = [
        r
        for r in read_log(platform, "job-api")
        if r.get("event") == "http_request" and r.get("route") == EXECUTE_ROUTE and r.get("job_id") == job_id
    ]
    assert [r.get("trace_id") for r in requests] == [trace_id], requests
