"""Fixtures shared by the messaging integration tests: a connected broker for the module's ``settings``
(``fresh_outbox`` comes from ``automation_testing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from automation_core.settings import ServiceSettings
from automation_messaging import Broker


@pytest.fixture
async def broker(settings: ServiceSettings) -> AsyncIterator[Broker]:
    """Connected with the test module's ``settings`` (the topology declared)."""
    connected = Broker(settings)
    await connected.connect()
    yield connected
    await connected.close()
