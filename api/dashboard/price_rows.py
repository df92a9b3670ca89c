"""The product form's rows as submitted: numbered fields, the buttons that add and
remove rows, and whether a POST carries every field the form always sends.

Rows are numbered fields: ``m0.price_per_unit`` (a meter price), ``m0.t1.up_to`` (its
tier), ``m0.g2.value`` (its price for one metadata value), ``m0.g2.t0.up_to`` (that
value's tier), ``c0.credits_amount`` (a credit entitlement attached). A group (a value
priced apart) has a model of its own, as the meter line does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from application.ledger import MAX_ATTACHMENTS
from domain.price_model import MAX_TIERS
from domain.pricing import MAX_GROUPS, MAX_METERS

FORM_MARKER = "product"  # the hidden ``form`` field every rendered product form sends
_ROW_KEY = re.compile(r"(m|c)([0-9]{1,2})\.(?:(t|g)([0-9]{1,2})\.)?(?:t([0-9]{1,2})\.)?([a-z_]+)")
_INDEX = re.compile(r"[0-9]{1,3}")
TOP_FIELDS = (
    "form",
    "name",
    "description",
    "tax_category",
    "currency",
    "fixed_price",
    "payment_frequency_count",
    "payment_frequency_interval",
    "subscription_period_count",
    "subscription_period_interval",
)
"""What a browser always sends: a POST without one of them is not the form's."""


@dataclass(slots=True)
class TierRow:
    up_to: str = ""
    price_per_unit: str = ""
    flat_fee: str = ""


@dataclass(slots=True)
class GroupRow:
    value: str = ""
    pricing_model: str = "per_unit"
    price_per_unit: str = ""
    package_size: str = ""
    package_price: str = ""
    package_rounding: str = "up"
    tiers: list[TierRow] = field(default_factory=list)

    @property
    def is_tiered(self) -> bool:
        return self.pricing_model in ("graduated", "volume")


@dataclass(slots=True)
class MeterRow:
    meter_id: str = ""
    pricing_model: str = "per_unit"
    price_per_unit: str = ""
    free_threshold: str = "0"
    package_size: str = ""
    package_price: str = ""
    package_rounding: str = "up"
    minimum_amount: str = ""
    maximum_amount: str = ""
    group_by: str = ""
    credit_entitlement_id: str = ""
    meter_units_per_credit: str = ""
    tiers: list[TierRow] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)

    @property
    def is_tiered(self) -> bool:
        return self.pricing_model in ("graduated", "volume")


@dataclass(slots=True)
class CreditRow:
    """An attachment; every rule of it is shown (empty or "": the entitlement's own)."""

    credit_entitlement_id: str = ""
    credits_amount: str = ""
    low_balance_threshold_percent: str = ""
    trial_credits: str = ""
    trial_credits_expire_after_trial: str = "no"
    proration_behavior: str = "prorate"
    currency: str = ""
    price_per_unit: str = ""
    overage_enabled: str = ""
    overage_behavior: str = ""
    overage_limit: str = ""
    rollover_enabled: str = ""
    rollover_percentage: str = ""
    max_rollover_count: str = ""
    rollover_timeframe_count: str = ""
    rollover_timeframe_interval: str = ""
    expires_after_days: str = ""


_ROW_FIELDS: dict[str, tuple[str, ...]] = {
    "m": (
        "meter_id",
        "pricing_model",
        "free_threshold",
        "minimum_amount",
        "maximum_amount",
        "group_by",
        "credit_entitlement_id",
        "meter_units_per_credit",
    ),
    "g": ("value", "pricing_model"),
    "c": tuple(f.name for f in fields(CreditRow)),
}
"""The fields each row always shows, whatever its model."""


@dataclass(slots=True)
class ProductForm:
    form: str = FORM_MARKER
    name: str = ""
    description: str = ""
    tax_category: str = "saas"
    currency: str = "USD"
    fixed_price: str = "0.00"
    tax_inclusive: str = ""
    payment_frequency_count: str = "1"
    payment_frequency_interval: str = "Month"
    subscription_period_count: str = "20"
    subscription_period_interval: str = "Year"
    example_quantity: str = "2500"
    meters: list[MeterRow] = field(default_factory=lambda: [MeterRow()])
    credits: list[CreditRow] = field(default_factory=list)

    def field_names(self) -> set[str]:
        """Every input the form shows: where an error may be written."""
        names = {f.name for f in fields(self)} - {"meters", "credits"}
        for i, meter in enumerate(self.meters):
            names |= {f"m{i}.{f.name}" for f in fields(meter)}
            names |= _tier_names(f"m{i}.", meter.tiers)
            for j, group in enumerate(meter.groups):
                names |= {f"m{i}.g{j}.{f.name}" for f in fields(GroupRow)}
                names |= _tier_names(f"m{i}.g{j}.", group.tiers)
        for k in range(len(self.credits)):
            names |= {f"c{k}.{f.name}" for f in fields(CreditRow)}
        return names


def _tier_names(prefix: str, tiers: list[TierRow]) -> set[str]:
    return {f"{prefix}t{j}.{f.name}" for j in range(len(tiers)) for f in fields(TierRow)}


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _rows(found: Mapping[int, dict[str, str]], kind: type[Any], limit: int) -> list[Any]:
    names = {f.name for f in fields(kind) if f.name not in ("tiers", "groups")}
    return [
        kind(**{k: v for k, v in found[i].items() if k in names}) for i in sorted(found)[:limit]
    ]


