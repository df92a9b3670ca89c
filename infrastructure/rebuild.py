"""Rebuilding the usage projection on several cores.

Tallies merge associatively and commutatively, and a meter measures every
matching event in the log with its current definition. So the usage
projection at log position ``head`` is: the meters' definitions at ``head``,
and for each meter the merge of the tallies of disjoint ranges of the log,
leaving out the events voided at or before ``head`` (a void may lie in another
range than its event, so the voids are read first, like the definitions).
Worker processes tally one range each (reading, decoding and measuring are
CPU-bound and the GIL would serialise threads); the parent merges their
buckets and writes them with the tracking position ``head`` in one
transaction. Memory follows the number of buckets, not of events.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from uuid import UUID

from application.ledger import Ledger
from application.usage import (
    MeterDefinition,
    MeterKey,
    Tallies,
    UsageProjection,
    definitions_at,
    log_history,
    merge_tallies,
    tally_history,
)
from domain.usage import TimeWindow, UsageEvent
from infrastructure.settings import Settings
from infrastructure.store import eventsourcing_env, stored_identities


def tune_gc_for_batches() -> None:
    """Tune the collector for a process that reads the log in big batches.

    Reading a batch allocates tens of thousands of short-lived, acyclic objects;
    with the default thresholds the collector ran every 700 allocations and cost
    a third of a rebuild. Objects alive now (modules, the container) are frozen
    out of its way.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def tally_range(
    settings: Settings,
    after: int,
    stop: int,
    definitions: list[MeterDefinition],
    voided: frozenset[UUID] = frozenset(),
) -> tuple[int, Tallies]:
    """In a worker process: the usage events in ``(after, stop]`` but ``voided``, tallied."""
    tune_gc_for_batches()
    ledger = Ledger(
        eventsourcing_env(settings),
        identities=stored_identities,
        window=TimeWindow(settings.backdate_window, settings.future_skew),
    )
    counted = 0

    def events() -> Iterator[UsageEvent.Recorded]:
        nonlocal counted
        for recorded in log_history(ledger)(after, stop):
            counted += 1
            yield recorded

    try:
        tallies = tally_history(events(), definitions, voided)  # runs the generator to its end
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
    head = ledger.recorder.max_notification_id() or 0
    definitions = definitions_at(ledger, head)
    voided = log_history(ledger).voided(head)
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
