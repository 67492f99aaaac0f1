"""The ``job_api_executions`` notifications: which executions something was recorded about.

Whoever records an execution event issues ``pg_notify(NOTIFY_CHANNEL, payload)`` in its transaction;
the log followers (:mod:`automation_job_api.service.log_follow`) listen. A payload is one execution
id, or several separated by commas.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

NOTIFY_CHANNEL = "job_api_executions"
MAX_PAYLOAD_BYTES = 7999
"""PostgreSQL's limit on a notification payload is 8000 bytes."""
UUID_TEXT_BYTES = 36


def notify_payloads(execution_ids: Sequence[uuid.UUID]) -> list[str]:
    """The payloads naming ``execution_ids``: comma-separated, each within PostgreSQL's payload limit."""
    per_payload = MAX_PAYLOAD_BYTES // (UUID_TEXT_BYTES + 1)
    ids = [str(execution_id) for execution_id in execution_ids]
    return [",".join(ids[i : i + per_payload]) for i in range(0, len(ids), per_payload)]


def parse_payload(payload: object) -> list[uuid.UUID]:
    """The execution ids a notification names (malformed ones are skipped)."""
    ids = []
    for part in str(payload).split(","):
        try:
            ids.append(uuid.UUID(part))
        except ValueError:
            continue
    return ids
