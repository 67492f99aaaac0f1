"""Pure logic of browser-pool: which URLs a task may open, and the outcome of a task run."""

from automation_browser_pool.domain.outcome import CapturedArtifact, RunOutcome, describe_error, to_json_value
from automation_browser_pool.domain.policy import ALLOWED_SCHEMES, UrlRefused, check_task_urls, check_url

__all__ = [
    "ALLOWED_SCHEMES",
    "CapturedArtifact",
    "RunOutcome",
    "UrlRefused",
    "check_task_urls",
    "check_url",
    "describe_error",
    "to_json_value",
]
