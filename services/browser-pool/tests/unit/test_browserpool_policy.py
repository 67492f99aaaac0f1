"""The URL policy: http, https and about:blank only; the refusal names the action at fault."""

from __future__ import annotations

import uuid

import pytest

from automation_browser_pool.domain import UrlRefused, check_task_urls, check_url
from automation_contracts import BrowserTask


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/page", "https://example.com/", "HTTPS://Example.COM/a?b=c", "about:blank", "ABOUT:BLANK"],
)
def test_allowed_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "URL scheme file: is not allowed"),
        ("chrome://settings", "URL scheme chrome: is not allowed"),
        ("chrome-extension://abc/page.html", "URL scheme chrome-extension: is not allowed"),
        ("devtools://devtools/bundled/inspector.html", "URL scheme devtools: is not allowed"),
        ("data:text/html,<h1>x</h1>", "URL scheme data: is not allowed"),
        ("javascript:alert(1)", "URL scheme javascript: is not allowed"),
        ("view-source:http://example.com", "URL scheme view-source: is not allowed"),
        ("ftp://example.com/file", "URL scheme ftp: is not allowed"),
        ("about:config", "URL scheme about: is not allowed"),
        ("//example.com/x", "no scheme is not allowed"),
        ("http:///no-host", "has no host"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        check_url(url)


def test_about_blank_is_no_cookie_url() -> None:
    with pytest.raises(UrlRefused, match="only http, https\\)"):
        check_url("about:blank", allow_blank=False)


def task(*actions: dict[str, object]) -> BrowserTask:
    return BrowserTask.model_validate({"task_id": str(uuid.uuid4()), "actions": list(actions)})


def test_task_with_allowed_urls_passes() -> None:
    allowed = task(
        {"type": "set_cookies", "cookies": [{"name": "a", "value": "1", "url": "https://example.com"}]},
        {"type": "goto", "url": "about:blank"},
        {"type": "goto", "url": "http://127.0.0.1:9/x"},
        {"type": "click", "selector": "file:///not-a-url-but-a-selector"},
    )
    assert check_task_urls(allowed) is None


def test_refusal_names_the_goto_action() -> None:
    refused = task({"type": "goto", "url": "https://example.com"}, {"type": "goto", "url": "file:///etc/hostname"})
    assert (
        check_task_urls(refused)
        == "action 1 (goto): URL scheme file: is not allowed (only http, https and about:blank)"
    )


def test_refusal_names_the_cookie_action() -> None:
    refused = task({"type": "set_cookies", "cookies": [{"name": "a", "value": "1", "url": "file:///tmp/x"}]})
    reason = check_task_urls(refused)
    assert reason is not None
    assert reason.startswith("action 0 (set_cookies): URL scheme file: is not allowed")


def test_domain_cookies_have_no_url_to_check() -> None:
    assert (
        check_task_urls(task({"type": "set_cookies", "cookies": [{"name": "a", "value": "1", "domain": "x.test"}]}))
        is None
    )
