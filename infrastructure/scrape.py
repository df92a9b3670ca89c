"""One scrape of ``GET /metrics``: every process's counters and what the database knows now.

With a multiprocess directory the counters are the sum of every process's files
(``MultiProcessCollector``); without one they are this process's own
(prometheus-client's default registry, with its process and GC metrics). To
either the scrape adds what is read from the store at that moment, so it is the
same whichever worker answers: the log's head, each projection's position and
how far behind it is, webhook messages by status; and, with one process, its
database pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from application.delivery import STATUSES
from application.outbox import OutboxProjection
from infrastructure.bootstrap import Container
from infrastructure.metrics import (
    PoolStats,
    forget_dead_processes,
    multiprocess_directory,
    pool_stats,
)
from infrastructure.runtime import ProjectionStatus, database_problem, status


@dataclass(frozen=True, slots=True)
class StoreState:
    """What the store says now."""

    head: int
    projections: tuple[ProjectionStatus, ...]
    messages: dict[str, int]  # webhook messages by status


def read_state(container: Container) -> StoreState | None:
    """The store's state; None when it cannot be reached (after a probe of at most 2 s)."""
    if database_problem(container) is not None:
        return None
    rows = tuple(status(container))
    head = rows[0].head if rows else container.ledger.head()
    messages = container.views[OutboxProjection.name].message_counts()
    return StoreState(head, rows, messages)


def state_families(state: StoreState | None) -> list[Metric]:
    up = GaugeMetricFamily(
        "ledger_database_up",
        "1 when the store answered this scrape, else 0",
        value=int(bool(state)),
    )
    if state is None:
        return [up]  # nothing read is better than something made up
    head = GaugeMetricFamily(
        "ledger_log_head", "Position of the last event in the log (notification id; gaps occur)"
    )
    head.add_metric([], state.head)
    position = GaugeMetricFamily(
        "ledger_projection_position", "Log position a projection has reached", labels=["projection"]
    )
    behind = GaugeMetricFamily(
        "ledger_projection_behind",
        "Log positions between a projection and the head of the log",
        labels=["projection"],
    )
    for row in state.projections:
        position.add_metric([row.name], row.position)
        behind.add_metric([row.name], row.behind)
    messages = GaugeMetricFamily(
        "ledger_webhook_messages", "Webhook messages in the outbox, by status", labels=["status"]
    )
    for name in STATUSES:
        messages.add_metric([name], state.messages.get(name, 0))
    return [up, head, position, behind, messages]


def pool_families(stats: PoolStats) -> list[Metric]:
    return [
        GaugeMetricFamily(
            "ledger_db_pool_connections_in_use",
            "Database connections lent out by the pool",
            value=stats.in_use,
        ),
        GaugeMetricFamily(
            "ledger_db_pool_requests_waiting",
            "Requests waiting for a database connection from the pool",
            value=stats.waiting,
        ),
        GaugeMetricFamily(
            "ledger_db_pool_connections_max",
            "The most connections the pool may open",
            value=stats.max_size,
        ),
    ]


class StoreCollector(Collector):
    """Reads the store when scraped (prometheus-client's custom collector protocol)."""

    def __init__(self, container: Container, *, with_pool: bool) -> None:
        self._container = container
        self._with_pool = with_pool

    def collect(self) -> Iterable[Metric]:
        yield from state_families(read_state(self._container))
        stats = pool_stats(self._container.ledger.recorder.datastore)  # type: ignore[attr-defined]
        if self._with_pool and stats is not None:
            yield from pool_families(stats)


class _ThisProcess(Collector):
    """The default registry's metrics, for a process with no multiprocess directory."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def exposition(container: Container, accept: str) -> tuple[bytes, str]:
    """The body and content type of one scrape, in the format ``accept`` asks for."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_directory()
    if directory is not None:
        forget_dead_processes(directory)
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(StoreCollector(container, with_pool=directory is None))
    encode: Callable[[CollectorRegistry], bytes]
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
