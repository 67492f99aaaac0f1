"""Reading a check step's decision: ``should_perform`` and ``perform_payload``.

A job's optional check step runs before its steps. Its decision is the first of these that is an object
with a ``should_perform`` key:

1. the output itself (a ``python`` handler returns ``{"should_perform": true, "perform_payload": {...}}``);
2. the output's ``body`` (an ``http`` check whose endpoint answers that JSON object);
3. the last non-empty line of the output's ``stdout_tail``, parsed as a JSON object (a ``shell``,
   ``ssh.exec`` or ``winrm.exec`` check that prints it last).

``should_perform`` must be a boolean; ``perform_payload`` (optional) an object, read by the steps as
``${{ check.payload.<path> }}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

NO_DECISION = (
    "the check's output has no should_perform: a python check returns"
    ' {"should_perform": true|false, "perform_payload": {...}}, an http check answers that as its JSON body,'
    " and a shell, ssh.exec or winrm.exec check prints it as a JSON object on its last line"
)


class CheckError(ValueError):
    """The check's output does not say whether to perform."""


def _candidates(output: Any) -> Iterator[Any]:
    yield output
    if isinstance(output, Mapping):
        yield output.get("body")
        tail = output.get("stdout_tail")
        if isinstance(tail, str):
            lines = [line for line in tail.splitlines() if line.strip()]
            if lines:
                yield _json_or_none(lines[-1])


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def check_decision(output: Any) -> tuple[bool, dict[str, Any]]:
    """``(should_perform, perform_payload)`` from a check step's output; :class:`CheckError` otherwise."""
    for candidate in _candidates(output):
        if not isinstance(candidate, Mapping) or "should_perform" not in candidate:
            continue
        should = candidate["should_perform"]
        if not isinstance(should, bool):
            raise CheckError(f"should_perform must be true or false, got {json.dumps(should)}")
        payload = candidate.get("perform_payload")
        if payload is None:
            return should, {}
        if not isinstance(payload, Mapping):
            raise CheckError("perform_payload must be an object")
        return should, dict(payload)
    raise CheckError(NO_DECISION)
