"""The outbox: every message due to a webhook endpoint, derived from the log by a projection.

The projection reads the log like the others. From each fact a business's
systems hear about it derives a ``Draft`` (``application.messages``): a credit
ledger entry, a balance falling below its threshold, a subscription begun,
changed, renewed or ended, an invoice finalized, late usage or a void landing
on a finalized cycle, a usage alert reached. It addresses each draft to every
endpoint of the business that, at that position of the log, receives its type
(not disabled, not deleted, ``filter_types``), and writes the messages in the
same transaction as its tracking position.

A message's id derives from (endpoint, the fact's key): derived again (a crash
before the tracking row, a second process, a rebuild) it is the same message,
and the store keeps the first (``ON CONFLICT DO NOTHING``). The messages and
their delivery state are not dropped by a rebuild; the projection's own state
(endpoints, alerts, finalized cycles, entries seen) is, and is derived again.

Usage alerts measure the meter from the usage projection's tallies at the
batch's end, so the outbox comes after it in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking

from application.messages import (
    CREDIT_TYPES,
    Draft,
    ThresholdData,
    adjusted_draft,
    balance_low_draft,
    credit_draft,
    envelope,
    invoice_draft,
    iso,
    subscription_draft,
)
from application.ports import TrackedView
from application.projection import Batch
from domain.alert import UsageAlert, calendar_period
from domain.credit_account import CreditAccount
from domain.customer import Customer, customer_aggregate_id
from domain.invoice_record import InvoiceRecord
from domain.meter import MeterSpec, Tally, canonical_number
from domain.product import Product
from domain.subscription import Subscription
from domain.usage import UsageEvent
from domain.webhook import WebhookEndpoint

MESSAGE_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledger.invalid/webhook-message")


def message_id(endpoint_id: str, key: str) -> str:
    """The ``webhook-id`` of the fact ``key`` at ``endpoint_id``: the same every time."""
    return "msg_" + uuid5(MESSAGE_NAMESPACE, endpoint_id + "\x1f" + key).hex


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint as the outbox knows it: where, and which messages it receives."""

    business_id: str
    endpoint_id: str
    url: str
    filter_types: tuple[str, ...]
    disabled: bool
    deleted: bool
    rate_limit: int | None

    def receives(self, message_type: str) -> bool:
        if self.deleted or self.disabled:
            return False
        return not self.filter_types or message_type in self.filter_types

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> Route:
        return cls(
            endpoint.business_id,
            endpoint.endpoint_id,
            endpoint.url,
            tuple(endpoint.filter_types),
            endpoint.disabled,
            endpoint.deleted_at is not None,
            endpoint.rate_limit,
        )


@dataclass(frozen=True, slots=True)
class AlertRule:
    business_id: str
    alert_id: str
    meter_id: str
    customer_id: str | None
    threshold: Decimal
    period: str
    name: str
    created_at: datetime
    deleted: bool

    @classmethod
    def of(cls, alert: UsageAlert) -> AlertRule:
        return cls(
            alert.business_id,
            alert.alert_id,
            alert.meter_id,
            alert.customer_id,
            alert.threshold,
            alert.period,
            alert.name,
            alert.created_at,
            alert.deleted_at is not None,
        )


@dataclass(frozen=True, slots=True)
class FinalizedCycle:
    """A cycle an invoice closed: usage landing in it later adjusts it."""

    business_id: str
    customer_id: str
    subscription_id: str
    invoice_id: str
    cycle_start: datetime
    cycle_end: datetime
    cut: int


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    business_id: str
    endpoint_id: str
    type: str
    position: int  # the log position the fact it derives from was read at
    created_at: datetime  # when the fact happened: the envelope's timestamp
    body: bytes  # the envelope, exactly as it is signed and sent


@dataclass(frozen=True, slots=True)
class Fired:
    business_id: str
    alert_id: str
    customer_id: str
    period_start: datetime


@dataclass(slots=True)
class OutboxChanges:
    routes: list[Route] = field(default_factory=list)
    alerts: list[AlertRule] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)
    finalized: list[FinalizedCycle] = field(default_factory=list)
    entries: dict[str, int] = field(default_factory=dict)  # account id -> entries seen
    messages: list[Message] = field(default_factory=list)


