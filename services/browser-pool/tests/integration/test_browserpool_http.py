"""browser-pool over HTTP with real Chromium, PostgreSQL and RabbitMQ (Chromium launched once per module)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from automation_browser_pool.app import create_app
from automation_browser_pool.db.tables import metadata
from automation_browser_pool.settings import BrowserPoolSettings
from automation_browser_pool.state import BrowserPoolState
from automation_core.auth import issue_token
from automation_db import schema_drift, utcnow
from automation_testing import wait_until

pytestmark = pytest.mark.integration

ADMIN = "t" * 32
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAGES = {
    "/page.html": "<!doctype html><title>Browser Pool Test</title><h1 id='greeting'>Hello from the test</h1>",
    "/form.html": """<!doctype html><title>Form</title>
<input id="name"><button id="greet" onclick="
  document.querySelector('#out').textContent = 'Hello, ' + document.querySelector('#name').value">Greet</button>
<input id="search" onkeydown="if (event.key === 'Enter') document.querySelector('#hit').hidden = false">
<p id="out"></p><p id="hit" hidden>searched</p>
<a id="next" href="/page.html?n=2">next</a><ul><li>a</li><li>b</li><li>c</li></ul>""",
}


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    app: FastAPI
    settings: BrowserPoolSettings
    client: httpx.AsyncClient

    @property
    def state(self) -> BrowserPoolState:
        state: BrowserPoolState = self.app.state.browser_pool
        return state

    async def run(self, *actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {"task_id": str(uuid.uuid4()), "actions": list(actions), **fields}
        response = await self.client.post("/api/v1/tasks", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(database_url: str, amqp_url: str) -> AsyncIterator[Service]:
    settings = BrowserPoolSettings(
        database_url=database_url,
        amqp_url=amqp_url,
        env="development",
        jwt_secret="x" * 32,
        admin_token=ADMIN,
        browser_pool_size=1,
        browser_contexts_per_browser=4,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as client,
    ):
        yield Service(app, settings, client)


async def test_schema_matches_the_migrations(service: Service, database_url: str) -> None:
    assert await schema_drift(database_url, metadata) == []


async def test_ready_with_a_connected_browser(service: Service) -> None:
    response = await service.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "browsers": "ok"}


async def test_goto_and_screenshot_store_a_png_artifact(service: Service, site: str) -> None:
    result = await service.run({"type": "goto", "url": f"{site}/page.html"}, {"type": "screenshot", "name": "page.png"})
    assert result["ok"] is True, result
    assert result["title"] == "Browser Pool Test"
    assert result["url"] == f"{site}/page.html"
    assert result["error"] is None
    [artifact] = result["artifacts"]
    assert (artifact["kind"], artifact["content_type"], artifact["action_index"]) == ("screenshot", "image/png", 1)

    response = await service.client.get(f"/api/v1/artifacts/{artifact['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == artifact["size_bytes"] == len(response.content)
    assert response.content.startswith(PNG_SIGNATURE)
    assert 'filename="page.png"' in response.headers["content-disposition"]

    meta = (await service.client.get(f"/api/v1/artifacts/{artifact['id']}/meta")).json()
    assert meta["task_id"] == result["task_id"]
    assert meta["sha256"] == hashlib.sha256(response.content).hexdigest()
    assert (meta["kind"], meta["name"], meta["size_bytes"]) == ("screenshot", "page.png", artifact["size_bytes"])


async def test_fill_click_press_extract_evaluate_on_a_form(service: Service, site: str) -> None:
    result = await service.run(
        {"type": "goto", "url": f"{site}/form.html", "wait_until": "domcontentloaded"},
        {"type": "fill", "selector": "#name", "value": "Ada"},
        {"type": "click", "selector": "#greet"},
        {"type": "fill", "selector": "#search", "value": "pool"},
        {"type": "press", "selector": "#search", "key": "Enter"},
        {"type": "wait_for", "selector": "#hit", "state": "visible"},
        {"type": "extract", "selector": "#out", "name": "greeting"},
        {"type": "extract", "selector": "#next", "attribute": "href", "name": "next"},
        {"type": "evaluate", "expression": "document.querySelectorAll('li').length", "name": "items"},
        {"type": "evaluate", "expression": "() => ({size: [innerWidth, innerHeight]})", "name": "viewport"},
        viewport={"width": 800, "height": 600},
    )
    assert result["ok"] is True, result
    assert result["outputs"] == {
        "greeting": "Hello, Ada",
        "next": "/page.html?n=2",
        "items": 3,
        "viewport": {"size": [800, 600]},
    }
    assert result["title"] == "Form"
    assert result["artifacts"] == []


async def test_pdf_is_stored(service: Service, site: str) -> None:
    result = await service.run({"type": "goto", "url": f"{site}/page.html"}, {"type": "pdf"})
    assert result["ok"] is True, result
    [artifact] = result["artifacts"]
    assert (artifact["kind"], artifact["content_type"]) == ("pdf", "application/pdf")
    response = await service.client.get(f"/api/v1/artifacts/{artifact['id']}")
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")


async def test_every_task_gets_a_fresh_context(service: Service, site: str) -> None:
    first = await service.run(
        {"type": "set_cookies", "cookies": [{"name": "flavour", "value": "oat", "url": site}]},
        {"type": "goto", "url": f"{site}/page.html"},
        {"type": "evaluate", "expression": "localStorage.setItem('k', 'v') || document.cookie", "name": "cookie"},
    )
    assert first["outputs"] == {"cookie": "flavour=oat"}, first
    second = await service.run(
        {"type": "goto", "url": f"{site}/page.html"},
        {"type": "evaluate", "expression": "[document.cookie, localStorage.getItem('k')]", "name": "state"},
    )
    assert second["outputs"] == {"state": ["", None]}, second


async def test_navigation_to_a_closed_port_is_an_error_reply(service: Service) -> None:
    result = await service.run({"type": "goto", "url": f"http://127.0.0.1:{closed_port()}/"}, {"type": "screenshot"})
    assert result["ok"] is False
    assert result["error"].startswith("action 0 (goto): ")
    assert "ERR_CONNECTION_REFUSED" in result["error"]
    assert "Call log" not in result["error"]
    assert result["artifacts"] == []
    stored = (await service.client.get(f"/api/v1/tasks/{result['task_id']}")).json()
    assert stored == result


@pytest.mark.parametrize(
    "url", ["file:///etc/hostname", "chrome://version", "data:text/html,hello", "javascript:void(0)"]
)
async def test_non_web_urls_are_refused(service: Service, url: str) -> None:
    result = await service.run({"type": "goto", "url": url}, {"type": "screenshot"})
    assert result["ok"] is False
    assert "is not allowed (only http, https and about:blank)" in result["error"]
    assert result["artifacts"] == []
    assert result["title"] is None


async def test_a_missing_selector_times_out_within_the_task_timeout(service: Service, site: str) -> None:
    started = time.monotonic()
    result = await service.run(
        {"type": "goto", "url": f"{site}/page.html"},
        {"type": "screenshot"},
        {"type": "click", "selector": "#missing"},
        timeout_seconds=1.5,
    )
    assert time.monotonic() - started < 4
    assert result["ok"] is False
    assert result["error"].startswith("action 2 (click): ")
    assert "Timeout" in result["error"]
    assert result["title"] == "Browser Pool Test"
    assert len(result["artifacts"]) == 1, "what ran before the failure is kept"


async def test_a_stuck_script_ends_at_the_deadline_and_the_pool_goes_on(service: Service, site: str) -> None:
    result = await service.run(
        {"type": "goto", "url": "about:blank"},
        {"type": "evaluate", "expression": "new Promise(() => {})", "name": "never"},
        timeout_seconds=1,
    )
    assert result["ok"] is False
    assert result["error"] == "action 1 (evaluate): the task's 1s timeout ran out"
    after = await service.run({"type": "goto", "url": f"{site}/page.html"})
    assert after["ok"] is True
    pool = (await service.client.get("/api/v1/pool")).json()
    assert pool["busy_contexts"] == 0


async def test_a_task_id_answered_before_gets_the_stored_result(service: Service, site: str) -> None:
    body = {
        "task_id": str(uuid.uuid4()),
        "actions": [{"type": "goto", "url": f"{site}/page.html"}, {"type": "screenshot"}],
    }
    first = (await service.client.post("/api/v1/tasks", json=body)).json()
    again = (await service.client.post("/api/v1/tasks", json=body)).json()
    assert again == first


async def test_an_invalid_task_is_a_problem_naming_the_field(service: Service) -> None:
    response = await service.client.post("/api/v1/tasks", json={"task_id": str(uuid.uuid4()), "actions": []})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "actions"


async def test_unknown_artifacts_and_tasks_are_404_problems(service: Service) -> None:
    for path in (
        f"/api/v1/artifacts/{uuid.uuid4()}",
        f"/api/v1/artifacts/{uuid.uuid4()}/meta",
        f"/api/v1/tasks/{uuid.uuid4()}",
    ):
        response = await service.client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


async def test_pool_status(service: Service) -> None:
    pool = (await service.client.get("/api/v1/pool")).json()
    assert (pool["size"], pool["contexts_per_browser"], pool["capacity_contexts"]) == (1, 4, 4)
    assert pool["connected_browsers"] == 1
    assert pool["busy_contexts"] == 0
    [browser] = pool["browsers"]
    assert browser["connected"] is True
    assert browser["tasks_served"] >= 1


async def test_a_disconnected_browser_is_replaced(service: Service, site: str) -> None:
    pool = service.state.pool
    before = pool.status()
    async with pool.slot(timeout=5) as browser:
        pass
    await browser.close()

    def replaced() -> bool:
        status = pool.status()
        return status.restarts == before.restarts + 1 and status.connected_browsers == 1

    await wait_until(lambda: asyncio.sleep(0, replaced()), timeout=15, what="a replacement browser")
    assert [b.number for b in pool.status().browsers] != [b.number for b in before.browsers]
    result = await service.run({"type": "goto", "url": f"{site}/page.html"})
    assert result["ok"] is True, result
    assert 'automation_browser_restarts_total{reason="crashed"}' in (await service.client.get("/metrics")).text


async def test_credentials(service: Service) -> None:
    anonymous = await service.client.get("/api/v1/pool", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    wrong = await service.client.get("/api/v1/pool", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    token, _ = issue_token(service.settings, account_id=uuid.uuid4())
    with_jwt = await service.client.get("/api/v1/pool", headers={"Authorization": f"Bearer {token}"})
    assert with_jwt.status_code == 200
    for path in ("/api/v1/tasks", f"/api/v1/artifacts/{uuid.uuid4()}"):
        method = "POST" if path.endswith("tasks") else "GET"
        response = await service.client.request(method, path, headers={"Authorization": ""})
        assert response.status_code == 401, path
    assert (await service.client.get("/healthz", headers={"Authorization": ""})).status_code == 200


async def test_metrics(service: Service) -> None:
    text = (await service.client.get("/metrics")).text
    assert 'automation_browser_tasks_total{outcome="ok"}' in text
    assert 'automation_browser_tasks_total{outcome="error"}' in text
    assert "automation_browser_pool_capacity_contexts 4.0" in text
    assert "automation_browser_pool_browsers 1.0" in text
    assert "automation_browser_pool_wait_seconds_count" in text


async def test_retention_cleanup_deletes_old_artifacts(service: Service, site: str) -> None:
    result = await service.run({"type": "goto", "url": f"{site}/page.html"}, {"type": "screenshot"})
    artifact_id = result["artifacts"][0]["id"]
    janitor = service.state.janitor
    kept = await janitor.prune()
    assert (kept.artifacts, kept.tasks) == (0, 0)
    assert (await service.client.get(f"/api/v1/artifacts/{artifact_id}")).status_code == 200
    later = utcnow() + timedelta(hours=service.settings.artifact_retention_hours, minutes=1)
    pruned = await janitor.prune(now=later)
    assert pruned.artifacts >= 1
    assert pruned.tasks >= 1
    assert (await service.client.get(f"/api/v1/artifacts/{artifact_id}")).status_code == 404
    assert (await service.client.get(f"/api/v1/tasks/{result['task_id']}")).status_code == 404
