"""Laws of the invoice fold over random meters, prices, cycles and credits (hypothesis).

``tests/unit/test_invoice.py`` checks the same laws over one fixed catalogue
(count and sum meters at fixed prices, one monthly cycle). Here every input is
drawn: cycles of any frequency and anchor, one to four meters of any
aggregation with random filters (the strategies of ``test_meter_laws``), any
supported currency, prices with up to 5 + 12 digits, free thresholds up to
10^18, and credit units. Events cluster on the cycle's boundaries and share
timestamps, so ``last`` is often decided by the event id.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cycles import Cycle, Interval, cycle
from domain.invoice import (
    AdjustmentLine,
    Invoice,
    adjustment,
    cycle_tallies,
    fold_invoice,
    price_cycle,
)
from domain.meter import AggregationKind, MeterSpec, Tally, UsageRecord
from domain.pricing import CURRENCY_EXPONENTS, MeterPrice, UsagePrice, parse_price_per_unit
from tests.unit.test_meter_laws import KEYS, filters, numbers, values

FEW = settings(max_examples=50, deadline=None)
PER_KIND = settings(max_examples=20, deadline=None)
KINDS = list(AggregationKind)
TICK = timedelta(microseconds=1)


@st.composite
def cycles(draw: st.DrawFn) -> Cycle:
    anchor = draw(
        st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
    )
    interval = draw(st.sampled_from(list(Interval)))
    return cycle(anchor, interval, draw(st.integers(1, 3)), draw(st.integers(0, 3)))


@st.composite
def meter_specs(draw: st.DrawFn, kind: AggregationKind | None = None) -> MeterSpec:
    kind = kind or draw(st.sampled_from(KINDS))
    key = draw(st.sampled_from(KEYS)) if kind.needs_key() else None
    filter_ = draw(st.one_of(st.none(), filters()))
    return MeterSpec.parse("api", {"type": kind.value, "key": key}, filter_)


price_texts = st.builds(
    lambda whole, fraction: f"{whole}.{fraction}" if fraction else str(whole),
    st.one_of(st.integers(0, 9), st.integers(0, 99_999)),
    st.one_of(st.just(""), st.from_regex(r"[0-9]{1,12}", fullmatch=True)),
)
thresholds = st.one_of(st.just(0), st.integers(0, 5), st.integers(0, 10**18))
# Key "a" is always a number (small ones often, so free thresholds matter); "b" and
# "c" may be missing or hold any kind of value.
metadata = st.fixed_dictionaries(
    {KEYS[0]: st.one_of(st.integers(0, 20), numbers)},
    optional=dict.fromkeys(KEYS[1:], values),
)
credit_units = st.one_of(st.integers(0, 5), st.decimals(0, 10, places=3))


@st.composite
def catalogues(
    draw: st.DrawFn, kind: AggregationKind | None = None
) -> tuple[dict[str, MeterSpec], UsagePrice, dict[str, Decimal | int]]:
    """Meters (the first of ``kind`` when given), their price and some credit units."""
    count = draw(st.integers(1, 4))
    specs = {f"m{i}": draw(meter_specs(kind if i == 0 else None)) for i in range(count)}
    priced = [
        MeterPrice(meter_id, parse_price_per_unit(draw(price_texts)), draw(thresholds))
        for meter_id in specs
    ]
    price = UsagePrice.of(
        draw(st.sampled_from(sorted(CURRENCY_EXPONENTS))),
        draw(st.integers(0, 10**6)),
        Interval.MONTH,
        1,
        draw(st.permutations(priced)),
    )
    credits = draw(st.dictionaries(st.sampled_from(sorted(specs)), credit_units))
    return specs, price, credits


def near(around: Cycle) -> st.SearchStrategy[datetime]:
    """Moments on and just beside the cycle's bounds, or anywhere within a margin."""
    span = around.end - around.start
    return st.one_of(
        st.integers(0, 99).map(lambda percent: around.start + span * percent / 100),
        st.sampled_from([around.start, around.end - TICK, around.start - TICK, around.end]),
        st.integers(-10, 110).map(lambda percent: around.start + span * percent / 100),
    )


def outside(around: Cycle) -> st.SearchStrategy[datetime]:
    """Moments before the cycle starts or from its end on."""
    span = around.end - around.start
    return st.one_of(
        st.sampled_from([around.start - TICK, around.end]),
        st.integers(1, 100).map(lambda percent: around.start - span * percent / 100),
        st.integers(0, 100).map(lambda percent: around.end + span * percent / 100),
    )


@st.composite
def usage(
    draw: st.DrawFn, moments: st.SearchStrategy[datetime], prefix: str = "e", min_size: int = 1
) -> list[UsageRecord]:
    pool = draw(st.lists(moments, min_size=1, max_size=4))  # few moments: shared timestamps
    drawn = draw(
        st.lists(
            st.tuples(st.sampled_from(pool), st.sampled_from(["api", "api", "other"]), metadata),
            min_size=min_size,
            max_size=25,
        )
    )
    return [(at, f"{prefix}{i:02}", name, md) for i, (at, name, md) in enumerate(drawn)]