class OutboxStore(TrackedView, Protocol):
    """The outbox projection's rows (the delivery side is ``application.delivery``)."""

    def record(self, changes: OutboxChanges, tracking: Tracking, after: int) -> None:
        """Write the changes and the messages (a message already there is kept)."""
        ...

    def routes(self) -> list[Route]: ...

    def alert_rules(self, business_id: str | None = None) -> list[AlertRule]:
        """The alerts not deleted (of one business, or all)."""
        ...

    def alert_rule(self, business_id: str, alert_id: str) -> AlertRule | None: ...

    def fired(self, keys: Iterable[Fired]) -> set[Fired]:
        """Which of these have fired already."""
        ...

    def finalized_after(self, moment: datetime) -> list[FinalizedCycle]:
        """Finalized cycles ending after ``moment``."""
        ...

    def entries_seen(self, account_ids: Sequence[str]) -> dict[str, int]: ...


class Lookup(Protocol):
    """What the projection reads beside the batch."""

    def aggregate_at(self, aggregate_id: UUID, version: int) -> Aggregate: ...

    def load(self, kind: type[Any], aggregate_id: UUID) -> Any: ...

    def load_product(self, business_id: str, product_id: str) -> Product: ...

    def meter_spec(self, business_id: str, meter_id: str) -> MeterSpec: ...


class Measure(Protocol):
    def measure(
        self,
        business_id: str,
        specs: Mapping[str, MeterSpec],
        customer_id: str | None,
        start: datetime,
        end: datetime,
        *,
        at: int | None = None,
    ) -> tuple[int, dict[str, Tally]]: ...


# (business, customer, moment) -> the customer's billing cycle then, if it has one
CycleOf = Callable[[str, str, datetime], tuple[datetime, datetime] | None]


@dataclass(frozen=True, slots=True)
class _Crossing:
    rule: AlertRule
    customer_id: str
    start: datetime
    end: datetime


