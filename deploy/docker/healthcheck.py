"""Container health probe: ``GET /healthz`` on the service's own port, standard library only.

The images' ``HEALTHCHECK`` and docker-compose's healthchecks run ``python /app/healthcheck.py``,
so no curl or wget is needed in the image. The port comes from ``AUTOMATION_HTTP_PORT`` (each
image sets it); an optional first argument names another path, e.g. ``/readyz``. Exit status 0
when the service answers 2xx within the timeout, 1 otherwise, with the reason on stderr.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def probe(port: str, path: str = "/healthz", timeout: float = TIMEOUT_SECONDS) -> str | None:
    """Return ``None`` when ``http://127.0.0.1:<port><path>`` answers 2xx, else the failure reason."""
    url = f"http://127.0.0.1:{port}{path}"
    # No proxy: HTTP(S)_PROXY set for the service's outbound calls must not capture loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {exc}"
    if not 200 <= status < 300:
        return f"{url} answered {status}"
    return None


def main(argv: list[str]) -> int:
    """Probe the path in ``argv[1]`` (default ``/healthz``); return the process exit status."""
    path = argv[1] if len(argv) > 1 else "/healthz"
    failure = probe(os.environ.get("AUTOMATION_HTTP_PORT", "8000"), path)
    if failure is not None:
        print(failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