def within(records: list[UsageRecord], period: Cycle) -> list[UsageRecord]:
    return [r for r in records if period.start <= r[0] < period.end]


@st.composite
def scenarios(
    draw: st.DrawFn, kind: AggregationKind | None = None
) -> tuple[Cycle, dict[str, MeterSpec], UsagePrice, dict[str, Decimal | int], list[UsageRecord]]:
    period = draw(cycles())
    specs, price, credits = draw(catalogues(kind))
    return period, specs, price, credits, draw(usage(near(period)))


@FEW
@given(scenarios(), st.randoms(use_true_random=False))
def test_any_order_of_the_events_gives_the_same_bytes_and_hash(scenario, random) -> None:
    period, specs, price, credits, records = scenario
    shuffled = list(records)
    random.shuffle(shuffled)
    one = fold_invoice(period, price, specs, records, cut=9, credits=credits)
    other = fold_invoice(period, price, specs, shuffled, cut=9, credits=credits)
    assert other.canonical_bytes() == one.canonical_bytes()
    assert other.sha256 == one.sha256
    # One line per meter, sorted by id, whatever order the price lists the meters in.
    assert [line.meter_id for line in one.lines] == sorted(specs)


@FEW
@given(scenarios(), st.data())
def test_events_split_across_servers_fold_and_merge_into_the_same_invoice(scenario, data) -> None:
    """Each part a server's (or an ingestion order's) share; any number of parts, 2 to 4."""
    period, specs, price, credits, records = scenario
    servers = data.draw(st.integers(2, 4))
    owner = data.draw(st.lists(st.integers(0, servers - 1), min_size=len(records)))
    parts = [[r for r, o in zip(records, owner, strict=False) if o == s] for s in range(servers)]
    whole = fold_invoice(period, price, specs, records, cut=3, credits=credits)
    union = [record for part in reversed(parts) for record in part]
    assert fold_invoice(period, price, specs, union, cut=3, credits=credits).sha256 == whole.sha256
    tallies = [cycle_tallies(period, price, specs, part) for part in parts]
    for merge_order in (tallies, tallies[::-1]):
        consumed = {
            meter_id: reduce(Tally.merge, (t[meter_id] for t in merge_order), Tally()).result(
                spec.aggregation
            )
            for meter_id, spec in specs.items()
        }
        merged = price_cycle(period, price, consumed, cut=3, credits=credits)
        assert merged.canonical_bytes() == whole.canonical_bytes()


DELTAS = [f.name for f in fields(AdjustmentLine) if f.name != "meter_id"]


def assert_adjustment_law(old: Invoice, new: Invoice) -> None:
    change = adjustment(old, new)
    assert (change.from_cut, change.to_cut) == (old.cut, new.cut)
    assert old.total_minor + change.total_minor == new.total_minor
    assert [line.meter_id for line in change.lines] == [line.meter_id for line in new.lines]
    for delta, before, after in zip(change.lines, old.lines, new.lines, strict=True):
        for name in DELTAS:
            assert getattr(delta, name) == getattr(after, name) - getattr(before, name), name


@PER_KIND
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_old_invoice_plus_adjustment_is_the_new_invoice_for_every_aggregation(
    kind: AggregationKind, data
) -> None:
    period, specs, price, credits, early = data.draw(scenarios(kind))
    # Late events may share an early event's timestamp; their ids sort before or after.
    moments = st.one_of(st.sampled_from([r[0] for r in early]), near(period))
    prefix = data.draw(st.sampled_from(["a-late", "z-late"]))
    late = data.draw(usage(moments, prefix=prefix, min_size=0))
    cut_a = data.draw(st.integers(0, 100))
    cut_b = cut_a + data.draw(st.integers(1, 100))
    old = fold_invoice(period, price, specs, early, cut=cut_a, credits=credits)
    new = fold_invoice(period, price, specs, early + late, cut=cut_b, credits=credits)
    assert_adjustment_law(old, new)
    if not within(late, period):
        assert adjustment(old, new).is_zero


@PER_KIND
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_no_late_events_or_only_ones_outside_the_cycle_adjust_nothing(
    kind: AggregationKind, data
) -> None:
    period, specs, price, credits, early = data.draw(scenarios(kind))
    late = data.draw(usage(outside(period), prefix="late", min_size=0))
    old = fold_invoice(period, price, specs, early, cut=5, credits=credits)
    for arrived in ([], late):
        new = fold_invoice(period, price, specs, early + arrived, cut=8, credits=credits)
        change = adjustment(old, new)
        assert change.is_zero
        assert change.total_minor == 0
        assert all(getattr(line, name) == 0 for line in change.lines for name in DELTAS)
        assert new.lines == old.lines
