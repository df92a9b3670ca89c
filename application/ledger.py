"""The ledger application: customers and usage events, appended to one log."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recorder
from eventsourcing.utils import get_topic

from application.catalogue import customer_view, meter_view, product_view
from application.errors import (
    BatchSizeError,
    ConflictRetryExhaustedError,
    DuplicateEventInRequestError,
    NotFoundError,
)
from application.ports import StoredIdentities
from application.usage_log import usage_view
from application.views import CustomerView, MeterView, ProductView, UsageEventView
from domain.credit_entitlement import (
    CreditEntitlement,
    entitlement_aggregate_id,
    resolve_attachment,
)
from domain.customer import Customer, check_customer_fields, customer_aggregate_id
from domain.errors import DomainError, InvalidCreditError, InvalidPriceError
from domain.metadata import UnreadableMetadata, validate_metadata
from domain.meter import Meter, MeterSpec, meter_aggregate_id
from domain.product import (
    Product,
    check_product_fields,
    parse_usage_price,
    product_aggregate_id,
)
from domain.usage import (
    TimeWindow,
    UsageEvent,
    check_event_id,
    check_event_name,
    parse_timestamp,
    usage_event_id,
)

A = TypeVar("A", bound=Aggregate)
MAX_BATCH = 1000
MAX_ATTACHMENTS = 10
MAX_SAVE_ATTEMPTS = 8
_KNOWN_CUSTOMERS_CAP = 100_000
_USAGE_TOPIC = get_topic(UsageEvent)


@dataclass(frozen=True, slots=True)
class EventInput:
    event_id: str
    customer_id: str
    event_name: str
    timestamp: str | None = None
    metadata: Mapping[str, object] | UnreadableMetadata | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    event_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    index: int
    event_id: str


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    ingested_count: int
    duplicates: tuple[Duplicate, ...]
    rejected: tuple[Rejection, ...]


@dataclass(frozen=True, slots=True)
class _Accepted:
    index: int
    source: EventInput
    fields: dict[str, Any]
    aggregate_id: UUID


class UnknownCustomerError(DomainError):
    code = "unknown_customer"


class UnknownMeterError(DomainError):
    code = "unknown_meter"


class Ledger(Application[UUID]):
    """Commands over customers and usage events. The log is the truth."""

    name = "ledger"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        identities: Callable[[Recorder], StoredIdentities],
        window: TimeWindow,
    ) -> None:
        super().__init__(env)
        self._identities = identities(self.recorder)
        self.window = window
        # Customers are never deleted, so a positive answer may be remembered.
        self._known_customers: set[tuple[str, str]] = set()  # (business, customer)

    # Customers

    def register_customer(
        self,
        business_id: str,
        *,
        email: str,
        name: str,
        phone_number: str | None,
        metadata: Mapping[str, object] | None,
        now: datetime,
    ) -> CustomerView:
        email = email.strip()
        check_customer_fields(email, name, phone_number)
        customer = Customer(
            business_id=business_id,
            customer_id=f"cus_{secrets.token_hex(12)}",
            email=email,
            name=name.strip(),
            phone_number=phone_number,
            metadata=validate_metadata(metadata),
            created_at=now,
        )
        self.save(customer)
        self._known_customers.add((business_id, customer.customer_id))
        return customer_view(customer)

    def customer(self, business_id: str, customer_id: str) -> CustomerView:
        try:
            customer: Customer = self.repository.get(
                customer_aggregate_id(business_id, customer_id)
            )
        except AggregateNotFoundError:
            raise NotFoundError(f"customer {customer_id!r} not found") from None
        return customer_view(customer)

    # Meters

    def create_meter(
        self,
        business_id: str,
        *,
        name: str,
        description: str | None,
        measurement_unit: str,
        event_name: str,
        aggregation: object,
        filter_: object,
        now: datetime,
    ) -> MeterView:
        """A new meter. It measures every matching event in the log, older ones too."""
        spec = MeterSpec.parse(event_name, aggregation, filter_)
        meter = Meter.define(
            business_id,
            f"mtr_{secrets.token_hex(12)}",
            name=name,
            description=description,
            measurement_unit=measurement_unit,
            spec=spec,
            created_at=now,
        )
        self.save(meter)
        return meter_view(meter)

    def _meter(self, business_id: str, meter_id: str) -> Meter:
        try:
            meter: Meter = self.repository.get(meter_aggregate_id(business_id, meter_id))
        except AggregateNotFoundError:
            raise NotFoundError(f"meter {meter_id!r} not found") from None
        return meter

    def meter(self, business_id: str, meter_id: str) -> MeterView:
        return meter_view(self._meter(business_id, meter_id))

    def meter_spec(self, business_id: str, meter_id: str) -> MeterSpec:
        return self._meter(business_id, meter_id).spec

    def update_meter(
        self,
        business_id: str,
        meter_id: str,
        *,
        changes: Mapping[str, Any],
        now: datetime,
    ) -> MeterView:
        """Change the fields given in ``changes``; the rest stay as they are.

        ``name``, ``description`` and ``measurement_unit`` may always change. A
        change of ``event_name``, ``aggregation`` or ``filter`` makes the usage
        projection measure the meter again over the whole log.
        """
        meter = self._meter(business_id, meter_id)
        meter.update(
            changes.get("name", meter.name),
            changes.get("description", meter.description),
            changes.get("measurement_unit", meter.measurement_unit),
            now,
        )
        if {"event_name", "aggregation", "filter"} & changes.keys():
            spec = MeterSpec.parse(
                changes.get("event_name", meter.event_name),
                changes.get("aggregation", meter.aggregation),
                changes.get("filter", meter.filter),
            )
            meter.change_definition(spec, now)
        self.save(meter)
        return meter_view(meter)

    def lock_meter(self, business_id: str, meter_id: str, reason: str, now: datetime) -> None:
        """Billing has used the meter: from now on its definition cannot change."""
        meter = self._meter(business_id, meter_id)
        meter.lock(reason, now)
        self.save(meter)

    def archive_meter(self, business_id: str, meter_id: str, now: datetime) -> MeterView:
        meter = self._meter(business_id, meter_id)
        meter.archive(now)
        self.save(meter)
        return meter_view(meter)

    def unarchive_meter(self, business_id: str, meter_id: str, now: datetime) -> MeterView:
        meter = self._meter(business_id, meter_id)
        meter.unarchive(now)
        self.save(meter)
        return meter_view(meter)

    # Products

    def create_product(
        self,
        business_id: str,
        *,
        name: str,
        description: str | None,
        tax_category: str,
        metadata: Mapping[str, object] | None,
        price: object,
        now: datetime,
        credit_entitlements: Sequence[object] | None = None,
    ) -> ProductView:
        """A product with a usage-based price; every meter it prices must exist."""
        check_product_fields(name, description, tax_category)
        _, wire = parse_usage_price(self._with_credits(business_id, price, credit_entitlements))
        product_id = f"pdt_{secrets.token_hex(12)}"
        meters = self._priced_meters(business_id, product_id, wire, now)
        product = Product(
            business_id=business_id,
            product_id=product_id,
            name=name.strip(),
            description=description,
            tax_category=tax_category,
            metadata=validate_metadata(metadata),
            price=wire,
            created_at=now,
        )
        self.save(product, *meters)
        return product_view(product)

    def load_product(self, business_id: str, product_id: str) -> Product:
        try:
            product: Product = self.repository.get(product_aggregate_id(business_id, product_id))
        except AggregateNotFoundError:
            raise NotFoundError(f"product {product_id!r} not found") from None
        return product

    def product(self, business_id: str, product_id: str) -> ProductView:
        return product_view(self.load_product(business_id, product_id))

    def change(self, load: Callable[[], A], command: Callable[[A], object], what: str) -> A:
        """Load, change and save one aggregate, again from a fresh load when another
        writer (another process) saved it in between: never a 500 for a race."""
        for _ in range(MAX_SAVE_ATTEMPTS):
            aggregate = load()
            command(aggregate)
            try:
                self.save(aggregate)
            except IntegrityError:
                continue
            return aggregate
        raise ConflictRetryExhaustedError(f"the {what} kept changing under this write")

    def load(self, kind: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate as it is now; None if it was never saved."""
        try:
            found: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(found, kind)
        return found

    def head(self) -> int:
        """The position of the last event in the log (0: none yet)."""
        return self.recorder.max_notification_id() or 0

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether the aggregate was ever saved: one row read, nothing decoded."""
        return bool(self.recorder.select_events(aggregate_id, limit=1))

    def aggregate_at(self, aggregate_id: UUID, version: int) -> Aggregate:
        """The aggregate as it stood at ``version``: the log never changes, so neither does this."""
        found: Aggregate = self.repository.get(aggregate_id, version=version)
        return found

    def update_product(
        self, business_id: str, product_id: str, *, changes: Mapping[str, Any], now: datetime
    ) -> ProductView:
        """Change the given fields; a new price applies to cycles that begin from now on.

        Decided again on a fresh load when another writer saved the product (or a meter
        it marks) in between."""
        for _ in range(MAX_SAVE_ATTEMPTS):
            product, meters = self._changed_product(business_id, product_id, changes, now)
            try:
                self.save(product, *meters)
            except IntegrityError:
                continue
            return product_view(product)
        raise ConflictRetryExhaustedError("the product kept changing under this write")

    def _changed_product(
        self, business_id: str, product_id: str, changes: Mapping[str, Any], now: datetime
    ) -> tuple[Product, list[Meter]]:
        product = self.load_product(business_id, product_id)
        meters: list[Meter] = []
        metadata = changes.get("metadata", product.metadata)
        product.update(
            changes.get("name", product.name),
            changes.get("description", product.description),
            changes.get("tax_category", product.tax_category),
            validate_metadata(metadata),
            now,
        )
        if "price" in changes or "credit_entitlements" in changes:
            price = changes.get("price", _client_price(product.price))
            attachments = changes.get("credit_entitlements")
            if attachments is None:  # kept as they are
                attachments = product.price.get("credit_entitlements", [])
                price = {**price, "credit_entitlements": attachments} if attachments else price
                _check_client_price(changes.get("price"))
            else:
                attached = product.price.get("credit_entitlements", [])
                kept = frozenset(a["credit_entitlement_id"] for a in attached)
                price = self._with_credits(business_id, price, attachments, kept)
            _, wire = parse_usage_price(price)
            meters = self._priced_meters(business_id, product_id, wire, now)
            product.change_price(wire, now)
        return product, meters

    def _with_credits(
        self,
        business_id: str,
        price: object,
        attachments: Sequence[object] | None,
        kept: frozenset[str] = frozenset(),
    ) -> object:
        """The price with each attached credit entitlement's rules resolved into it.

        A deleted entitlement is refused unless ``kept`` (the product attaches it
        already: sending it again is no new attachment)."""
        _check_client_price(price)
        if not attachments:
            return price
        if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
            raise InvalidCreditError(f"credit_entitlements: a list of at most {MAX_ATTACHMENTS}")
        known: dict[str, Mapping[str, Any]] = {}
        for index, item in enumerate(attachments):
            found = item.get("credit_entitlement_id") if isinstance(item, Mapping) else None
            if isinstance(found, str) and found not in known:
                try:
                    entitlement: CreditEntitlement = self.repository.get(
                        entitlement_aggregate_id(business_id, found)
                    )
                except AggregateNotFoundError:
                    continue
                if found not in kept:
                    entitlement.check_not_deleted(
                        f"credit_entitlements[{index}].credit_entitlement_id: "
                    )
                known[found] = entitlement.settings
        resolved = [resolve_attachment(item, i, known) for i, item in enumerate(attachments)]
        assert isinstance(price, Mapping)
        return {**price, "credit_entitlements": resolved}

    def _priced_meters(
        self, business_id: str, product_id: str, price: Mapping[str, Any], now: datetime
    ) -> list[Meter]:
        """Every priced meter exists; a line priced per value of a key prices a count or
        sum meter, so its values add up to the meter (and to its credits' drawdown), and
        that meter is marked so its aggregation stays so: the meters to save with it."""
        marked = []
        for index, meter in enumerate(price["meters"]):
            try:
                found = self._meter(business_id, meter["meter_id"])
            except NotFoundError:
                raise UnknownMeterError(
                    f"price.meters[{index}].meter_id: meter {meter['meter_id']!r} not found"
                ) from None
            if meter.get("group_by") is None:
                continue
            kind = found.spec.aggregation.kind
            if not kind.is_additive():
                raise InvalidPriceError(
                    f"price.meters[{index}].group_by: a line priced per value needs a count or "
                    f"sum meter; {meter['meter_id']!r} aggregates by {kind}"
                )
            found.price_per_value(product_id, now)
            marked.append(found)
        return marked

    # Usage events

    def _usage_event(self, business_id: str, event_id: str) -> UsageEvent:
        try:
            usage: UsageEvent = self.repository.get(usage_event_id(business_id, event_id))
        except AggregateNotFoundError:
            raise NotFoundError(f"event {event_id!r} not found") from None
        return usage

    def usage_event(self, business_id: str, event_id: str) -> UsageEventView:
        return usage_view(self._usage_event(business_id, event_id))

    def void_usage_event(
        self, business_id: str, event_id: str, *, reason: str | None, now: datetime
    ) -> UsageEventView:
        """Void the event: it stops counting everywhere. Idempotent.

        A repeat, even with another reason, answers the first void unchanged. Two
        concurrent voids collide on the aggregate's next version; the loser reads
        the winner's void back.
        """
        for _ in range(MAX_SAVE_ATTEMPTS):
            usage = self._usage_event(business_id, event_id)
            usage.void(reason, now)
            try:
                self.save(usage)
            except IntegrityError:
                continue
            return usage_view(usage)
        raise ConflictRetryExhaustedError("concurrent voids kept colliding; retry the request")

    def ingest(
        self, business_id: str, events: Sequence[EventInput], now: datetime
    ) -> IngestOutcome:
        """Record each good event at most once; report duplicates and rejections."""
        check_batch(events)
        accepted, rejected = self._validate(business_id, events, now)
        pending = {a.aggregate_id: a for a in accepted}
        written, duplicates = self._insert_new(business_id, pending)
        return IngestOutcome(
            ingested_count=written,
            duplicates=tuple(sorted(duplicates, key=lambda d: d.index)),
            rejected=tuple(rejected),
        )

    def _insert_new(
        self, business_id: str, pending: dict[UUID, _Accepted]
    ) -> tuple[int, list[Duplicate]]:
        """Store the events not stored yet: in one statement where the store can skip
        the ones it holds (its constraint decides, in one round trip), else under the
        business's lock after a probe for the ids already there."""
        if not pending:
            return 0, []
        stored = [
            self.mapper.to_stored_event(_recorded(aggregate_id, business_id, a.fields))
            for aggregate_id, a in pending.items()
        ]
        inserted = self._identities.insert_new(stored)
        if inserted is None:
            with self._identities.serialised(business_id):
                return self._save_new(business_id, pending)
        duplicates = [
            Duplicate(a.index, a.source.event_id)
            for aggregate_id, a in pending.items()
            if aggregate_id not in inserted
        ]
        return len(inserted), duplicates

    def _save_new(
        self, business_id: str, pending: dict[UUID, _Accepted]
    ) -> tuple[int, list[Duplicate]]:
        duplicates: list[Duplicate] = []
        for _ in range(MAX_SAVE_ATTEMPTS):
            for known in self._identities.existing(pending.keys()):
                dup = pending.pop(known)
                duplicates.append(Duplicate(dup.index, dup.source.event_id))
            # The creating event of each UsageEvent aggregate, put straight into the
            # event store: ingest never reads the aggregates back.
            fresh = [_recorded(i, business_id, a.fields) for i, a in pending.items()]
            try:
                recordings = self.events.put(fresh) if fresh else []
            except IntegrityError:
                continue  # a concurrent writer got some of them first; look again
            return len({r.domain_event.originator_id for r in recordings}), duplicates
        raise ConflictRetryExhaustedError("concurrent writers kept colliding; retry the request")

    def _validate(
        self, business_id: str, events: Sequence[EventInput], now: datetime
    ) -> tuple[list[_Accepted], list[Rejection]]:
        accepted: list[_Accepted] = []
        rejected: list[Rejection] = []
        for index, source in enumerate(events):
            try:
                fields = self._check_event(business_id, source, now)
            except DomainError as error:
                rejected.append(Rejection(index, source.event_id, error.code, error.message))
            else:
                aggregate_id = usage_event_id(business_id, source.event_id)
                accepted.append(_Accepted(index, source, fields, aggregate_id))
        return accepted, rejected

    def _check_event(self, business_id: str, source: EventInput, now: datetime) -> dict[str, Any]:
        check_event_id(source.event_id)
        check_event_name(source.event_name)
        timestamp = now if source.timestamp is None else parse_timestamp(source.timestamp)
        self.window.check(timestamp, now)
        metadata = validate_metadata(source.metadata)
        if not self._customer_exists(business_id, source.customer_id):
            raise UnknownCustomerError(f"customer {source.customer_id!r} does not exist")
        return {
            "event_id": source.event_id,
            "customer_id": source.customer_id,
            "event_name": source.event_name,
            "timestamp": timestamp,
            "metadata": metadata,
            "received_at": now,
        }

    def _customer_exists(self, business_id: str, customer_id: str) -> bool:
        known = (business_id, customer_id)
        if known in self._known_customers:
            return True
        if not self.recorder.select_events(customer_aggregate_id(*known), limit=1):
            return False
        if len(self._known_customers) >= _KNOWN_CUSTOMERS_CAP:
            self._known_customers.clear()
        self._known_customers.add(known)
        return True


def _recorded(
    aggregate_id: UUID, business_id: str, fields: Mapping[str, Any]
) -> UsageEvent.Recorded:
    """The creating event of a UsageEvent aggregate, as the library would make it (the
    same fields, in the same order, so the same stored bytes) without the frozen
    dataclass's per-field ``__init__``: ingest makes one per event."""
    event: UsageEvent.Recorded = object.__new__(UsageEvent.Recorded)
    object.__setattr__(
        event,
        "__dict__",
        {
            "originator_id": aggregate_id,
            "originator_version": UsageEvent.INITIAL_VERSION,
            "timestamp": fields["timestamp"],
            "originator_topic": _USAGE_TOPIC,
            "business_id": business_id,
            "event_id": fields["event_id"],
            "customer_id": fields["customer_id"],
            "event_name": fields["event_name"],
            "metadata": fields["metadata"],
            "received_at": fields["received_at"],
        },
    )
    return event


def check_batch(events: Sequence[EventInput]) -> None:
    if not 1 <= len(events) <= MAX_BATCH:
        raise BatchSizeError(
            f"a request carries 1 to {MAX_BATCH} events, not {len(events)}", count=len(events)
        )
    seen: dict[str, int] = {}
    for index, source in enumerate(events):
        if source.event_id in seen:
            raise DuplicateEventInRequestError(
                f"event_id {source.event_id!r} appears twice in the request "
                f"(indexes {seen[source.event_id]} and {index})",
                index=index,
                event_id=source.event_id,
            )
        seen[source.event_id] = index


def _client_price(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The price as a client sends it: without the resolved credit attachments."""
    return {k: v for k, v in stored.items() if k != "credit_entitlements"}


def _check_client_price(price: object) -> None:
    if isinstance(price, Mapping) and "credit_entitlements" in price:
        raise InvalidPriceError(
            "price.credit_entitlements: unknown field; credit entitlements are attached with "
            "the product's own credit_entitlements"
        )
