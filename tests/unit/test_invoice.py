"""The invoice fold: worked examples end to end, canonical bytes, order-free laws, adjustments."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cycles import Cycle, Interval, cycle
from domain.errors import InvoiceMismatchError
from domain.invoice import (
    Adjustment,
    AdjustmentLine,
    Invoice,
    InvoiceLine,
    adjustment,
    cycle_tallies,
    fold_invoice,
    price_cycle,
)
from domain.meter import AggregationKind, MeterSpec, UsageRecord, fold
from domain.pricing import MeterPrice, UsagePrice

LAWS = settings(max_examples=200, deadline=None)
GB = 10**9
ANCHOR = datetime(2026, 1, 31, 12, tzinfo=UTC)
CYCLE = cycle(ANCHOR, Interval.MONTH, 1, 0)  # Jan 31 12:00 to Feb 28 12:00
NEXT = cycle(ANCHOR, Interval.MONTH, 1, 1)


def quality_is(quality: str) -> dict[str, Any]:
    return {
        "conjunction": "and",
        "clauses": [{"key": "quality", "operator": "equals", "value": quality}],
    }


SPECS = {
    "api_calls": MeterSpec.parse("api.call", {"type": "count"}, None),
    "images_standard": MeterSpec.parse(
        "image.generated", {"type": "count"}, quality_is("standard")
    ),
    "images_hd": MeterSpec.parse("image.generated", {"type": "count"}, quality_is("hd")),
    "storage_bytes": MeterSpec.parse("storage.used", {"type": "sum", "key": "bytes"}, None),
    "sms": MeterSpec.parse("sms.sent", {"type": "count"}, None),
}
PRICE = UsagePrice.of(
    "USD",
    1000,
    Interval.MONTH,
    1,
    [
        MeterPrice.parse("api_calls", "2", 1000),
        MeterPrice.parse("images_standard", "4", 0),
        MeterPrice.parse("images_hd", "8", 0),
        MeterPrice.parse("storage_bytes", "0.000000500000", 10 * GB),
        MeterPrice.parse("sms", "1", None),
    ],
)


def events(name: str, n: int, start: int = 0, **metadata: Any) -> list[UsageRecord]:
    """``n`` events a minute apart from the cycle's start, ids from ``start``."""
    return [
        (CYCLE.start + timedelta(minutes=i), f"{name}-{start + i}", name, dict(metadata))
        for i in range(n)
    ]


WORKED = [
    *events("api.call", 2500),
    *events("image.generated", 120, quality="standard"),
    *events("image.generated", 35, 120, quality="hd"),
    *events("image.generated", 7, 155),  # no quality: neither meter counts it
    *events("storage.used", 1, bytes=12 * GB),
    *events("storage.used", 1, 1, bytes=345_678_901),
    *events("sms.sent", 1234),
    *events("email.sent", 50),
]


def test_the_worked_examples_fold_into_one_invoice() -> None:
    invoice = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42)
    amounts = {line.meter_id: line.amount_minor for line in invoice.lines}
    assert amounts == {
        "api_calls": 3000,
        "images_hd": 280,
        "images_standard": 480,
        "storage_bytes": 1173,
        "sms": 1234,
    }
    assert invoice.line("storage_bytes").billed_units == 2_345_678_901
    assert invoice.total_minor == 1000 + 3000 + 280 + 480 + 1173 + 1234
    assert [line.meter_id for line in invoice.lines] == sorted(SPECS)


def test_a_tenth_of_a_cent_per_call_after_10000_free_end_to_end() -> None:
    price = UsagePrice.of("USD", 0, Interval.MONTH, 1, [MeterPrice.parse("calls", "0.1", 10_000)])
    calls = {"calls": SPECS["api_calls"]}
    invoice = fold_invoice(CYCLE, price, calls, events("api.call", 25_000), cut=1)
    assert invoice.line("calls") == InvoiceLine(
        "calls", Decimal(25_000), 10_000, Decimal(15_000), Decimal(0), Decimal(15_000),
        Decimal("0.1"), 1500,
    )  # fmt: skip
    assert invoice.total_minor == 1500


