"""The ``http`` step: one request with httpx; status, headers and (capped) body become the output.

A JSON response body (``application/json`` or ``+json``) is parsed so later steps can read
``steps.<name>.output.body.<path>``; a body larger than the cap is kept as cut text and not parsed.
Proxies and other settings from the environment are ignored.

Every HTTP client of a child (this step's, and a handler's ``ctx.http``) verifies certificates with one
SSL context per process (:func:`ssl_context`). The fork server prepares it (:func:`prepare_fork`),
together with what httpx and anyio import only on a first client and a first request, so a child's
request does not pay for them: without that, an ``http`` step to a server on the same host took
~240 ms here, almost all of it imports and loading the CA bundle, and ~10 ms with it.
"""

from __future__ import annotations

import importlib
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from automation_executor.child.env import StepEnv
from automation_executor.domain.protocol import StepMessage
from automation_executor.domain.steps import HttpConfig, ParsedStep
from automation_executor.domain.templates import TemplateContext, render_json, render_text, render_url

LAZY_MODULES = ("httpcore", "h11", "certifi", "anyio._backends._asyncio", "anyio.streams.tls", "anyio.to_thread")
"""What httpx imports on its first client (httpcore, h11, certifi) and anyio on a first request."""
_SSL_CONTEXT: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The certificate verification of every HTTP client in this process: httpx's default (certifi's CA
    bundle), nothing from the environment. Built once per process instead of once per client (~20 ms)."""
    global _SSL_CONTEXT  # noqa: PLW0603 - one context per process, shared by the children of the fork server
    if _SSL_CONTEXT is None:
        import httpx

        _SSL_CONTEXT = httpx.create_ssl_context(trust_env=False)
    return _SSL_CONTEXT


def verification(config: HttpConfig, ctx: TemplateContext) -> ssl.SSLContext:
    """The SSL context of a request: the shared default; one trusting only the step's ``ca_secret`` (a PEM
    bundle); or, with ``server_cert_validation: "ignore"``, one that checks nothing. ``ValueError`` names a
    ``ca_secret`` that is not a PEM bundle."""
    if config.server_cert_validation == "ignore":
        unchecked = ssl.create_default_context()
        unchecked.check_hostname = False
        unchecked.verify_mode = ssl.CERT_NONE
        return unchecked
    if config.ca_secret is None:
        return ssl_context()
    try:
        return ssl.create_default_context(cadata=ctx.secrets[config.ca_secret])
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"ca_secret {config.ca_secret!r} is not a PEM bundle of certificates: {exc}") from None


def prepare_fork() -> None:
    """Import what a first client and a first request would, and build the SSL context: in the fork server,
    and in the executor, which sends the requests of the jobs it runs without a child
    (:mod:`automation_executor.direct`)."""
    for name in LAZY_MODULES:
        importlib.import_module(name)
    ssl_context()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _display_url(url: str) -> str:
    """The URL for the log: no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def decode_body(raw: bytes, content_type: str, *, truncated: bool) -> Any:
    """The body as output: parsed JSON when it is complete JSON, text otherwise."""
    text = raw.decode("utf-8", errors="replace")
    if truncated or not _is_json(content_type):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


async def run_http(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Send the request and judge its status."""
    import httpx

    emitter, spec = env.emitter, env.spec
    config = step.config
    assert isinstance(config, HttpConfig)
    url = render_url(config.url, ctx)
    if urlsplit(url).scheme not in {"http", "https"}:
        return StepMessage(name=step.name, status="failed", error=f"url must be http:// or https://, got {url!r}")
    headers = {name: render_text(value, ctx) for name, value in config.headers.items()}
    body: dict[str, Any] = {}
    if config.json_body is not None:
        body["json"] = render_json(config.json_body, ctx)
    elif config.body is not None:
        body["content"] = render_text(config.body, ctx).encode()
    cap = config.max_body_bytes if config.max_body_bytes is not None else spec.http_max_body_bytes
    try:
        verify = verification(config, ctx)
    except ValueError as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    started = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(
                timeout=config.timeout,
                follow_redirects=config.follow_redirects,
                trust_env=False,
                verify=verify,
            ) as client,
            client.stream(config.method, url, headers=headers, **body) as response,
        ):
            raw = bytearray()
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > cap:
                    break
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        error = f"{config.method} {_display_url(url)} failed: {type(exc).__name__}: {exc}"
        return StepMessage(name=step.name, status="failed", error=error)
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    truncated = len(raw) > cap
    emitter.log(
        "system", step.name, f"{config.method} {_display_url(url)} -> {response.status_code} in {elapsed_ms} ms"
    )
    if truncated:
        emitter.log("system", step.name, f"response body cut at {cap} bytes")
    output = {
        "status": response.status_code,
        "headers": {name: ", ".join(response.headers.get_list(name)) for name in response.headers},
        "body": decode_body(bytes(raw[:cap]), response.headers.get("content-type", ""), truncated=truncated),
    }
    if config.status_expected(response.status_code):
        return StepMessage(name=step.name, status="succeeded", output=output)
    expected = ", ".join(map(str, config.expected_status)) if config.expected_status else "2xx"
    return StepMessage(
        name=step.name,
        status="failed",
        output=output,
        error=f"unexpected status {response.status_code}; expected {expected}",
    )