Rows = dict[int, dict[str, str]]


def parse_form(data: Mapping[str, str]) -> ProductForm:
    """The form as submitted (unknown and malformed names are ignored)."""
    top = {f.name for f in fields(ProductForm)} - {"meters", "credits"}
    form = ProductForm(meters=[], tax_inclusive="")
    for name in top & set(data):
        setattr(form, name, _text(data[name]))
    meters: Rows = {}
    tiers: dict[int, Rows] = {}
    groups: dict[int, Rows] = {}
    group_tiers: dict[tuple[int, int], Rows] = {}
    credits: Rows = {}
    for key, value in data.items():
        match = _ROW_KEY.fullmatch(key)
        if match is None:
            continue
        kind, index, sub, sub_index, tier, name = match.groups()
        i, text = int(index), _text(value)
        if kind == "c":
            if sub is None and tier is None:
                credits.setdefault(i, {})[name] = text
            continue
        meters.setdefault(i, {})
        if sub is None and tier is None:
            meters[i][name] = text
        elif sub == "t" and tier is None:
            tiers.setdefault(i, {}).setdefault(int(sub_index), {})[name] = text
        elif sub == "g" and tier is None:
            groups.setdefault(i, {}).setdefault(int(sub_index), {})[name] = text
        elif sub == "g":
            rows = group_tiers.setdefault((i, int(sub_index)), {})
            rows.setdefault(int(tier), {})[name] = text
            groups.setdefault(i, {}).setdefault(int(sub_index), {})
    for i in sorted(meters)[:MAX_METERS]:
        row: MeterRow = _rows({0: meters[i]}, MeterRow, 1)[0]
        row.tiers = _rows(tiers.get(i, {}), TierRow, MAX_TIERS)
        found = groups.get(i, {})
        row.groups = _rows(found, GroupRow, MAX_GROUPS)
        for group, j in zip(row.groups, sorted(found), strict=False):
            group.tiers = _rows(group_tiers.get((i, j), {}), TierRow, MAX_TIERS)
        form.meters.append(row)
    form.credits = _rows(credits, CreditRow, MAX_ATTACHMENTS)
    return form


def incomplete(data: Mapping[str, str], *, rows: bool = True) -> bool:
    """Whether the POST lacks a field the rendered form always sends (of the form, or with
    ``rows``, of each of its rows): then it is not the form (a hand-made request) and is
    refused rather than read with guessed defaults."""
    if data.get("form") != FORM_MARKER or any(name not in data for name in TOP_FIELDS):
        return True
    if not rows:
        return False
    for key in data:
        match = _ROW_KEY.fullmatch(key)
        if match is None:
            continue
        kind, index, sub, sub_index, tier, _ = match.groups()
        if sub == "t" or tier is not None:
            continue
        prefix = f"{kind}{index}." if sub is None else f"{kind}{index}.g{sub_index}."
        needed = _ROW_FIELDS["g" if sub == "g" else kind]
        if any(prefix + name not in data for name in needed):
            return True
    return False


def _indexes(where: str) -> list[int]:
    """The row numbers of a button's value: ASCII digits only, a few of them."""
    parts = where.split(":") if where else []
    if not all(_INDEX.fullmatch(part) for part in parts):
        return []
    return [int(part) for part in parts]


def apply_action(form: ProductForm, action: str) -> None:
    """What a row button does: ``add_meter``, ``add_tier:0``, ``remove_group_tier:0:1:2``..."""
    verb, _, where = action.partition(":")
    at = _indexes(where)
    if verb == "add_meter" and len(form.meters) < MAX_METERS:
        form.meters.append(MeterRow())
    elif verb == "add_credit" and len(form.credits) < MAX_ATTACHMENTS:
        form.credits.append(CreditRow())
    elif verb == "remove_credit" and at and at[0] < len(form.credits):
        del form.credits[at[0]]
    elif at and at[0] < len(form.meters):
        _meter_action(form, form.meters[at[0]], verb, at)
    fill_tiers(form)


def _meter_action(form: ProductForm, meter: MeterRow, verb: str, at: list[int]) -> None:
    if verb == "remove_meter":
        del form.meters[at[0]]
    elif verb == "add_tier" and len(meter.tiers) < MAX_TIERS:
        meter.tiers.append(TierRow())
    elif verb == "remove_tier" and len(at) > 1 and at[1] < len(meter.tiers):
        del meter.tiers[at[1]]
    elif verb == "add_group" and len(meter.groups) < MAX_GROUPS:
        meter.groups.append(GroupRow())
    elif verb == "remove_group" and len(at) > 1 and at[1] < len(meter.groups):
        del meter.groups[at[1]]
    elif verb.endswith("group_tier") and len(at) > 1 and at[1] < len(meter.groups):
        tiers = meter.groups[at[1]].tiers
        if verb == "add_group_tier" and len(tiers) < MAX_TIERS:
            tiers.append(TierRow())
        elif verb == "remove_group_tier" and len(at) > 2 and at[2] < len(tiers):
            del tiers[at[2]]


def fill_tiers(form: ProductForm) -> bool:
    """Give a tiered model without tiers two to fill in (a bounded one, an open one)."""
    rows: list[MeterRow | GroupRow] = [*form.meters]
    rows += [group for meter in form.meters for group in meter.groups]
    empty = [row for row in rows if row.is_tiered and not row.tiers]
    for row in empty:
        row.tiers = [TierRow(), TierRow()]
    return bool(empty)
