"""deploy/docker: hadolint-clean Dockerfile, one hardened final target per service, every
workspace member in the cached dependency layer, and the stdlib health probe."""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]

HEALTHCHECK = (
    'HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "/app/healthcheck.py"]'
)


def stages(dockerfile_text: str) -> dict[str, str]:
    """Stage name -> the instructions of that stage (up to the next FROM)."""
    parts = re.split(r"^(?=FROM\s)", dockerfile_text, flags=re.MULTILINE)
    result: dict[str, str] = {}
    for part in parts:
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", part, flags=re.IGNORECASE)
        if match:
            result[match.group(1)] = part
    return result


@pytest.fixture(scope="module")
def dockerfile(repo_root: Path) -> str:
    return (repo_root / "deploy" / "docker" / "Dockerfile").read_text()


def test_hadolint_passes(hadolint: str, run: Run) -> None:
    result = run(hadolint, "deploy/docker/Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_service_has_a_hardened_final_target(dockerfile: str, app_services: dict[str, int]) -> None:
    by_name = stages(dockerfile)
    for name, port in app_services.items():
        assert name in by_name, f"no target {name!r}"
        stage = by_name[name]
        package = "automation_" + name.replace("-", "_")
        assert stage.startswith("FROM runtime AS"), f"{name} must build on the shared runtime stage"
        assert f"COPY --from=build-{name} /opt/venv /opt/venv" in stage
        assert f"EXPOSE {port}" in stage
        assert f"AUTOMATION_HTTP_PORT={port}" in stage
        assert re.search(r"^USER 10001", stage, flags=re.MULTILINE), f"{name} must run as a non-root user"
        assert HEALTHCHECK in stage
        assert f'ENTRYPOINT ["python", "-m", "{package}"]' in stage
        assert 'CMD ["serve"]' in stage
        build = by_name[f"build-{name}"]
        assert f"--no-install-workspace --package automation-{name}" in build
        assert f"--no-editable --package automation-{name}" in build
    assert "FROM python:3.11-slim-bookworm" in dockerfile or "PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert "AUTOMATION_SCHEMAS_DIR=/app/proto-schemas" in by_name["runtime"]
    assert "COPY proto-schemas /app/proto-schemas" in by_name["runtime"]
    assert "AUTOMATION_CHROMIUM_PATH=/usr/bin/chromium" in by_name["browser-pool"]


def test_uv_is_installed_pinned_from_pypi(dockerfile: str) -> None:
    assert re.search(r"^ARG UV_VERSION=\d+\.\d+\.\d+$", dockerfile, flags=re.MULTILINE)
    assert 'pip install --no-cache-dir "uv==${UV_VERSION}"' in dockerfile


def test_every_workspace_member_is_in_the_dependency_layer(repo_root: Path, dockerfile: str) -> None:
    workspace = stages(dockerfile)["workspace"]
    members = sorted(
        path.parent.relative_to(repo_root).as_posix()
        for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml")
        for path in repo_root.glob(pattern)
    )
    assert members, "no workspace members found"
    for member in members:
        assert f"COPY {member}/pyproject.toml {member}/" in workspace, f"{member} missing from the workspace stage"


def test_dockerignore_keeps_what_the_build_needs(repo_root: Path) -> None:
    lines = (repo_root / ".dockerignore").read_text().splitlines()
    patterns = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {"**/.venv", "**/.git", "**/tests"} <= patterns
    for needed in ("libs", "services", "proto-schemas", "uv.lock", "pyproject.toml"):
        assert needed not in patterns
    assert "!deploy/docker/healthcheck.py" in patterns


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _probe(repo_root: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    script = repo_root / "deploy" / "docker" / "healthcheck.py"
    env = {"AUTOMATION_HTTP_PORT": str(port), "HTTP_PROXY": "http://127.0.0.1:9", "PATH": ""}
    return subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_health_probe_passes_on_2xx(repo_root: Path, health_server: int) -> None:
    result = _probe(repo_root, health_server)
    assert result.returncode == 0, result.stderr


def test_health_probe_fails_on_error_status(repo_root: Path, health_server: int) -> None:
    result = _probe(repo_root, health_server, "/readyz")
    assert result.returncode == 1
    assert "answered 503" in result.stderr


def test_health_probe_fails_when_nothing_listens(repo_root: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    result = _probe(repo_root, free_port)
    assert result.returncode == 1
    assert "unreachable" in result.stderr
