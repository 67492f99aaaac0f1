"""A service's database connection pools as Prometheus gauges, read when ``/metrics`` is scraped.

- ``automation_db_pool_connections{service,pool,state}``: the connections a pool holds now, ``state``
  ``in_use`` (checked out) or ``idle`` (open, waiting in the pool).
- ``automation_db_pool_max_connections{service,pool}``: the most connections the pool opens (the
  SQLAlchemy engine's ``pool_size`` plus its overflow).

``pool`` names the pool within the service: ``main`` (the SQLAlchemy engine every service has),
``hot`` (the executor's hot statements), ``recording`` (job-api's recording of execution events). A
pool whose ``in_use`` stays at its maximum makes callers wait for a connection: that service is short
of connections (or holds them too long), whatever its CPU says.

Nothing is counted on the way: the collector asks each pool for its sizes at scrape time, so watching
a pool costs its checkouts nothing. A closed pool's series disappear; a disposed engine reports its
new, empty pool.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

Watched = AsyncEngine | asyncpg.Pool
_POOLS: dict[tuple[str, str], Watched] = {}


def watch_pool(service: str, name: str, pool: Watched) -> None:
    """Report ``pool`` as ``{service, pool=name}`` from now on (replacing an earlier pool of that name)."""
    _POOLS[(service, name)] = pool


def _sizes(pool: Watched) -> tuple[int, int, int] | None:
    """(in use, idle, max) of an open pool; None for a closed one or a pool of unknown kind."""
    if isinstance(pool, asyncpg.Pool):
        if pool.is_closing():
            return None
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle, pool.get_max_size()
    engine_pool = pool.sync_engine.pool
    if not isinstance(engine_pool, QueuePool):  # NullPool, StaticPool: nothing held to report
        return None
    overflow = max(engine_pool._max_overflow, 0)  # QueuePool has no public accessor for it
    return engine_pool.checkedout(), engine_pool.checkedin(), engine_pool.size() + overflow


class PoolCollector(Collector):
    """Reads every watched pool at collection time."""

    def describe(self) -> list[Metric]:
        return []  # the series depend on the pools watched by then

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "automation_db_pool_connections",
            "Connections a database pool holds now, by state (in_use, idle).",
            labels=["service", "pool", "state"],
        )
        maximum = GaugeMetricFamily(
            "automation_db_pool_max_connections",
            "The most connections a database pool opens.",
            labels=["service", "pool"],
        )
        for (service, name), pool in list(_POOLS.items()):
            sizes = _sizes(pool)
            if sizes is None:
                if isinstance(pool, asyncpg.Pool) and _POOLS.get((service, name)) is pool:
                    del _POOLS[(service, name)]  # closed for good: forget it
                continue
            in_use, idle, most = sizes
            connections.add_metric([service, name, "in_use"], in_use)
            connections.add_metric([service, name, "idle"], idle)
            maximum.add_metric([service, name], most)
        yield connections
        yield maximum


COLLECTOR = PoolCollector()
REGISTRY.register(COLLECTOR)
