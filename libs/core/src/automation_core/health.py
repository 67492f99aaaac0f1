"""Readiness checks: ``/readyz`` runs every registered check and answers 503 with the reasons when one fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    """A named set of async checks; each raises (or times out) when its dependency does not answer."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def clear(self) -> None:
        self._checks.clear()

    async def run(self) -> tuple[bool, dict[str, str]]:
        """(all ok, name -> "ok" or the reason it failed)."""
        if not self._checks:
            return False, {"startup": "service is still starting"}
        names = list(self._checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self._checks[n](), CHECK_TIMEOUT_SECONDS) for n in names),
            return_exceptions=True,
        )
        report: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                reason = "timed out" if isinstance(result, TimeoutError) else (str(result) or type(result).__name__)
                report[name] = f"failing: {reason}"
            else:
                report[name] = "ok"
        return all(v == "ok" for v in report.values()), report
