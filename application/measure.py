"""Measuring meters over a range of time at a log position: from tallies, or flat.

``TallyMeasure`` is what every routine read does (previews, finalization, usage
queries, usage history, explain): it merges the usage projection's hourly
buckets for the whole hours of the range and reads from the usage log only the
partial first and last hour, so its cost follows the hours asked for, not the
events. Buckets and their position ``P`` are read in one snapshot. Folding at
an earlier position ``X`` (an old cut: an adjustment, an explanation) takes a
bucket as it is when nothing changed in its hour after ``X`` (``changed_at <=
X``) and reads the hour from the usage log at ``X`` otherwise: few hours, those
that late events or voids touched.

``FlatMeasure`` folds every event of the range from the usage log: what the
audit does to prove the shortcut, byte for byte.

Both give each meter's ``Tally``; tallies merge associatively and commutatively,
so the two are the same value whatever the order or the cut into parts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from application.errors import UnavailableError
from application.usage import TallySnapshot, UsageStore
from application.usage_log import UsageLogStore
from domain.grouping import GroupValue, group_chunk, tally_by_group
from domain.invoice import merge_groups
from domain.meter import MeterSpec, Tally, UsageRecord

HOUR = timedelta(hours=1)
WAIT_SECONDS = 10.0  # how long a measurement waits for the projections to reach a cut
CHUNK = 10_000  # records tallied at a time from a stream
Parts = dict[str, list[tuple[datetime, Tally]]]  # meter_id -> (where a part starts, its tally)


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a range read from the usage log: one customer's, or every customer's."""

    customer_id: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Measured:
    """Each meter's parts of a range, measured at log position ``cut``."""

    cut: int
    parts: Parts

    def tallies(self) -> dict[str, Tally]:
        merged: dict[str, Tally] = {}
        for meter_id, parts in self.parts.items():
            tally = Tally()
            for _, part in parts:
                tally = tally.merge(part)
            merged[meter_id] = tally
        return merged


@dataclass(frozen=True, slots=True)
class CustomerPart:
    """One customer's tally of a whole hour, or of a piece of one, starting at ``start``."""

    start: datetime
    customer_id: str
    tally: Tally


class DefinitionMovedError(Exception):
    """The buckets measure a meter by another definition than the one given.

    The meter was redefined after the caller loaded it: load it again.
    """


def hour_span(start: datetime, end: datetime) -> tuple[datetime, datetime, list[Piece]]:
    """The whole hours ``[first, last)`` inside ``[start, end)`` and the partial pieces
    around them (one piece when ``start`` and ``end`` share an hour)."""
    floor = start.replace(minute=0, second=0, microsecond=0)
    first = floor if floor == start else floor + HOUR
    last = end.replace(minute=0, second=0, microsecond=0)
    if first > last:  # both in one hour, which no window boundary splits
        return first, first, [Piece(None, start, end)]
    edges = [Piece(None, a, b) for a, b in ((start, first), (last, end)) if a < b]
    return first, last, edges


def tally_stream(
    specs: Mapping[str, MeterSpec], records: Iterator[UsageRecord]
) -> dict[str, Tally]:
    """Each meter's tally of a stream, a chunk at a time: memory stays flat."""
    tallies = {meter_id: Tally() for meter_id in specs}
    while chunk := list(islice(records, CHUNK)):
        for meter_id, spec in specs.items():
            tallies[meter_id] = tallies[meter_id].merge(spec.tally(chunk))
    return tallies


class LogGroups:
    """Grouped tallies, which the hourly buckets do not keep: read from the usage log."""

    _log: UsageLogStore
    _app: str

    def groups(
        self,
        business_id: str,
        spec: MeterSpec,
        key: str,
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int,
    ) -> dict[GroupValue, Tally]:
        """A meter's tally per value of metadata ``key`` over ``[start, end)`` at ``at``."""
        return group_log(self._log, self._app, business_id, spec, key, customer_id, start, end, at)


