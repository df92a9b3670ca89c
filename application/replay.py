"""Replay: meters, credit balances and open invoices as they stood at a log position.

A position is a notification id: the state at ``P`` is the fold of every event
at or before ``P``, read from the log (aggregates at their last version at or
before ``P``) and from the usage log (``stream_records(..., up_to=P)``, which
also leaves out the events voided by ``P``). The catalogue is taken at ``P``
too: a meter redefined or a price changed later does not rewrite the replay.
A position inside a batch (one ingest commits up to 1,000 events at once) shows
the batch's events up to it: a prefix of the log no reader saw at the time.

When an event was recorded is its creation time: the envelope ``timestamp`` the
library stamps when the event is created, except for a usage event, whose
``timestamp`` is the client's and whose ``received_at`` is when it was taken in.
Events are created just before they are committed, so these times follow log
order up to clock skew between processes and the wait for the table lock.

- Meters: each meter of the business at ``P`` (archived ones too), per customer
  registered by ``P``, over the calendar month (UTC) holding the moment.
- Credit balances: each credit account of the business at ``P``.
- Open invoices: each subscription's cycle holding the moment, folded at cut
  ``P`` with the grants usable in it at ``P`` (a cycle grant not given yet
  counts as given), as ``GET /subscriptions/{id}/invoice-preview`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEvent, DomainEventProtocol
from eventsourcing.utils import get_topic

from application.billing import invoice_document
from application.errors import InvalidParameterError, NotFoundError, UnavailableError
from application.grants import grant_expiry
from application.ledger import Ledger
from application.usage_log import UsageLogStore
from application.usage_report import Window
from domain.credit_account import CreditAccount, cycle_grant_id
from domain.credits import Grant
from domain.customer import Customer
from domain.cycles import Cycle
from domain.invoice import Invoice, fold_invoice
from domain.meter import Meter
from domain.pricing import UsagePrice
from domain.product import Product
from domain.subscription import Subscription
from domain.usage import UsageEvent

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True, slots=True)
class MeterUsage:
    meter_id: str
    name: str
    archived: bool
    aggregation: dict[str, Any]
    customer_id: str
    value: Decimal
    events: int


@dataclass(frozen=True, slots=True)
class CreditBalance:
    entitlement_id: str
    customer_id: str
    balance: Decimal
    created_at: datetime
    updated_at: datetime
    last_transaction_at: datetime | None


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    subscription_id: str
    customer_id: str
    status: str
    cycle: Cycle
    invoice: Invoice
    document: dict[str, Any]  # as the invoice preview answers it


@dataclass(frozen=True, slots=True)
class Replay:
    business_id: str
    customer_id: str | None
    position: int
    moment: datetime | None  # None: nothing was recorded by the position
    month: tuple[datetime, datetime] | None
    meters: tuple[MeterUsage, ...]
    balances: tuple[CreditBalance, ...]
    invoices: tuple[OpenInvoice, ...]


def recorded_at(domain_event: DomainEventProtocol[Any]) -> datetime:
    """When the event was recorded (see the module's docstring), in UTC."""
    if isinstance(domain_event, UsageEvent.Recorded):
        return domain_event.received_at.astimezone(UTC)
    assert isinstance(domain_event, DomainEvent)  # every event of ours is one
    return domain_event.timestamp.astimezone(UTC)


def position_at(ledger: Ledger, moment: datetime) -> int:
    """The last position whose event was recorded at or before ``moment`` (0: none).

    Bisects the log: one single-row query per step, whatever its length.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidParameterError("the moment must name its zone ('Z' or an offset)")
    low, high = 0, ledger.recorder.max_notification_id() or 0
    while low < high:
        middle = (low + high + 1) // 2
        found = ledger.recorder.select_notifications(start=middle, limit=1, stop=high)
        if found and recorded_at(ledger.mapper.to_domain_event(found[0])) <= moment:
            low = found[0].id
        else:  # nothing in [middle, high], or everything from there on is later
            high = middle - 1
    return low


def replay_as_of(
    ledger: Ledger,
    index: UsageLogStore,
    *,
    moment: datetime,
    business_id: str,
    customer_id: str | None = None,
) -> Replay:
    """The replay at the last position recorded at or before ``moment``, seen at ``moment``."""
    position = position_at(ledger, moment)
    return replay(
        ledger,
        index,
        position=position,
        business_id=business_id,
        customer_id=customer_id,
        moment=moment,
    )


def replay(
    ledger: Ledger,
    index: UsageLogStore,
    *,
    position: int,
    business_id: str,
    customer_id: str | None = None,
    moment: datetime | None = None,
) -> Replay:
    """The state at ``position``; the month and cycles are those holding ``moment``
    (default: when the last event at or before ``position`` was recorded)."""
    _check_position(ledger, index, position)
    customers = [c.customer_id for c in _at(ledger, position, Customer, business_id, customer_id)]
    if customer_id is not None and not customers:
        raise NotFoundError(f"customer {customer_id!r} did not exist at position {position}")
    moment = _moment_of(ledger, position) if moment is None else moment.astimezone(UTC)
    empty = Replay(business_id, customer_id, position, moment, None, (), (), ())
    if moment is None:  # nothing recorded yet, so nothing to show
        return empty
    meters = {m.meter_id: m for m in _at(ledger, position, Meter, business_id)}
    products = {p.product_id: p for p in _at(ledger, position, Product, business_id)}
    found = _at(ledger, position, CreditAccount, business_id, customer_id)
    accounts = {(a.entitlement_id, a.customer_id): a for a in found}
    subscriptions = _at(ledger, position, Subscription, business_id, customer_id)
    month = (Window.MONTH.floor(moment), Window.MONTH.next(Window.MONTH.floor(moment)))
    return replace(
        empty,
        month=month,
        meters=tuple(
            _usage(index, m, c, month, position) for m in meters.values() for c in customers
        ),
        balances=tuple(_balance(account) for account in accounts.values()),
        invoices=tuple(
            _open_invoice(index, s, products[s.product_id], meters, accounts, moment, position)
            for s in subscriptions
        ),
    )


def _check_position(ledger: Ledger, index: UsageLogStore, position: int) -> None:
    head = ledger.recorder.max_notification_id() or 0
    if position < 0:
        raise InvalidParameterError(f"position must be 0 or more, not {position}")
    if position > head:
        raise InvalidParameterError(f"position {position} is beyond the log's head ({head})")
    reached = index.max_tracking_id(ledger.name) or 0
    if reached < position:
        raise UnavailableError(
            f"the usage log has reached position {reached}, not {position} yet; "
            "run the projections (ledger projections run) and try again"
        )


def _moment_of(ledger: Ledger, position: int) -> datetime | None:
    """When the event at ``position`` (ids have gaps: the last one up to it) was recorded."""
    span = 16
    while True:
        start = max(position - span, 0)
        found = ledger.recorder.select_notifications(
            start=start, limit=span, stop=position, inclusive_of_start=False
        )
        if found:
            return recorded_at(ledger.mapper.to_domain_event(found[-1]))
        if start == 0:
            return None
        span *= 4


def _at(
    ledger: Ledger,
    position: int,
    kind: type[A],
    business_id: str,
    customer_id: str | None = None,
) -> list[A]:
    """The business's aggregates of ``kind`` as they stood at ``position``, oldest first.

    With ``customer_id``, only those whose creation names that customer.
    """
    topics = [
        get_topic(c)
        for c in vars(kind).values()
        if isinstance(c, type) and issubclass(c, kind.Event)
    ]
    versions: dict[UUID, int] = {}
    owned: list[UUID] = []
    notifications = ledger.recorder.select_notifications(
        start=0, limit=2**62, stop=position, topics=topics, inclusive_of_start=False
    )
    for notification in notifications:
        raw = notification.originator_id
        aggregate_id = raw if isinstance(raw, UUID) else UUID(str(raw))
        versions[aggregate_id] = notification.originator_version
        if notification.originator_version == kind.INITIAL_VERSION:
            created = ledger.mapper.to_domain_event(notification)
            if getattr(created, "business_id", None) == business_id and customer_id in (
                None,
                getattr(created, "customer_id", customer_id),
            ):
                owned.append(aggregate_id)
    found: list[A] = [ledger.repository.get(i, version=versions[i]) for i in owned]
    return found


def _usage(
    index: UsageLogStore,
    meter: Meter,
    customer_id: str,
    month: tuple[datetime, datetime],
    position: int,
) -> MeterUsage:
    spec = meter.spec
    records = index.stream_records(
        meter.business_id, spec.event_name, customer_id, month[0], month[1], position
    )
    tally = spec.tally(records)
    return MeterUsage(
        meter.meter_id,
        meter.name,
        meter.is_archived,
        spec.aggregation.to_wire(),
        customer_id,
        tally.result(spec.aggregation),
        tally.count,
    )


def _open_invoice(
    index: UsageLogStore,
    subscription: Subscription,
    product: Product,
    meters: dict[str, Meter],
    accounts: Mapping[tuple[str, str], CreditAccount],
    moment: datetime,
    position: int,
) -> OpenInvoice:
    """What ``application.billing.invoice_preview`` answered at ``position``, with the
    product, meters and credit accounts as they stood then (``invoice_of`` reads the
    catalogue as it is now)."""
    current = subscription.cycle_at(moment)
    price = product.price_at(current.start)
    price = replace(price, fixed_price=price.fixed_price * subscription.quantity)
    specs = {m.meter_id: meters[m.meter_id].spec for m in price.meters}
    grants = _usable_grants(subscription, current, price, accounts)
    business_id, customer_id = subscription.business_id, subscription.customer_id
    records = chain.from_iterable(
        index.stream_records(business_id, name, customer_id, current.start, current.end, position)
        for name in sorted({spec.event_name for spec in specs.values()})
    )
    invoice = fold_invoice(current, price, specs, records, cut=position, grants=grants)
    return OpenInvoice(
        subscription.subscription_id,
        subscription.customer_id,
        subscription.status(moment),
        current,
        invoice,
        invoice_document(subscription, invoice),
    )


def _usable_grants(
    subscription: Subscription,
    current: Cycle,
    price: UsagePrice,
    accounts: Mapping[tuple[str, str], CreditAccount],
) -> dict[str, list[Grant]]:
    """The grants usable in ``current`` on the accounts at hand, the cycle's own grant
    counted as given (as a plan renews it, ``application.billing.plan_cycle``)."""
    found: dict[str, list[Grant]] = {}
    for terms in price.credits:
        account = accounts.get((terms.entitlement_id, subscription.customer_id))
        grants = [] if account is None else account.usable_grants(current.start, current.end)
        grant_id = cycle_grant_id(subscription.subscription_id, terms.entitlement_id, current.index)
        if terms.credits_amount and (account is None or grant_id not in account.grants):
            expires_at = grant_expiry(terms, current)
            grants.append(Grant(grant_id, terms.credits_amount, current.start, expires_at))
        found[terms.entitlement_id] = grants
    return found


def _balance(account: CreditAccount) -> CreditBalance:
    return CreditBalance(
        account.entitlement_id,
        account.customer_id,
        account.balance,
        account.opened_at,
        account.updated_at,
        account.last_transaction_at,
    )
