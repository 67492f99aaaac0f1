"""Bad input shared by the services' tests: instants RFC 3339 allows and the platform refuses, cursors
that are not the platform's, and the check that an answer is a problem naming the field."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

LOW = "0001-01-01T00:00:00+14:00"
"""Valid RFC 3339; in UTC, year 0."""
HIGH = "9999-12-31T23:59:59-14:00"
"""Valid RFC 3339; in UTC, year 10000."""
EDGE = "0001-01-01T00:00:00Z"
"""In Python's range, outside the platform's (no room for a time zone's local time)."""
ZERO = "00000000-0000-0000-0000-000000000000"


def b64(raw: bytes) -> str:
    """``raw`` as a cursor is spelled (unpadded base64url)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bad_json_cursors(deep: int = 3000) -> tuple[list[bytes], list[str]]:
    """What a ``[<instant>, <uuid>]`` cursor may decode to that is not one of ours, and the cases' ids:
    instants out of range, JSON nested ``deep`` levels (Python's parser raised ``RecursionError``), a NUL."""
    return (
        [
            json.dumps([LOW, ZERO]).encode(),
            json.dumps([HIGH, ZERO]).encode(),
            json.dumps([EDGE, ZERO]).encode(),
            b"[" * deep,
            json.dumps(["2026-01-01T00:00:00+00:00\x00", ZERO]).encode(),
        ],
        ["low", "high", "edge", "deep", "nul"],
    )


def assert_problem(resp: httpx.Response, field: str, status: int = 422) -> dict[str, Any]:
    """The answer is a problem+json of ``status`` naming ``field``; the problem."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = resp.json()
    assert problem["field"] == field, problem
    return problem
