"""Chart presentation: the colours things are drawn in, and the Chart.js JSON of static/js/charts.js.

Nothing here reads the database: the page reads (dashboards.selectors) hand it buckets and
numbers, and this module shapes them into series, slices and chart specs.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from accounts.models import Team
from metering import selectors as metering
from metering.models import Project, ServiceType

# Shown for usage without a project or team, and for the series folded into "Others".
NEUTRAL_COLOUR = "#98a2b3"
# static/js/charts.js's palette without its grey (NEUTRAL_COLOUR's), for teams and projects nobody gave a colour.
PALETTE = ("#4f46e5", "#0d9488", "#f59e0b", "#db2777", "#0284c7", "#7c3aed", "#65a30d", "#ea580c")
_DEFAULT_COLOURS = {Team: Team._meta.get_field("colour").default, Project: Project._meta.get_field("colour").default}

# Service types keep one colour on every chart, as teams and projects keep theirs.
SERVICE_TYPE_COLOURS = {
    ServiceType.TEXT_GENERATION: "#4f46e5",
    ServiceType.AGENT: "#0d9488",
    ServiceType.EMBEDDING: "#d97706",
    ServiceType.SPEECH_TO_TEXT: "#db2777",
    ServiceType.TEXT_TO_SPEECH: "#0284c7",
    ServiceType.IMAGE: "#65a30d",
}
SERVICE_TYPE_LABELS = dict(ServiceType.choices)
TOKEN_COLOURS = {"cached": "#0d9488", "fresh": "#4f46e5", "output": "#f59e0b"}


def colour_of(model, pk: int, colour: str) -> str:
    """The colour a team or project is drawn in, the same on every page: its own, or, while it
    still has the default one that ingestion gives every new team and project (so all of them
    would look alike), a palette colour picked by its id."""
    if colour and colour.lower() != _DEFAULT_COLOURS[model]:
        return colour
    return PALETTE[pk % len(PALETTE)]


# --- Buckets -------------------------------------------------------------------------------------

INTERVAL_LABELS = {"5m": "5 min", "1h": "Hour", "6h": "6 hours", "day": "Day", "week": "Week"}
_TIME_UNITS = {"5m": "minute", "1h": "hour", "6h": "hour", "day": "day", "week": "week"}
MAX_CHART_POINTS = 400


def chart_interval(start: datetime, end: datetime, asked: str | None = None) -> str:
    """The bucket of a page's charts: what the URL asks for, else per day.

    The sections are "per day" in the reference product, and whole days are what the
    daily rollups answer; a period of two days or less is drawn per hour instead.
    """
    if asked:
        return asked
    return "day" if end - start > timedelta(days=2) else "1h"


def interval_choices(start: datetime, end: datetime, current: str) -> list[str]:
    """The intervals worth offering for a period: between 2 and MAX_CHART_POINTS bars."""
    span = end - start
    choices = [i for i in metering.INTERVALS if 2 <= span / metering.INTERVAL_LENGTHS[i] <= MAX_CHART_POINTS]
    return choices if current in choices else sorted({*choices, current}, key=metering.INTERVALS.index)


def bucket_labels(buckets: metering.Buckets) -> list[str]:
    """Wall-clock starts in the org's zone without an offset, as charts.js wants them."""
    whole_days = buckets.interval in ("day", "week")
    return [s.strftime("%Y-%m-%d" if whole_days else "%Y-%m-%dT%H:%M") for s in buckets.starts[:-1]]


# --- Series over time ----------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    colour: str
    values: list
    total: object = 0


def chart_spec(buckets: metering.Buckets, series: Sequence[Series], *, kind: str = "stacked-bar", **options) -> dict:
    """The JSON of one chart over `buckets` (see the top of static/js/charts.js)."""
    return {
        "kind": kind,
        "x": "time",
        "unit": _TIME_UNITS[buckets.interval],
        "labels": bucket_labels(buckets),
        "datasets": [{"label": s.label, "colour": s.colour, "data": s.values} for s in series],
        **options,
    }


def top_series(per_key: dict, totals: dict, label_of: Callable, colour_of: Callable, n: int, top: int, others: str):
    """The `top` biggest series by total, then everything else added up as one."""
    keys = sorted(per_key, key=lambda k: (-totals[k], str(label_of(k))))
    series = [Series(label_of(k), colour_of(k), per_key[k], totals[k]) for k in keys[:top]]
    if len(keys) > top:
        rest = [sum(per_key[k][i] for k in keys[top:]) for i in range(n)]
        series.append(Series(others, NEUTRAL_COLOUR, rest, sum(totals[k] for k in keys[top:])))
    return series


def token_kinds(cached: list, fresh: list, output: list) -> list[Series]:
    """Cached input, fresh input and output tokens per bucket as three series (input = cached + fresh)."""
    return [
        Series("Cached input", TOKEN_COLOURS["cached"], cached, sum(cached)),
        Series("Fresh input", TOKEN_COLOURS["fresh"], fresh, sum(fresh)),
        Series("Output", TOKEN_COLOURS["output"], output, sum(output)),
    ]


# --- Parts of a whole ----------------------------------------------------------------------------


@dataclass
class Slice:
    """One part of a whole: a doughnut slice, or a horizontal bar in a ranked list."""

    label: str
    colour: str
    value: object
    share: float = 0.0  # percent of the whole (slices) or of the biggest (bars)
    detail: object = None  # what else a list shows of it: a count, (input, output) tokens, ...
    key: str = ""


def with_shares(slices: list[Slice], whole=None) -> list[Slice]:
    """`slices` with each one's share of `whole` (by default, of their sum) filled in."""
    whole = whole if whole is not None else sum(s.value for s in slices)
    for s in slices:
        s.share = round(float(s.value) * 100 / float(whole), 1) if whole else 0.0
    return slices


def doughnut_spec(slices: Sequence[Slice], *, currency: str, **options) -> dict:
    return {
        "kind": "doughnut",
        "labels": [s.label for s in slices],
        "datasets": [{"label": "Cost", "data": [s.value for s in slices], "colours": [s.colour for s in slices]}],
        "money": True,
        "currency": currency,
        "legend": False,
        **options,
    }
