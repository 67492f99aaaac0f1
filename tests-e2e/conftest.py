"""End-to-end fixtures: the five services as real processes against a fresh database and vhost.

Everything a test does goes through the public HTTP APIs and AMQP. Service logs are written to a
temporary folder and the tail of each is printed when the suite fails to start. Every service exports
its spans to an in-memory OTLP receiver (:func:`otlp_receiver`); :func:`service_env` is where such
additions to the services' environment go.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from e2e_support import Account, Platform
from otlp_receiver import OtlpReceiver

from automation_suite import SERVICES, Suite, SuiteConfig
from automation_testing import fresh_database, fresh_vhost, require_infra
from automation_testing.infra import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tails(log_dir: Path) -> str:
    parts = []
    for log in sorted(log_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-25:]
        parts.append(f"--- {log.name} ---\n" + "\n".join(lines))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """Every span the services export during the session (they get its endpoint through :func:`service_env`)."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def service_env(otlp_receiver: OtlpReceiver) -> dict[str, str]:
    """Environment added to every service process besides the platform's own settings.

    Tracing: spans go to the in-memory receiver, and the batch processor sends them every 200 ms
    (the standard ``OTEL_BSP_SCHEDULE_DELAY``) so a test sees them quickly.
    """
    return {"AUTOMATION_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}


def _with_extra(env: dict[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    clash = sorted(set(env) & set(extra))
    assert not clash, f"service_env must not override the platform's own settings: {clash}"
    return {**env, **extra}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str]) -> AsyncIterator[Platform]:
    base_db = os.environ.get("AUTOMATION_DATABASE_URL", DEFAULT_DATABASE_URL)
    base_amqp = os.environ.get("AUTOMATION_AMQP_URL", DEFAULT_AMQP_URL)
    require_infra(base_db, base_amqp)
    log_dir = tmp_path_factory.mktemp("service-logs")
    admin_token = secrets.token_urlsafe(32)
    async with (
        fresh_database(base_db, prefix="automation_e2e") as db_url,
        fresh_vhost(base_amqp, "automation-e2e") as amqp,
    ):
        env = {
            "AUTOMATION_ENV": "development",
            "AUTOMATION_DATABASE_URL": db_url,
            "AUTOMATION_AMQP_URL": amqp,
            "AUTOMATION_JWT_SECRET": secrets.token_urlsafe(32),
            "AUTOMATION_ADMIN_TOKEN": admin_token,
            "AUTOMATION_LOG_FORMAT": "json",
            "AUTOMATION_BROWSER_POOL_SIZE": "1",
            "AUTOMATION_SHUTDOWN_GRACE_SECONDS": "5",
        }
        env = _with_extra(env, service_env)
        config = SuiteConfig(
            env=env, ports={name: free_port() for name in SERVICES}, log_dir=log_dir, echo=False, stop_grace_seconds=10
        )
        suite = Suite(config)
        try:
            await asyncio.to_thread(suite.migrate)
            suite.start()
            await asyncio.to_thread(suite.wait_ready, 120.0)
        except (RuntimeError, TimeoutError) as exc:
            suite.stop()
            pytest.fail(f"the suite did not start: {exc}\n{_tails(log_dir)}", pytrace=False)
        try:
            yield Platform(config=config, admin_token=admin_token, amqp_url=amqp, database_url=db_url)
        finally:
            await asyncio.to_thread(suite.stop)
            dead = {n: c for n, c in suite.dead().items() if c not in (0, -15)}
            assert not dead, f"services exited badly on stop: {dead}\n{_tails(log_dir)}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def account(platform: Platform) -> Account:
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        resp = await client.post(
            "/api/v1/accounts",
            json={"name": f"e2e-{secrets.token_hex(3)}"},
            headers={"Authorization": f"Bearer {platform.admin_token}"},
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        token = await client.post("/api/v1/auth/token", headers={"Authorization": f"Bearer {body['api_key']}"})
        assert token.status_code == 200, token.text
    return Account(id=body["id"], api_key=body["api_key"], token=token.json()["access_token"])


@pytest.fixture(scope="session")
def page_server() -> Iterator[str]:
    """A tiny web page served on 127.0.0.1 for the browser test."""
    import http.server
    import threading

    page = (
        b"<!doctype html><html><head><title>E2E Marker Page</title></head><body><h1 id='h'>hello e2e</h1></body></html>"
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
