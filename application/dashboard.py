"""What the dashboard's overview shows: a business's activity, catalogue and open cycles.

Everything is read from the read models, scoped by the business. The open
cycles' billed-so-far total folds every active subscription's invoice so far
(``billing.invoice_preview``, what finalizing now would bill), which costs one
fold per subscription: too much for a page that must answer at once for a
business with a thousand customers. So it is computed in the background by
``OpenCycleTotals`` and shown with the moment it was computed ("as of"),
refreshed when a page asks and the figure is older than ``max_age``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog

from application.billing import invoice_preview
from application.errors import NotFoundError
from application.ledger import Ledger
from application.projection import Projector
from application.reads import CATALOGUE, USAGE_LOG, Reads
from application.usage_report import UsageWindow
from application.views import CatalogueCounts, SubscriptionQuery

log = structlog.get_logger(__name__)
HOUR = timedelta(hours=1)
PAGE = 100  # subscriptions read per query while totalling


@dataclass(frozen=True, slots=True)
class ProjectionState:
    name: str
    position: int
    behind: int  # events of the log it has not applied yet


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    currency: str
    total_minor: int


@dataclass(frozen=True, slots=True)
class OpenCyclesTotal:
    """The open cycles' invoices so far, added up per currency, as of ``computed_at``."""

    computed_at: datetime
    subscriptions: int
    totals: tuple[CurrencyTotal, ...]
    seconds: float  # how long the fold took


@dataclass(frozen=True, slots=True)
class Overview:
    now: datetime
    counts: CatalogueCounts
    active_subscriptions: int
    events_today: int
    hours: tuple[UsageWindow, ...]  # each UTC hour of today, the later ones still to come
    open_cycles: OpenCyclesTotal | None  # None: being computed for the first time
    log_position: int
    projections: tuple[ProjectionState, ...]

    @property
    def most_behind(self) -> int:
        return max((p.behind for p in self.projections), default=0)


def today_hours(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def overview(
    ledger: Ledger,
    reads: Reads,
    projector: Projector,
    totals: OpenCycleTotals,
    business_id: str,
    now: datetime,
) -> Overview:
    reads.fresh(CATALOGUE, USAGE_LOG)
    start, end = today_hours(now)
    counted = reads.usage_log.events_per_hour(business_id, start, end)
    hours = tuple(
        UsageWindow(at, at + HOUR, Decimal(counted.get(at, 0)), counted.get(at, 0))
        for at in (start + HOUR * i for i in range(24))
    )
    active = reads.catalogue.count_subscriptions(
        SubscriptionQuery(business_id, status="active"), now
    )
    head = ledger.head()
    states = []
    for name in projector.names:
        position = projector.position(name)
        states.append(ProjectionState(name, position, max(head - position, 0)))
    return Overview(
        now=now,
        counts=reads.catalogue.counts(business_id),
        active_subscriptions=active,
        events_today=sum(counted.values()),
        hours=hours,
        open_cycles=totals.get(business_id, now),
        log_position=head,
        projections=tuple(states),
    )


def open_cycles_total(
    ledger: Ledger, reads: Reads, business_id: str, now: datetime
) -> OpenCyclesTotal:
    """Every active subscription's invoice so far at ``now``, added up per currency."""
    started = time.monotonic()
    by_currency: dict[str, int] = {}
    counted = 0
    number = 0
    while True:
        query = SubscriptionQuery(business_id, status="active", page_number=number, page_size=PAGE)
        found = reads.catalogue.list_subscriptions(query, now)
        for state in found:
            try:
                _, invoice = invoice_preview(
                    ledger, reads, business_id, state.subscription_id, now=now
                )
            except NotFoundError:  # ended between the listing and the fold
                continue
            by_currency[invoice.currency] = by_currency.get(invoice.currency, 0) + (
                invoice.total_minor
            )
            counted += 1
        if len(found) < PAGE:
            break
        number += 1
    seconds = time.monotonic() - started
    totals = tuple(CurrencyTotal(c, t) for c, t in sorted(by_currency.items()))
    return OpenCyclesTotal(now, counted, totals, seconds)


class OpenCycleTotals:
    """The latest ``open_cycles_total`` of each business, refreshed in the background.

    ``get`` answers at once with what it has (None the first time) and, when that is
    older than ``max_age``, starts one refresh for the business in a thread of its
    own; a failed refresh is logged and tried again by a later ``get``.
    """

    def __init__(
        self,
        compute: Callable[[str, datetime], OpenCyclesTotal],
        clock: Callable[[], datetime],
        max_age: timedelta = timedelta(seconds=30),
    ) -> None:
        self._compute = compute
        self._clock = clock
        self._max_age = max_age
        self._known: dict[str, OpenCyclesTotal] = {}
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def get(self, business_id: str, now: datetime) -> OpenCyclesTotal | None:
        with self._lock:
            known = self._known.get(business_id)
            stale = known is None or now - known.computed_at >= self._max_age
            if stale and business_id not in self._running and not self._stopped:
                thread = threading.Thread(
                    target=self._refresh, args=(business_id,), daemon=True, name="open-cycles"
                )
                self._running[business_id] = thread
                thread.start()
        return known

    def stop(self, timeout: float = 30.0) -> None:
        """No more refreshes; wait for those under way (before the store is closed)."""
        with self._lock:
            self._stopped = True
            running = list(self._running.values())
        for thread in running:
            thread.join(timeout)

    def refresh_now(self, business_id: str) -> OpenCyclesTotal:
        """Compute it here and keep it (a test, or a caller that can wait)."""
        found = self._compute(business_id, self._clock())
        with self._lock:
            self._known[business_id] = found
        return found

    def _refresh(self, business_id: str) -> None:
        try:
            self.refresh_now(business_id)
        except Exception as error:  # noqa: BLE001 - a page shows the older figure meanwhile
            log.warning("open_cycles_total_failed", business_id=business_id, error=str(error))
        finally:
            with self._lock:
                self._running.pop(business_id, None)
