"""How the portal writes figures: money with its currency, exact units, UTC dates, SVG bars.

Amounts are integers in the currency's minor unit and are written by the same
``domain.pricing.format_minor`` that the invoices use, grouped by thousands; a
unit price (a decimal in minor units) keeps every digit it has. Charts are
plain geometry computed here and drawn by the template as ``<rect>`` elements:
no script, no inline style, so the page keeps to ``default-src 'self'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

from application.usage_report import UsageWindow
from domain.pricing import format_minor, minor_unit_exponent

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
CHART_WIDTH = 640
CHART_HEIGHT = 140
CHART_GAP = 2  # pixels between two bars


def money(amount_minor: int, currency: str) -> str:
    """``3000`` USD is ``$30.00``, ``-150`` EUR ``-€1.50``, ``1234`` SEK ``12.34 SEK``."""
    sign = "-" if amount_minor < 0 else ""
    whole, dot, fraction = format_minor(abs(amount_minor), currency).partition(".")
    digits = f"{int(whole):,}{dot}{fraction}"
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency}"


def unit_price(minor: Decimal, currency: str) -> str:
    """A price per unit in minor units, in major units with every digit: 2 USD cents
    is ``$0.02``, 0.5 cents ``$0.005``."""
    major = minor.scaleb(-minor_unit_exponent(currency))
    exponent = major.normalize().as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    places = max(minor_unit_exponent(currency), digits)
    text = f"{abs(major):,.{places}f}"
    symbol = SYMBOLS.get(currency)
    sign = "-" if major < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def quantity(value: Decimal | int) -> str:
    """Exact, grouped by thousands, no exponent: ``2,500``, ``1.25``, ``0``; every digit
    of any size (formatting, not arithmetic: no 28-digit context rounds or fails)."""
    text = f"{Decimal(value):,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 | plural("product")`` is ``1 product``, ``2,000 products``."""
    return f"{quantity(count)} {word if count == 1 else (words or word + 's')}"


def host(url: str) -> str:
    """The host a return link leads to, as the link's text: ``app.example.com``."""
    return urlsplit(url).hostname or url


def moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def day(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%d %b %Y")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # shown on hover: the day and its value
    future: bool  # a day not begun yet: drawn faint


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: str  # the tallest bar's value, the axis' top
    first_day: str
    last_day: str
    per: str = "day"  # the window of one bar: hour, day or month (UTC)


LABELS = {"hour": "%d %b %H:00", "day": "%d %b %Y", "month": "%b %Y"}


def window_label(start: datetime, per: str) -> str:
    """How a chart names a window: ``03 Dec 14:00`` (hour), ``03 Dec 2026``, ``Dec 2026``."""
    return start.astimezone(UTC).strftime(LABELS[per])


def bar_chart(days: Sequence[UsageWindow], unit: str, now: datetime, per: str = "day") -> Chart:
    """One bar per window (a UTC ``hour``, ``day`` or ``month``), heights scaled to the
    busiest (a window of zero or less, a sum of refunds, draws none: its title says its
    value); windows not begun at ``now`` are faint."""
    peak = max((window.value for window in days), default=Decimal(0))
    slot = CHART_WIDTH / max(len(days), 1)
    bars = []
    for index, window in enumerate(days):
        share = min(max(float(window.value / peak), 0.0), 1.0) if peak > 0 else 0.0
        label = window_label(window.start, per)
        height = round(share * CHART_HEIGHT, 2)
        bars.append(
            Bar(
                x=round(index * slot + CHART_GAP / 2, 2),
                y=round(CHART_HEIGHT - height, 2),
                width=round(max(slot - CHART_GAP, 1), 2),
                height=height,
                title=f"{label}: {quantity(window.value)} {unit}".rstrip(),
                future=window.start > now,
            )
        )
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=tuple(bars),
        peak=quantity(peak),
        first_day=window_label(days[0].start, per) if days else "",
        last_day=window_label(days[-1].start, per) if days else "",
        per=per,
    )
