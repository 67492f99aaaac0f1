"""Which URLs a task may open: ``http``, ``https`` and ``about:blank``; nothing else.

``file:`` would read the pool's own disk, ``chrome:``/``devtools:`` reach browser internals, and
``data:``/``javascript:``/``blob:`` run caller-made content outside any origin the caller could be held
to. The check runs on every ``goto`` URL and every cookie URL before a browser slot is taken; Chromium
itself refuses web pages that navigate to ``file:`` or ``chrome:`` later on.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from automation_contracts import BrowserTask, GotoAction, SetCookiesAction

ALLOWED_SCHEMES = frozenset({"http", "https"})
ABOUT_BLANK = "about:blank"


class UrlRefused(ValueError):
    """A URL the pool will not open; the message says why."""


def check_url(url: str, *, allow_blank: bool = True) -> None:
    """Raise :class:`UrlRefused` unless ``url`` is http(s) with a host (or ``about:blank`` when allowed)."""
    if allow_blank and url.strip().lower() == ABOUT_BLANK:
        return
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise UrlRefused(f"{url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}:" if scheme else "no scheme"
        allowed = "http, https" + (" and about:blank" if allow_blank else "")
        raise UrlRefused(f"URL scheme {shown} is not allowed (only {allowed})")
    if not parts.hostname:
        raise UrlRefused(f"{url!r} has no host")


def check_task_urls(task: BrowserTask) -> str | None:
    """The reason the task is refused (naming the action), or None when every URL it names is allowed."""
    for index, action in enumerate(task.actions):
        try:
            if isinstance(action, GotoAction):
                check_url(action.url)
            elif isinstance(action, SetCookiesAction):
                for cookie in action.cookies:
                    if cookie.url is not None:
                        check_url(cookie.url, allow_blank=False)
        except UrlRefused as exc:
            return f"action {index} ({action.type}): {exc}"
    return None