class OutboxProjection:
    name = "outbox"

    def __init__(
        self, view: OutboxStore, lookup: Lookup, measure: Measure, cycle_of: CycleOf
    ) -> None:
        self._view = view
        self._lookup = lookup
        self._measure = measure
        self._cycle_of = cycle_of

    @property
    def view(self) -> OutboxStore:
        return self._view

    def process(self, batch: Batch, tracking: Tracking, after: int) -> None:
        changes = OutboxChanges()
        drafts: list[tuple[int, Draft]] = []
        route_changes: list[tuple[int, Route]] = []
        accounts: dict[UUID, list[tuple[int, CreditAccount.Event]]] = {}
        # Usage (most of a batch) is taken as a whole, not looked at event by event.
        usage: list[tuple[int, UsageEvent.Recorded | UsageEvent.Voided]] = batch.of(
            UsageEvent.Recorded, UsageEvent.Voided
        )
        kinds = (
            CreditAccount.Event,
            WebhookEndpoint.Event,
            Subscription.Event,
            InvoiceRecord.Finalized,
            UsageAlert.Event,
        )
        for position, e in batch.of(*kinds):
            if isinstance(e, CreditAccount.Event):
                accounts.setdefault(e.originator_id, []).append((position, e))
            elif isinstance(e, WebhookEndpoint.Event):
                endpoint = self._at(WebhookEndpoint, e)
                route_changes.append((position, Route.of(endpoint)))
            elif isinstance(e, Subscription.Event):
                draft = self._subscription(e)
                if draft is not None:
                    drafts.append((position, draft))
            elif isinstance(e, InvoiceRecord.Finalized):
                record = self._at(InvoiceRecord, e)
                drafts.append((position, invoice_draft(record)))
                changes.finalized.append(
                    FinalizedCycle(
                        record.business_id,
                        record.customer_id,
                        record.subscription_id,
                        record.invoice_id,
                        record.cycle_start,
                        record.cycle_end,
                        record.cut,
                    )
                )
            elif isinstance(e, UsageAlert.Event):
                changes.alerts.append(AlertRule.of(self._at(UsageAlert, e)))
        drafts += self._credit(accounts, changes)
        if usage:
            drafts += self._late(usage, changes.finalized)
            drafts += self._thresholds(usage, changes, tracking.notification_id)
        if drafts or route_changes:
            changes.routes = [route for _, route in route_changes]
            changes.messages = self._address(drafts, route_changes)
        self._view.record(changes, tracking, after)

    def _at(self, kind: type[Any], e: Any) -> Any:
        found = self._lookup.aggregate_at(e.originator_id, e.originator_version)
        assert isinstance(found, kind)
        return found

    def _address(
        self, drafts: list[tuple[int, Draft]], route_changes: list[tuple[int, Route]]
    ) -> list[Message]:
        """Each draft to the endpoints that receive it at its position."""
        routes = {(r.business_id, r.endpoint_id): r for r in self._view.routes()}
        changes = iter(sorted(route_changes, key=lambda item: item[0]))
        pending = next(changes, None)
        messages: list[Message] = []
        for position, draft in sorted(drafts, key=lambda item: item[0]):
            while pending is not None and pending[0] <= position:
                routes[(pending[1].business_id, pending[1].endpoint_id)] = pending[1]
                pending = next(changes, None)
            body: bytes | None = None
            for route in routes.values():
                if route.business_id != draft.business_id or not route.receives(draft.type):
                    continue
                body = body or envelope(draft)
                messages.append(
                    Message(
                        message_id(route.endpoint_id, draft.key),
                        draft.business_id,
                        route.endpoint_id,
                        draft.type,
                        position,
                        draft.timestamp,
                        body,
                    )
                )
        return messages

    def _subscription(self, e: Subscription.Event) -> Draft | None:
        at: datetime  # when it happened, in the ledger's time (not the store's clock)
        if isinstance(e, Subscription.Created):
            kind, at = "subscription.active", e.created_at
        elif isinstance(e, Subscription.Renewed):
            kind, at = "subscription.renewed", e.cycle_start
        elif isinstance(e, Subscription.CancellationScheduled):
            kind, at = "subscription.updated", e.requested_at
        elif isinstance(e, Subscription.CancellationWithdrawn):
            kind, at = "subscription.updated", e.withdrawn_at
        elif isinstance(e, Subscription.Ended):
            kind, at = f"subscription.{e.reason}", e.ended_at
        else:
            return None
        subscription: Subscription = self._at(Subscription, e)
        ids = (subscription.business_id, subscription.customer_id)
        customer = self._lookup.load(Customer, customer_aggregate_id(*ids))
        product = self._lookup.load_product(subscription.business_id, subscription.product_id)
        return subscription_draft(kind, subscription, customer, product, at)

    def _credit(
        self,
        accounts: Mapping[UUID, list[tuple[int, CreditAccount.Event]]],
        changes: OutboxChanges,
    ) -> list[tuple[int, Draft]]:
        """A message per ledger entry the batch added, at the position of the event that
        added it, and balance_low where one crossed.

        The account is read as it stood before the batch's first event of it, and the
        batch's events applied to it one by one: each entry is known by its event.
        """
        if not accounts:
            return []
        seen = self._view.entries_seen([str(i) for i in accounts])
        drafts: list[tuple[int, Draft]] = []
        for account_id, events in accounts.items():
            first_version = events[0][1].originator_version
            account: Any = (
                self._lookup.aggregate_at(account_id, first_version - 1)
                if first_version > 1
                else None
            )
            sent = seen.get(str(account_id), 0)
            for position, e in events:
                account = e.mutate(account)
                assert isinstance(account, CreditAccount)
                for entry in account.entries[sent:]:
                    if entry.transaction_type in CREDIT_TYPES:
                        drafts.append((position, credit_draft(account, entry)))
                    low = self._balance_low(account, entry)
                    if low is not None:
                        drafts.append((position, low))
                sent = max(sent, len(account.entries))
            changes.entries[str(account_id)] = sent
        return drafts

    def _balance_low(self, account: CreditAccount, entry: Any) -> Draft | None:
        if entry.is_credit or entry.balance_after >= entry.balance_before:
            return None
        source = _subscription_of(account)
        if source is None:
            return None
        subscription = self._lookup.load(Subscription, _subscription_id(account, source))
        if subscription is None:
            return None
        product = self._lookup.load_product(subscription.business_id, subscription.product_id)
        return balance_low_draft(account, entry, subscription, product)

    def _late(
        self,
        usage: Sequence[tuple[int, UsageEvent.Recorded | UsageEvent.Voided]],
        finalized_now: Sequence[FinalizedCycle],
    ) -> list[tuple[int, Draft]]:
        """``invoice.adjusted`` for usage reaching a cycle its invoice closed already."""
        earliest = min(_moment(e) for _, e in usage)
        closed: dict[tuple[str, str], list[FinalizedCycle]] = {}
        for cycle in [*self._view.finalized_after(earliest), *finalized_now]:
            closed.setdefault((cycle.business_id, cycle.customer_id), []).append(cycle)
        if not closed:
            return []
        drafts: list[tuple[int, Draft]] = []
        specs: dict[str, list[MeterSpec]] = {}  # invoice id -> what its cycle's meters measure
        records: dict[str, InvoiceRecord | None] = {}
        for position, e in usage:
            moment = _moment(e)
            for cycle in closed.get((e.business_id, e.customer_id), ()):
                if not cycle.cycle_start <= moment < cycle.cycle_end or position <= cycle.cut:
                    continue
                if cycle.invoice_id not in specs:
                    specs[cycle.invoice_id] = self._cycle_specs(cycle)
                    records[cycle.invoice_id] = self._lookup.load(
                        InvoiceRecord, _invoice_aggregate(cycle)
                    )
                record = records[cycle.invoice_id]
                if record is None or not _counts(specs[cycle.invoice_id], e):
                    continue
                cause = "void" if isinstance(e, UsageEvent.Voided) else "late_usage"
                drafts.append(
                    (position, adjusted_draft(record, cause, e.event_id, position, e.timestamp))
                )
        return drafts

    def _cycle_specs(self, cycle: FinalizedCycle) -> list[MeterSpec]:
        """The meters of the price the cycle was billed at."""
        subscription = self._lookup.load(
            Subscription, Subscription.create_id(cycle.business_id, cycle.subscription_id)
        )
        if subscription is None:
            return []
        product = self._lookup.load_product(cycle.business_id, subscription.product_id)
        return [
            self._lookup.meter_spec(cycle.business_id, meter.meter_id)
            for meter in product.price_at(cycle.cycle_start).meters
        ]

    def _thresholds(
        self,
        usage: Sequence[tuple[int, UsageEvent.Recorded | UsageEvent.Voided]],
        changes: OutboxChanges,
        cut: int,
    ) -> list[tuple[int, Draft]]:
        """``usage.threshold_reached`` where a meter's value over a period reached an alert's."""
        specs: dict[tuple[str, str], MeterSpec] = {}
        crossings = self._crossings(usage, changes, specs)
        if not crossings:
            return []
        return self._fire(crossings, specs, usage, changes, cut)

    def _crossings(
        self,
        usage: Sequence[tuple[int, UsageEvent.Recorded | UsageEvent.Voided]],
        changes: OutboxChanges,
        specs: dict[tuple[str, str], MeterSpec],
    ) -> dict[Fired, tuple[int, _Crossing]]:
        """The (alert, customer, period) the batch's usage may have taken over a threshold."""
        rules: dict[str, list[AlertRule]] = {}
        for rule in [*self._view.alert_rules(), *changes.alerts]:
            rules.setdefault(rule.business_id, [])
            rules[rule.business_id] = [
                r for r in rules[rule.business_id] if r.alert_id != rule.alert_id
            ]
            if not rule.deleted:
                rules[rule.business_id].append(rule)
        crossings: dict[Fired, tuple[int, _Crossing]] = {}
        if not any(rules.values()):
            return crossings
        for position, e in usage:
            for rule in rules.get(e.business_id, ()):
                if rule.customer_id is not None and rule.customer_id != e.customer_id:
                    continue
                spec = specs.get((rule.business_id, rule.meter_id))
                if spec is None:
                    spec = self._lookup.meter_spec(rule.business_id, rule.meter_id)
                    specs[(rule.business_id, rule.meter_id)] = spec
                if (
                    isinstance(e, UsageEvent.Voided)
                    or spec.measure(e.event_name, e.metadata) is None
                ):
                    continue  # a void only lowers a value
                period = self._period(rule, e.customer_id, _moment(e))
                if period is None:
                    continue
                key = Fired(rule.business_id, rule.alert_id, e.customer_id, period[0])
                crossings[key] = (position, _Crossing(rule, e.customer_id, *period))
        return crossings

    def _fire(
        self,
        crossings: Mapping[Fired, tuple[int, _Crossing]],
        specs: Mapping[tuple[str, str], MeterSpec],
        usage: Sequence[tuple[int, UsageEvent.Recorded | UsageEvent.Voided]],
        changes: OutboxChanges,
        cut: int,
    ) -> list[tuple[int, Draft]]:
        done = self._view.fired(crossings)
        drafts: list[tuple[int, Draft]] = []
        for key, (position, crossing) in sorted(crossings.items(), key=lambda i: i[1][0]):
            if key in done:
                continue
            rule = crossing.rule
            spec = specs[(rule.business_id, rule.meter_id)]
            _, tallies = self._measure.measure(
                rule.business_id,
                {rule.meter_id: spec},
                crossing.customer_id,
                crossing.start,
                crossing.end,
                at=cut,
            )
            tally = tallies.get(rule.meter_id)
            value = canonical_number(tally.result(spec.aggregation)) if tally else Decimal(0)
            if value < rule.threshold:
                continue
            changes.fired.append(key)
            data = ThresholdData(
                alert_id=rule.alert_id,
                alert_name=rule.name,
                meter_id=rule.meter_id,
                customer_id=crossing.customer_id,
                period=rule.period,
                period_start=iso(crossing.start),
                period_end=iso(crossing.end),
                threshold=format(rule.threshold, "f"),
                value=format(value, "f"),
            )
            moment = next(_moment(e) for p, e in usage if p == position)
            draft_key = f"threshold:{rule.alert_id}:{crossing.customer_id}:{iso(crossing.start)}"
            drafts.append(
                (
                    position,
                    Draft("usage.threshold_reached", rule.business_id, moment, data, draft_key),
                )
            )
        return drafts

    def _period(
        self, rule: AlertRule, customer_id: str, moment: datetime
    ) -> tuple[datetime, datetime] | None:
        if rule.period == "cycle":
            return self._cycle_of(rule.business_id, customer_id, moment)
        return calendar_period(rule.period, moment)


