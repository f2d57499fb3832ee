"""Formatting for the dashboards: `{% load tally %}`.

The filters are deterministic on purpose: they never consult the active
locale (django.contrib.humanize does, and `USE_THOUSAND_SEPARATOR` would too),
so a number looks the same in every page, test and screenshot, and the same
as `static/js/charts.js` prints it in chart tooltips.

They take what the query layer returns (int, Decimal, or money as a decimal
string from JSON) and fail quietly the way Django's own filters do: None
renders as "", anything unparseable comes back unchanged.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.utils.html import format_html

from metering.pricing import format_money

register = template.Library()

# The dashboard pages, in navigation order: (URL name, label). Each URL takes `org_slug`.
DASHBOARD_PAGES = (
    ("overview", "Overview"),
    ("usage", "Usage"),
    ("analytics", "Analytics"),
    ("agents", "Agents"),
    ("resources", "Resources"),
)

# Currencies printed with a leading symbol; every other code follows the amount ("1,234.56 GBP").
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€"}

CENT = Decimal("0.01")
TENTH = Decimal("0.1")
_COMPACT_UNITS = ((Decimal(10**3), "K"), (Decimal(10**6), "M"), (Decimal(10**9), "B"), (Decimal(10**12), "T"))


def _to_decimal(value) -> Decimal | None:
    """A Decimal for int, Decimal, str and float input (floats through str, so 0.1 stays 0.1); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


@register.filter
def thousands(value):
    """1234567 -> "1,234,567"; Decimal("1234.50") -> "1,234.50" (its own decimals kept)."""
    number = _to_decimal(value)
    if number is None:
        return "" if value is None else value
    return format(number, ",f")


@register.filter
def compact(value):
    """999 -> "999", 1234 -> "1.2K", 1_234_567 -> "1.2M", 1000 -> "1K"; one decimal, rounded half up.

    A number that rounds up to the next unit moves to it (999_950 -> "1M", not "1000K").
    Below 1,000 a fraction keeps one decimal (12.345 -> "12.3").
    """
    number = _to_decimal(value)
    if number is None:
        return "" if value is None else value
    sign = "-" if number < 0 else ""
    number = abs(number)
    scaled, suffix = number.quantize(TENTH, rounding=ROUND_HALF_UP), ""
    for threshold, unit in _COMPACT_UNITS:
        if scaled < 1000:
            break
        scaled, suffix = (number / threshold).quantize(TENTH, rounding=ROUND_HALF_UP), unit
    if scaled == 0:
        sign = ""
    return sign + format(scaled, ",f").removesuffix(".0") + suffix


def _with_currency(amount: str, currency: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"


@register.filter
def exact_money(value):
    """A query-layer Decimal as the API writes it, for data-value hooks: '12.50', '0.0012345'."""
    return "" if value is None else format_money(value)


@register.filter
def money(value, currency="USD"):
    """Decimal("1234.5") with "USD" -> "$1,234.50"; "EUR" -> "€1,234.50"; "GBP" -> "1,234.50 GBP".

    Always two decimals, rounded half up. A cost too small to show as a cent still is one, so it
    reads "<$0.01" rather than "$0.00"; a tiny refund reads "-<$0.01".
    """
    number = _to_decimal(value)
    if number is None:
        return "" if value is None else value
    currency = (str(currency or "USD")).strip().upper()
    sign = "-" if number < 0 else ""
    number = abs(number)
    if 0 < number < CENT:
        return f"{sign}<{_with_currency('0.01', currency)}"
    rounded = number.quantize(CENT, rounding=ROUND_HALF_UP)
    if rounded == 0:
        sign = ""
    return sign + _with_currency(format(rounded, ",f"), currency)


def _fmt(number: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros."""
    return f"{number:.2f}".rstrip("0").rstrip(".") or "0"


@register.simple_tag
def sparkline(values, label="Trend", width=100, height=24):
    """An inline SVG line of `values` (oldest first), stretched to the box the CSS gives it.

    `{% sparkline row.trend %}` or `{% sparkline row.trend label="Requests" %}`. The aria-label
    says what a screen reader cannot see: min, max and the last value. Empty lists and lists of
    zeros draw a flat baseline.
    """
    numbers = [_to_decimal(v) for v in (values or [])]
    numbers = [n if n is not None else Decimal(0) for n in numbers]
    pad = 2  # keeps the stroke inside the box at the top and bottom
    if not numbers:
        summary = f"{label}: no data"
        points = f"0,{height - pad} {width},{height - pad}"
    else:
        low, high = min(numbers), max(numbers)
        summary = f"{label}: min {compact(low)}, max {compact(high)}, last {compact(numbers[-1])}"
        if len(numbers) == 1:
            numbers = numbers * 2
        step = width / (len(numbers) - 1)
        if high == low:
            # Flat: zeros lie on the baseline, a steady non-zero value mid-height.
            ys = [height - pad if high == 0 else height / 2] * len(numbers)
        else:
            ys = [height - pad - float((n - low) / (high - low)) * (height - 2 * pad) for n in numbers]
        coordinates = [f"{_fmt(i * step)},{_fmt(y)}" for i, y in enumerate(ys)]
        points = " ".join(coordinates)
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" aria-label="{}">'
        '<polyline points="{}" fill="none" stroke="currentColor" stroke-width="1.5" '
        'stroke-linejoin="round" stroke-linecap="round" vector-effect="non-scaling-stroke"/></svg>',
        int(width),
        int(height),
        summary,
        points,
    )


@register.simple_tag
def dashboard_pages():
    """The dashboard pages as (URL name, label) pairs: `{% dashboard_pages as pages %}`."""
    return DASHBOARD_PAGES