class TallyMeasure(LogGroups):
    """Meters measured from the usage projection's buckets and the usage log's edges."""

    def __init__(self, tallies: UsageStore, log: UsageLogStore, application_name: str) -> None:
        self._tallies = tallies
        self._log = log
        self._app = application_name

    def parts(
        self,
        business_id: str,
        specs: Mapping[str, MeterSpec],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int | None = None,
    ) -> Measured:
        """Each meter's value over ``[start, end)`` as the log stood at ``at`` (default:
        as far as the buckets have got), in parts: whole hours and pieces of hours."""
        first, last, pieces = hour_span(start, end)
        deadline = time.monotonic() + WAIT_SECONDS
        snapshot, cut = self._settle(business_id, specs, customer_id, first, last, at, deadline)
        parts: Parts = {meter_id: [] for meter_id in specs}
        stale: dict[str, set[tuple[str, datetime]]] = {}  # event name -> (customer, hour)
        for meter_id, buckets in snapshot.buckets.items():
            name = specs[meter_id].event_name
            for item in buckets:
                if item.bucket.changed_at > cut:  # changed after the cut: read it as it was
                    stale.setdefault(name, set()).add((item.customer_id, item.hour))
                elif item.bucket.tally.count:
                    parts[meter_id].append((item.hour, item.bucket.tally))
        self._wait_for_log(cut, deadline)
        for name in sorted({spec.event_name for spec in specs.values()}):
            named = {m: s for m, s in specs.items() if s.event_name == name}
            hours = [Piece(c, h, h + HOUR) for c, h in sorted(stale.get(name, ()))]
            for piece in [Piece(customer_id, p.start, p.end) for p in pieces] + hours:
                for meter_id, tally in self._read(business_id, name, named, piece, cut).items():
                    if tally.count:
                        parts[meter_id].append((piece.start, tally))
        return Measured(cut, parts)

    def customer_parts(
        self,
        business_id: str,
        meter_id: str,
        spec: MeterSpec,
        customer_id: str | None,
        start: datetime,
        end: datetime,
    ) -> list[CustomerPart]:
        """The meter's parts over ``[start, end)`` as far as the buckets have got, as
        ``parts`` gives them but one per customer: whole hours and pieces of hours."""
        first, last, pieces = hour_span(start, end)
        deadline = time.monotonic() + WAIT_SECONDS
        specs = {meter_id: spec}
        snapshot, cut = self._settle(business_id, specs, customer_id, first, last, None, deadline)
        # At the snapshot's own position no bucket changed after the cut: none is stale.
        found = [
            CustomerPart(item.hour, item.customer_id, item.bucket.tally)
            for item in snapshot.buckets[meter_id]
            if item.bucket.tally.count
        ]
        self._wait_for_log(cut, deadline)
        for piece in pieces:
            records = self._log.stream_customer_records(
                business_id, spec.event_name, customer_id, piece.start, piece.end, cut
            )
            tallies = sorted(tally_by_group(spec, records).items())
            found += [CustomerPart(piece.start, c, t) for c, t in tallies]
        return found

    def measure(
        self,
        business_id: str,
        specs: Mapping[str, MeterSpec],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int | None = None,
    ) -> tuple[int, dict[str, Tally]]:
        """(cut, each meter's tally) over ``[start, end)``."""
        measured = self.parts(business_id, specs, customer_id, start, end, at=at)
        return measured.cut, measured.tallies()

    def _read(
        self, business_id: str, name: str, specs: Mapping[str, MeterSpec], piece: Piece, cut: int
    ) -> dict[str, Tally]:
        records = self._log.stream_records(
            business_id, name, piece.customer_id, piece.start, piece.end, cut
        )
        return tally_stream(specs, iter(records))

    def _settle(
        self,
        business_id: str,
        specs: Mapping[str, MeterSpec],
        customer_id: str | None,
        first: datetime,
        last: datetime,
        at: int | None,
        deadline: float,
    ) -> tuple[TallySnapshot, int]:
        """The buckets of ``[first, last)`` once they have reached the cut (default: their
        own position) by the given definitions, and that cut."""
        while True:
            snapshot = self._tallies.snapshot(
                business_id, list(specs), customer_id, first, last, self._app
            )
            cut = snapshot.position if at is None else at
            if snapshot.position >= cut and self._defined_alike(snapshot.definitions, specs):
                return snapshot, cut
            _pause(deadline, f"the usage projection has not reached position {cut}")

    def _defined_alike(
        self, definitions: Mapping[str, object], specs: Mapping[str, MeterSpec]
    ) -> bool:
        """The buckets measure the given definitions (False: not yet; raises: no longer)."""
        for meter_id, spec in specs.items():
            found = definitions.get(meter_id)
            if found != spec.to_wire():
                if found is not None:
                    raise DefinitionMovedError(f"meter {meter_id!r} was redefined")
                return False
        return True

    def _wait_for_log(self, cut: int, deadline: float) -> None:
        while (self._log.max_tracking_id(self._app) or 0) < cut:
            _pause(deadline, f"the usage log has not reached position {cut}")


class FlatMeasure(LogGroups):
    """Meters measured from every event of the range in the usage log (the audit's way)."""

    def __init__(self, log: UsageLogStore, application_name: str) -> None:
        self._log = log
        self._app = application_name

    def measure(
        self,
        business_id: str,
        specs: Mapping[str, MeterSpec],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int,
    ) -> tuple[int, dict[str, Tally]]:
        deadline = time.monotonic() + WAIT_SECONDS
        while (self._log.max_tracking_id(self._app) or 0) < at:
            _pause(deadline, f"the usage log has not reached position {at}")
        tallies: dict[str, Tally] = {}
        for name in sorted({spec.event_name for spec in specs.values()}):
            named = {m: s for m, s in specs.items() if s.event_name == name}
            records = self._log.stream_records(business_id, name, customer_id, start, end, at)
            tallies.update(tally_stream(named, iter(records)))
        return at, tallies


def group_log(
    log: UsageLogStore,
    application_name: str,
    business_id: str,
    spec: MeterSpec,
    key: str,
    customer_id: str | None,
    start: datetime,
    end: datetime,
    at: int,
) -> dict[GroupValue, Tally]:
    """Grouped tallies are not in the hourly buckets: every event of the range is read
    from the usage log (a cycle's events of one customer for a grouped price line)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while (log.max_tracking_id(application_name) or 0) < at:
        _pause(deadline, f"the usage log has not reached position {at}")
    records = log.stream_records(business_id, spec.event_name, customer_id, start, end, at)
    grouped: dict[GroupValue, Tally] = {}
    while chunk := list(islice(records, CHUNK)):
        merge_groups(grouped, group_chunk(spec, key, chunk))
    return grouped


def _pause(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise UnavailableError(f"{what} in {WAIT_SECONDS:g} s; try again shortly")
    time.sleep(0.01)