def cycle_finder(subscriptions_of: Callable[[str, str], Sequence[Any]], lookup: Lookup) -> CycleOf:
    """The customer's billing cycle at a moment: of its oldest subscription begun by then."""

    def cycle_of(
        business_id: str, customer_id: str, moment: datetime
    ) -> tuple[datetime, datetime] | None:
        for entry in subscriptions_of(business_id, customer_id):
            found = lookup.load(
                Subscription, Subscription.create_id(business_id, entry.subscription_id)
            )
            if found is None or found.started_at > moment:
                continue
            if found.ends_at is not None and found.ends_at <= moment:
                continue
            cycle = found.cycle_at(moment)
            return cycle.start, cycle.end
        return None

    return cycle_of


def _counts(specs: Sequence[MeterSpec], e: UsageEvent.Recorded | UsageEvent.Voided) -> bool:
    """Whether one of the meters measures the event (a void: by its name)."""
    if isinstance(e, UsageEvent.Voided):
        return any(spec.event_name == e.event_name for spec in specs)
    return any(spec.measure(e.event_name, e.metadata) is not None for spec in specs)


def _moment(e: UsageEvent.Recorded | UsageEvent.Voided) -> datetime:
    return e.event_timestamp if isinstance(e, UsageEvent.Voided) else e.timestamp


def _subscription_of(account: CreditAccount) -> str | None:
    """The subscription whose cycle grants the account's latest credit, if any."""
    grants = [g for g in account.grants.values() if g.source_type == "subscription" and g.source_id]
    if not grants:
        return None
    return max(grants, key=lambda g: g.created_at).source_id


def _subscription_id(account: CreditAccount, subscription_id: str) -> UUID:
    return Subscription.create_id(account.business_id, subscription_id)


def _invoice_aggregate(cycle: FinalizedCycle) -> UUID:
    return InvoiceRecord.create_id(cycle.business_id, cycle.invoice_id)
