"""Real PostgreSQL and RabbitMQ for tests, isolated per test session.

The base URLs come from ``AUTOMATION_DATABASE_URL`` / ``AUTOMATION_AMQP_URL`` (defaults: the local
services of ARCHITECTURE.md). Each session gets its own database (created and dropped) and its own
RabbitMQ virtual host (``rabbitmqctl`` when the broker is local, else the management API), so parallel
runs never see each other's messages. When either service cannot be reached the test FAILS with a
message that says which and how to start it; it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
START_HINT = (
    "start them with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start;"
    " rabbitmq-server -detached"
)


@dataclass(frozen=True, slots=True)
class Infra:
    """URLs of this session's own database and vhost."""

    database_url: str
    amqp_url: str


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def require_infra(database_url: str, amqp_url: str) -> None:
    """Fail (not skip) when PostgreSQL or RabbitMQ does not answer."""
    missing = [
        name
        for name, url, port in (("PostgreSQL", database_url, 5432), ("RabbitMQ", amqp_url, 5672))
        if not _reachable(url, port)
    ]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not reachable for the tests; {START_HINT}", pytrace=False)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def fresh_database(base_url: str, prefix: str = "automation_test") -> AsyncIterator[str]:
    """Create a database for the caller and drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_path(base_url, "/" + name)
    finally:
        admin = await asyncpg.connect(base_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise FileNotFoundError("rabbitmqctl")
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


async def _management(method: str, url: str, path: str) -> None:
    parts = urlsplit(url)
    api = f"http://{parts.hostname}:15672/api{path}"
    auth = (parts.username or "guest", parts.password or "guest")
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.request(method, api, auth=auth, json={"configure": ".*", "write": ".*", "read": ".*"})
        resp.raise_for_status()


async def drop_broker_connections(amqp_url: str) -> None:
    """Have RabbitMQ close every client connection of ``amqp_url``'s vhost, as a broker restart does.

    The clients see their connection closed by the broker (``CONNECTION_FORCED``); their channels close
    and robust connections reconnect. Other vhosts (other test sessions, a running suite) are untouched.
    """
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    if parts.hostname in {"127.0.0.1", "localhost", "::1"} and shutil.which("rabbitmqctl") is not None:
        await asyncio.to_thread(_rabbitmqctl, "close_all_connections", "--vhost", vhost, "closed by a test")
        return
    api = f"http://{parts.hostname}:15672/api"
    auth = (parts.username or "guest", parts.password or "guest")
    async with httpx.AsyncClient(timeout=10, auth=auth) as client:
        listed = await client.get(f"{api}/vhosts/{quote(vhost, safe='')}/connections")
        listed.raise_for_status()
        for connection in listed.json():
            closed = await client.delete(f"{api}/connections/{quote(connection['name'], safe='')}")
            closed.raise_for_status()


@contextlib.asynccontextmanager
async def fresh_vhost(base_url: str, prefix: str = "automation-test") -> AsyncIterator[str]:
    """Create a RabbitMQ vhost for the caller (deleted afterwards); yields its AMQP URL."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    user = urlsplit(base_url).username or "guest"
    host = urlsplit(base_url).hostname or "127.0.0.1"
    local = host in {"127.0.0.1", "localhost", "::1"} and shutil.which("rabbitmqctl") is not None
    if local:
        await asyncio.to_thread(_rabbitmqctl, "add_vhost", name)
        await asyncio.to_thread(_rabbitmqctl, "set_permissions", "-p", name, user, ".*", ".*", ".*")
    else:
        await _management("PUT", base_url, f"/vhosts/{quote(name, safe='')}")
        await _management("PUT", base_url, f"/permissions/{quote(name, safe='')}/{quote(user, safe='')}")
    try:
        yield _with_path(base_url, "/" + quote(name, safe=""))
    finally:
        with contextlib.suppress(Exception):
            if local:
                await asyncio.to_thread(_rabbitmqctl, "delete_vhost", name)
            else:
                await _management("DELETE", base_url, f"/vhosts/{quote(name, safe='')}")