def test_credits_cover_part_of_a_meter_before_it_is_billed() -> None:
    invoice = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42, credits={"api_calls": 400})
    line = invoice.line("api_calls")
    assert (line.credits_applied, line.billed_units, line.amount_minor) == (400, 1100, 2200)


def test_events_outside_the_cycle_are_ignored_start_inclusive_end_exclusive() -> None:
    tick = timedelta(microseconds=1)
    at = [CYCLE.start - tick, CYCLE.start, CYCLE.end - tick, CYCLE.end, NEXT.end]
    records = [(moment, f"e{i}", "sms.sent", {}) for i, moment in enumerate(at)]
    invoice = fold_invoice(CYCLE, PRICE, SPECS, records, cut=5)
    assert invoice.line("sms").consumed == 2
    assert fold_invoice(NEXT, PRICE, SPECS, records, cut=5).line("sms").consumed == 1


def test_canonical_bytes_are_sorted_compact_json_with_canonical_decimals() -> None:
    price = UsagePrice.of("USD", 500, Interval.MONTH, 1, [MeterPrice.parse("sms", "0.50", 2)])
    start = datetime(2026, 1, 31, 12, 0, 0, 250_000, tzinfo=UTC)
    sms = [(start, f"s{i}", "sms.sent", {}) for i in range(7)]
    invoice = fold_invoice(Cycle(0, start, start + timedelta(days=28)), price, SPECS, sms, cut=9)
    expected = (
        '{"adjustments":[],"credit_draws":[],"credit_overage":[],"currency":"USD",'
        '"cut":9,"cycle":{"end":"2026-02-28T12:00:00.250000Z","start":"2026-01-31T12:00:00.250000Z"},'
        '"fixed_price_minor":500,"format":"ledger.invoice/1","lines":[{"amount_minor":2,'
        '"billed_units":"5","chargeable":"5","consumed":"7","credits_applied":"0",'
        '"forgiven":"0","free_threshold":2,"meter_id":"sms","unit_price":"0.5"}],'
        '"total_minor":502}'
    )
    assert invoice.canonical_bytes() == expected.encode()
    assert invoice.sha256 == hashlib.sha256(expected.encode()).hexdigest()


def test_whole_second_datetimes_end_in_z_without_fractions() -> None:
    document = json.loads(fold_invoice(CYCLE, PRICE, SPECS, [], cut=0).canonical_bytes())
    assert document["cycle"] == {"start": "2026-01-31T12:00:00Z", "end": "2026-02-28T12:00:00Z"}


def test_the_order_meters_are_priced_in_does_not_change_the_bytes() -> None:
    reversed_price = UsagePrice.of("USD", 1000, Interval.MONTH, 1, reversed(PRICE.meters))
    one = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42)
    other = fold_invoice(CYCLE, reversed_price, SPECS, WORKED, cut=42)
    assert one.canonical_bytes() == other.canonical_bytes()


def test_a_late_event_is_billed_as_an_adjustment_on_the_next_invoice() -> None:
    finalized = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42)
    late = (CYCLE.end - timedelta(hours=1), "late-1", "image.generated", {"quality": "hd"})
    refolded = fold_invoice(CYCLE, PRICE, SPECS, [*WORKED, late], cut=57)
    correction = adjustment(finalized, refolded)
    assert (correction.from_cut, correction.to_cut, correction.total_minor) == (42, 57, 8)
    hd = next(line for line in correction.lines if line.meter_id == "images_hd")
    assert hd == AdjustmentLine("images_hd", Decimal(1), Decimal(1), Decimal(0), Decimal(1), 8)
    following = fold_invoice(NEXT, PRICE, SPECS, WORKED, cut=80, adjustments=[correction])
    assert following.total_minor == 1000 + 8
    assert json.loads(following.canonical_bytes())["adjustments"][0]["to_cut"] == 57


