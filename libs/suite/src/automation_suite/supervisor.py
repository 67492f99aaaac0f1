"""A small process supervisor for the five services.

It migrates every service, starts each ``python -m automation_<pkg> serve`` in its own process group,
waits until every ``/readyz`` answers 200, and stops them all (SIGTERM, then SIGKILL after a grace
period) when asked, when one of them dies, or on Ctrl-C. The end-to-end tests use the same code.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

SERVICES: dict[str, tuple[str, int]] = {
    "job-api": ("automation_job_api", 8000),
    "scheduler": ("automation_scheduler", 8001),
    "executor": ("automation_executor", 8002),
    "browser-pool": ("automation_browser_pool", 8003),
    "event-gateway": ("automation_event_gateway", 8004),
}


@dataclass
class SuiteConfig:
    """How to run the suite: ports, environment shared by all services, where logs go."""

    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=lambda: {name: port for name, (_, port) in SERVICES.items()})
    host: str = "127.0.0.1"
    log_dir: Path | None = None
    echo: bool = True
    stop_grace_seconds: float = 15.0

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"


def dev_environment(state_dir: Path) -> dict[str, str]:
    """Environment for a local run: development mode, and a JWT key and admin token kept in ``state_dir``.

    Values already in the environment win, so ``AUTOMATION_*`` variables set by the user are respected.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    secrets_file = state_dir / "secrets.env"
    stored: dict[str, str] = {}
    if secrets_file.exists():
        for line in secrets_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and value:
                stored[key] = value
    for key in ("AUTOMATION_JWT_SECRET", "AUTOMATION_ADMIN_TOKEN"):
        stored.setdefault(key, secrets.token_urlsafe(32))
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
    secrets_file.chmod(0o600)
    env = {"AUTOMATION_ENV": "development", **stored}
    if sys.stdout.isatty():
        env["AUTOMATION_LOG_FORMAT"] = "console"  # the services write to a pipe; the person reads a terminal
    env.update({k: v for k, v in os.environ.items() if k.startswith("AUTOMATION_")})
    return env


class ServiceProcess:
    """One service process and the thread that copies its output."""

    def __init__(self, name: str, config: SuiteConfig) -> None:
        self.name = name
        self.module, _ = SERVICES[name]
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._pump: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
        env.update(self.config.env)
        env["AUTOMATION_HTTP_HOST"] = self.config.host
        env["AUTOMATION_HTTP_PORT"] = str(self.config.ports[self.name])
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def run_once(self, command: str, timeout: float = 180) -> None:
        """Run ``python -m <module> <command>`` to completion (used for ``migrate``)."""
        result = subprocess.run(
            [sys.executable, "-m", self.module, command],
            env=self.environment(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")[-4000:]
            raise RuntimeError(f"{self.name} {command} failed (exit {result.returncode}):\n{output}")

    def start(self) -> None:
        if self.config.log_dir is not None:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            self._log = (self.config.log_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "serve"],
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        if self.process is None or self.process.stdout is None:
            return
        prefix = f"{self.name:>13} | ".encode()
        for line in self.process.stdout:
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if self.config.echo:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.buffer.flush()

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()


class Suite:
    """The five services as processes."""

    def __init__(self, config: SuiteConfig, services: Mapping[str, object] | None = None) -> None:
        self.config = config
        names = list(services) if services is not None else list(SERVICES)
        self.processes = {name: ServiceProcess(name, config) for name in names}

    def migrate(self) -> None:
        """Apply every service's migrations, in parallel (each service owns its own schema)."""
        with ThreadPoolExecutor(max_workers=len(self.processes)) as pool:
            futures = [pool.submit(proc.run_once, "migrate") for proc in self.processes.values()]
            errors = [str(exc) for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise RuntimeError("\n".join(errors))

    def start(self) -> None:
        for proc in self.processes.values():
            proc.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until every ``/readyz`` answers 200; raise if a process exits or time runs out."""
        deadline = time.monotonic() + timeout
        pending = set(self.processes)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in sorted(pending):
                    code = self.processes[name].exit_code
                    if code is not None:
                        raise RuntimeError(f"{name} exited with code {code} while starting")
                    try:
                        if client.get(self.config.url(name) + "/readyz").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout:g}s: {', '.join(sorted(pending))}")
                time.sleep(0.2)

    def dead(self) -> dict[str, int]:
        """Services whose process has exited, with their exit codes."""
        return {n: c for n, p in self.processes.items() if (c := p.exit_code) is not None}

    def stop(self) -> None:
        """SIGTERM all, wait for the grace period, SIGKILL what is left."""
        for proc in self.processes.values():
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_grace_seconds
        for proc in self.processes.values():
            if not proc.wait(max(0.1, deadline - time.monotonic())):
                proc.signal(signal.SIGKILL)
                proc.wait(5)
            proc.close()
