"""Rebuilding a projection: drop it, follow the log again from its start.

``rebuild`` resets one projection's view (any other keeps its rows and its
position) and catches it up alone. The usage projection of a long log is
tallied on several cores: buckets merge associatively and commutatively, and a
meter measures every matching event in the log with its current definition.
So the projection at log position ``head`` is the meters' definitions at
``head`` and, for each meter, the merge of the buckets of disjoint ranges of
the log (the voids are read first, like the definitions: a void may lie in
another range than its event). Worker processes tally one range each (reading,
decoding and measuring are CPU-bound and the GIL would serialise threads); the
parent merges their buckets and writes them with the tracking position ``head``
in one transaction. Memory follows the number of buckets, not of events.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from uuid import UUID

from application.ledger import Ledger
from application.tally import (
    LogHistory,
    MeterDefinition,
    MeterKey,
    Recorded,
    Tallies,
    merge_tallies,
    tally_history,
)
from application.usage import UsageProjection
from domain.usage import TimeWindow
from infrastructure.bootstrap import Container
from infrastructure.projections import registered
from infrastructure.settings import Settings
from infrastructure.store import eventsourcing_env, stored_identities

REBUILD_BATCH = 5000
PARALLEL_FROM = 100_000  # log entries; below this, worker start-up costs more than it saves


def rebuild(
    container: Container,
    name: str,
    on_batch: Callable[[int, int], None] | None = None,
    *,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> int:
    """Drop projection ``name`` and build it again from the whole log; the entries read.

    This process's projector is paused meanwhile. A projection that another
    process follows at the same time stays correct (the tracking row is the
    guard) but that process keeps its old in-memory state: stop it first.
    """
    projector = container.projector
    running = projector.running
    projector.stop()
    try:
        view = container.views[registered(name).name]
        view.reset()
        fresh = registered(name).make(container.ledger, container.views)
        projector.replace(fresh)
        read = 0
        workers = workers or os.cpu_count() or 1
        head = container.ledger.head()
        if isinstance(fresh, UsageProjection) and workers > 1 and head >= parallel_from:
            _, read = rebuild_usage_in_parallel(
                container.settings, container.ledger, fresh, workers, on_batch
            )
        return read + projector.catch_up(names=[name], on_batch=on_batch, batch_size=REBUILD_BATCH)
    finally:
        if running:
            projector.start()


def tune_gc_for_batches(*, long_running: bool = False) -> None:
    """Tune the collector for a process that reads the log in big batches.

    Reading a batch allocates tens of thousands of short-lived, acyclic objects;
    with the default thresholds the collector ran every 700 allocations and cost
    a third of a rebuild. Objects alive now (modules, the container) are frozen
    out of its way. A ``long_running`` process (a server) still collects its
    oldest generation every 10 of the middle one's collections, as by default,
    so cycles that live long enough to reach it are not kept for hours.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 10 if long_running else 100)


def tally_range(
    settings: Settings,
    after: int,
    stop: int,
    definitions: list[MeterDefinition],
    voided: dict[UUID, int] | None = None,
) -> tuple[int, Tallies]:
    """In a worker process: the usage events in ``(after, stop]`` tallied; ``voided``
    gives the position of each void (up to the rebuild's head)."""
    tune_gc_for_batches()
    ledger = Ledger(
        eventsourcing_env(settings),
        identities=stored_identities,
        window=TimeWindow(settings.backdate_window, settings.future_skew),
    )
    counted = 0

    def events() -> Iterator[Recorded]:
        nonlocal counted
        for recorded in LogHistory(ledger)(after, stop, voided):
            counted += 1
            yield recorded

    try:
        tallies = tally_history(events(), definitions)  # runs the generator to its end
        return counted, tallies
    finally:
        ledger.close()


def rebuild_usage_in_parallel(
    settings: Settings,
    ledger: Ledger,
    projection: UsageProjection,
    workers: int,
    on_part: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Tally the log up to its head in ``workers`` processes and write the merged state.

    ``projection`` must be over an empty (reset) view. Returns the head position
    and the number of usage events tallied.
    """
    head = ledger.head()
    history = LogHistory(ledger)
    definitions = history.definitions(head)
    voided = history.voided(head)
    bounds = [head * i // workers for i in range(workers + 1)]
    merged: Tallies = {}
    tallied = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            pool.submit(tally_range, settings, bounds[i], bounds[i + 1], definitions, voided)
            for i in range(workers)
            if bounds[i] < bounds[i + 1]
        ]
        for done, future in enumerate(as_completed(futures), start=1):
            count, part = future.result()
            tallied += count
            merged = merge_tallies((merged, part))  # one part held at a time
            del part
            if on_part is not None:  # parts finish in any order: report the share done
                on_part(tallied, head * done // len(futures))
    for definition in definitions:  # meters that measured nothing still get their row
        merged.setdefault(_key(definition), {})
    projection.restore(definitions, merged, head)
    return head, tallied


def _key(definition: MeterDefinition) -> MeterKey:
    return (definition.business_id, definition.meter_id)