def test_a_void_is_a_negative_adjustment() -> None:
    finalized = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42)
    without_sms = [record for record in WORKED if record[1] != "sms.sent-0"]
    correction = adjustment(finalized, fold_invoice(CYCLE, PRICE, SPECS, without_sms, cut=43))
    assert correction.total_minor == -1
    assert not correction.is_zero


def test_an_unchanged_refold_adjusts_nothing() -> None:
    finalized = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42)
    unrelated = (CYCLE.start, "x", "email.sent", {})
    correction = adjustment(
        finalized, fold_invoice(CYCLE, PRICE, SPECS, [*WORKED, unrelated], cut=50)
    )
    assert correction.is_zero
    assert correction.total_minor == 0


def test_adjustments_compare_one_cycle_at_one_price_forwards() -> None:
    finalized = fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=42)
    with pytest.raises(InvoiceMismatchError):
        adjustment(finalized, fold_invoice(NEXT, PRICE, SPECS, WORKED, cut=50))
    with pytest.raises(InvoiceMismatchError):
        adjustment(finalized, fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=41))
    dearer = UsagePrice.of(
        "USD", 1000, Interval.MONTH, 1, [*PRICE.meters[:4], MeterPrice("sms", Decimal(2))]
    )
    with pytest.raises(InvoiceMismatchError) as caught:
        adjustment(finalized, fold_invoice(CYCLE, dearer, SPECS, WORKED, cut=50))
    assert caught.value.code == "invoice_mismatch"


def test_inputs_that_do_not_match_the_price_are_refused() -> None:
    with pytest.raises(InvoiceMismatchError):
        fold_invoice(CYCLE, PRICE, {"sms": SPECS["sms"]}, WORKED, cut=1)
    with pytest.raises(InvoiceMismatchError):
        fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=1, credits={"unpriced": 5})
    with pytest.raises(InvoiceMismatchError):
        price_cycle(CYCLE, PRICE, {"sms": Decimal(1)}, cut=1)
    with pytest.raises(InvoiceMismatchError):
        fold_invoice(CYCLE, PRICE, SPECS, WORKED, cut=-1)
    euros = Adjustment("EUR", CYCLE.start, CYCLE.end, 1, 2, ())
    with pytest.raises(InvoiceMismatchError):
        fold_invoice(NEXT, PRICE, SPECS, [], cut=3, adjustments=[euros])


# --- laws -----------------------------------------------------------------------------------

NAMES = ["api.call", "image.generated", "storage.used", "sms.sent", "other"]
metadata = st.fixed_dictionaries(
    {},
    optional={
        "quality": st.sampled_from(["standard", "hd", "HD"]),
        "bytes": st.one_of(st.integers(0, 10**11), st.decimals(0, 10**6, places=3)),
    },
)


@st.composite
def usage(draw: st.DrawFn) -> list[UsageRecord]:
    """A customer's events around a cycle: some just outside it, timestamps often shared."""
    seconds = int((CYCLE.end - CYCLE.start).total_seconds())
    offsets = st.one_of(
        st.sampled_from([-1, 0, seconds - 1, seconds]), st.integers(-5, seconds + 5)
    )
    drawn = draw(st.lists(st.tuples(offsets, st.sampled_from(NAMES), metadata), max_size=30))
    return [
        (CYCLE.start + timedelta(seconds=s), f"e{i:02}", name, md)
        for i, (s, name, md) in enumerate(drawn)
    ]


def invoice_of(records: Sequence[UsageRecord], cut: int = 7) -> Invoice:
    return fold_invoice(CYCLE, PRICE, SPECS, records, cut=cut, credits={"api_calls": 3})


@LAWS
@given(usage().flatmap(lambda records: st.tuples(st.just(records), st.permutations(records))))
def test_permuting_the_events_gives_the_same_bytes_and_hash(
    drawn: tuple[list[UsageRecord], list[UsageRecord]],
) -> None:
    records, permuted = drawn
    assert invoice_of(permuted).canonical_bytes() == invoice_of(records).canonical_bytes()
    assert invoice_of(permuted).sha256 == invoice_of(records).sha256


@LAWS
@given(usage(), st.data())
def test_two_halves_arriving_in_either_order_or_at_two_servers_give_the_same_invoice(
    records: list[UsageRecord], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(records)))
    first, second = records[:split], records[split:]
    whole = invoice_of(records).canonical_bytes()
    assert invoice_of(second + first).canonical_bytes() == whole
    one, other = (cycle_tallies(CYCLE, PRICE, SPECS, part) for part in (first, second))
    consumed = {m: one[m].merge(other[m]).result(SPECS[m].aggregation) for m in SPECS}
    merged = price_cycle(CYCLE, PRICE, consumed, cut=7, credits={"api_calls": 3})
    assert merged.canonical_bytes() == whole


@LAWS
@given(usage())
def test_the_fold_reads_only_the_events_within_the_cycle(records: list[UsageRecord]) -> None:
    within = [r for r in records if CYCLE.start <= r[0] < CYCLE.end]
    assert invoice_of(records) == invoice_of(within)
    for meter_id, spec in SPECS.items():
        assert invoice_of(records).line(meter_id).consumed == fold(spec, within)


numbers = st.one_of(st.integers(-50, 10**6), st.decimals(-50, 10**4, places=2))


@LAWS
@pytest.mark.parametrize("kind", list(AggregationKind))
@given(
    values=st.lists(st.tuples(st.integers(0, 3), numbers), max_size=20),
    split=st.integers(0, 20),
    credits=st.integers(0, 5),
)
def test_the_adjustment_is_the_later_fold_minus_the_earlier_for_every_aggregation(
    kind: AggregationKind, values: list[tuple[int, int | Decimal]], split: int, credits: int
) -> None:
    spec = MeterSpec.parse("m", {"type": kind.value, "key": None if kind == "count" else "n"}, None)
    price = UsagePrice.of("USD", 100, Interval.MONTH, 1, [MeterPrice.parse("m", "0.37", 2)])
    records = [
        (CYCLE.start + timedelta(seconds=s), f"e{i:02}", "m", {"n": n})
        for i, (s, n) in enumerate(values)
    ]

    def at_cut(part: list[UsageRecord], cut: int) -> Invoice:
        return fold_invoice(CYCLE, price, {"m": spec}, part, cut=cut, credits={"m": credits})

    old, new = at_cut(records[:split], 1), at_cut(records, 2)
    correction = adjustment(old, new)
    (before,), (after,), (delta,) = old.lines, new.lines, correction.lines
    assert after.consumed == fold(spec, records)
    for name in ("consumed", "chargeable", "credits_applied", "billed_units", "amount_minor"):
        assert getattr(before, name) + getattr(delta, name) == getattr(after, name)
    assert old.total_minor + correction.total_minor == new.total_minor
    # A void, the other way round: the fold without the late events, minus the full one.
    assert adjustment(new, at_cut(records[:split], 3)).total_minor == -correction.total_minor


def test_for_max_the_adjustment_is_not_the_fold_of_the_late_events_alone() -> None:
    spec = MeterSpec.parse("m", {"type": "max", "key": "n"}, None)
    price = UsagePrice.of("USD", 0, Interval.MONTH, 1, [MeterPrice.parse("m", "1", 0)])
    early = [(CYCLE.start, "a", "m", {"n": 10})]
    late = [(CYCLE.start, "b", "m", {"n": 12})]
    old = fold_invoice(CYCLE, price, {"m": spec}, early, cut=1)
    new = fold_invoice(CYCLE, price, {"m": spec}, early + late, cut=2)
    assert adjustment(old, new).total_minor == 2
    assert fold_invoice(CYCLE, price, {"m": spec}, late, cut=2).total_minor == 12
