"""Query parameters of the dashboard pages beyond the filters (which metering.forms.AnalyticsForm
parses for the pages and the API alike), and the filter bar those filters are shown in.

Everything a page shows is in its URL, so reload, back and a pasted link give the same view.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property

from django import forms
from django.http import QueryDict
from django.utils import timezone

from dashboards.selectors import FILTER_DIMENSIONS, Option, filter_options
from metering.forms import RANGES

# Parameters that choose the period; the rest of AnalyticsForm's are the dimensions.
TIME_PARAMS = ("range", "month", "start", "end")
# A table's own state: a new question (other filters, another view) starts it afresh.
TABLE_PARAMS = ("sort", "dir", "q", "page")
# Set only by htmx requests for one section of a page; never part of a link.
TRANSIENT_PARAMS = ("section",)


def url_with(path: str, params: QueryDict, *, drop: tuple[str, ...] = (), **changes) -> str:
    """`path` with `params` minus `drop`, with `changes` set (None removes, a list repeats)."""
    query = params.copy()
    for name in (*drop, *TRANSIENT_PARAMS):
        query.pop(name, None)
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        elif isinstance(value, list | tuple):
            query.setlist(name, [str(v) for v in value])
        else:
            query[name] = str(value)
    encoded = query.urlencode()
    return f"{path}?{encoded}" if encoded else path


# --- Tables ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # the row attribute and the `sort` value
    label: str
    numeric: bool = True


@dataclass(frozen=True)
class TableState:
    sort: str
    descending: bool
    q: str
    page: int


class TableForm(forms.Form):
    """sort, dir, q and page of one table. Values it does not know fall back to the defaults
    rather than failing the page: a stale bookmark still shows the table."""

    sort = forms.CharField(required=False, max_length=40)
    dir = forms.ChoiceField(choices=[("asc", "ascending"), ("desc", "descending")], required=False)
    q = forms.CharField(required=False, max_length=200, strip=True)
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    def __init__(self, data, *, columns: tuple[Column, ...], default_sort: str):
        super().__init__(data)
        self.columns = columns
        self.default_sort = default_sort

    def state(self) -> TableState:
        self.is_valid()
        data = {name: self.cleaned_data.get(name) for name in self.fields}
        sort = data["sort"] if data["sort"] in {c.key for c in self.columns} else self.default_sort
        column = next(c for c in self.columns if c.key == sort)
        descending = data["dir"] == "desc" if data["dir"] else column.numeric
        return TableState(sort, descending, data["q"] or "", data["page"] or 1)


@dataclass(frozen=True)
class Header:
    column: Column
    aria_sort: str  # "ascending", "descending", or "" when not the sorted column
    url: str
    action: str  # what pressing it does, for screen readers

    @property
    def key(self) -> str:
        return self.column.key

    @property
    def label(self) -> str:
        return self.column.label

    @property
    def numeric(self) -> bool:
        return self.column.numeric


def table_headers(path: str, params: QueryDict, columns: tuple[Column, ...], state: TableState) -> list[Header]:
    """A sort link per column: the sorted one flips its direction, another starts numbers
    highest first and text from A."""
    headers = []
    for column in columns:
        if column.key == state.sort:
            aria = "descending" if state.descending else "ascending"
            descending = not state.descending
        else:
            aria, descending = "", column.numeric
        url = url_with(path, params, drop=("page",), sort=column.key, dir="desc" if descending else "asc")
        action = f"Sort by {column.label.lower()}, {'highest' if descending else 'lowest'} first"
        if not column.numeric:
            action = f"Sort by {column.label.lower()}, {'Z to A' if descending else 'A to Z'}"
        headers.append(Header(column, aria, url, action))
    return headers


# --- The filter bar ----------------------------------------------------------------------------------

PRESETS = (("24h", "24h"), ("7d", "7d"), ("14d", "14d"), ("30d", "30d"), ("month", "Month"))


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    detail: str
    colour: str
    checked: bool


@dataclass(frozen=True)
class DimensionFilter:
    name: str
    label: str
    choices: list[Choice]

    @property
    def selected(self) -> list[Choice]:
        return [c for c in self.choices if c.checked]


@dataclass(frozen=True)
class Chip:
    dimension: str
    label: str
    remove_url: str


@dataclass(frozen=True)
class Link:
    key: str
    label: str
    url: str
    current: bool = False


class FilterBar:
    """What templates/dashboards/partials/filter_bar.html shows, for one request.

    Options are read lazily, when the template asks: a page's htmx partials never show the
    bar and so never pay for it. Navigating the filters keeps the page's own parameters
    (e.g. `by`) and drops a table's state (TABLE_PARAMS); changing the period also drops
    `interval`, which another period may not allow.
    """

    def __init__(self, request, scope, form, query):
        self.path = request.path
        self.params = request.GET
        self.scope = scope
        self.form = form
        self.query = query
        self.tz = scope.org.tzinfo

    # ---- the period ----

    @cached_property
    def current_preset(self) -> str:
        get = self.params.get
        if get("start") or get("end"):
            return "custom"
        if get("range") == "month" or get("month"):
            return "month"
        return get("range") if get("range") in RANGES else "30d"

    @cached_property
    def presets(self) -> list[Link]:
        return [Link(key, label, self._period_url(range=key), key == self.current_preset) for key, label in PRESETS]

    def _period_url(self, **changes) -> str:
        return url_with(self.path, self.params, drop=(*TIME_PARAMS, *TABLE_PARAMS, "interval"), **changes)

    @cached_property
    def month(self) -> date | None:
        """The first day of the month shown, when the period is a month."""
        if self.current_preset != "month" or self.query is None:
            return None
        return self.query.start.astimezone(self.tz).date().replace(day=1)

    @cached_property
    def month_links(self) -> tuple[Link, Link | None] | None:
        """The previous and next month (None past the current month)."""
        if self.month is None:
            return None
        previous = (self.month - timedelta(days=1)).replace(day=1)
        following = (self.month + timedelta(days=32)).replace(day=1)
        this_month = timezone.now().astimezone(self.tz).date().replace(day=1)

        def link(day):
            return Link(f"{day:%Y-%m}", f"{day:%B %Y}", self._period_url(range="month", month=f"{day:%Y-%m}"))

        return link(previous), (link(following) if following <= this_month else None)

    @cached_property
    def custom_dates(self) -> tuple[str, str]:
        """The custom period as dates for the date inputs (the end date included)."""
        if self.query is None or self.current_preset != "custom":
            return self.params.get("start", "")[:10], self.params.get("end", "")[:10]
        start = self.query.start.astimezone(self.tz)
        end = (self.query.end - timedelta(microseconds=1)).astimezone(self.tz)
        return f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"

    @cached_property
    def period_text(self) -> str:
        """The period in words, in the org's zone: "1 Nov – 30 Nov 2026" or "12 Nov, 09:41 – 19 Nov, 09:41"."""
        if self.query is None:
            return ""
        start, end = self.query.start.astimezone(self.tz), self.query.end.astimezone(self.tz)
        if _midnight(start) and _midnight(end):
            last = end - timedelta(days=1)
            first = f"{start:%-d %b}" if start.year == last.year else f"{start:%-d %b %Y}"
            return f"{start:%-d %b %Y}" if start.date() == last.date() else f"{first} – {last:%-d %b %Y}"
        fmt = "%-d %b, %H:%M" if start.year == end.year else "%-d %b %Y, %H:%M"
        return f"{start:{fmt}} – {end:{fmt}}"

    # ---- the dimensions ----

    @cached_property
    def selected(self) -> dict[str, list[str]]:
        return {name: [v.strip() for v in self.params.getlist(name) if v.strip()] for name, _ in FILTER_DIMENSIONS}

    @cached_property
    def dimensions(self) -> list[DimensionFilter]:
        start = self.query.start if self.query else None
        end = self.query.end if self.query else None
        options = filter_options(self.scope, start=start, end=end)
        result = []
        for name, label in FILTER_DIMENSIONS:
            wanted = self.selected[name]
            fold = str.lower if name == "user" else str  # emails match whatever their case
            chosen = {fold(v) for v in wanted}
            offered = options[name]
            known = {fold(o.value) for o in offered}
            # A value in the URL that is not offered (a typo, no usage this period, out of scope)
            # stays visible, checked, so it can be seen and cleared.
            extra = [Option(v, v) for v in wanted if fold(v) not in known]
            choices = [
                Choice(o.value, o.label, o.detail, o.colour, fold(o.value) in chosen) for o in [*offered, *extra]
            ]
            result.append(DimensionFilter(name, label, choices))
        return result

    @cached_property
    def chips(self) -> list[Chip]:
        """The chosen values, each with a link that removes it."""
        chips = []
        for dimension in self.dimensions:
            for choice in dimension.selected:
                rest = [v for v in self.selected[dimension.name] if v != choice.value]
                url = url_with(self.path, self.params, drop=TABLE_PARAMS, **{dimension.name: rest or None})
                chips.append(Chip(dimension.label, choice.label, url))
        return chips

    @cached_property
    def clear_url(self) -> str:
        names = tuple(name for name, _ in FILTER_DIMENSIONS)
        return url_with(self.path, self.params, drop=(*names, *TABLE_PARAMS))

    # ---- hidden inputs that carry the rest of the URL through each form ----

    def _pairs(self, names) -> list[tuple[str, str]]:
        return [(name, value) for name in names for value in self.params.getlist(name) if value]

    @cached_property
    def kept(self) -> tuple[str, ...]:
        """The page's own parameters (not filters, not table state)."""
        known = {*TIME_PARAMS, *TABLE_PARAMS, *TRANSIENT_PARAMS, *(name for name, _ in FILTER_DIMENSIONS)}
        return tuple(name for name in self.params if name not in known)

    @cached_property
    def filters_form_hidden(self) -> list[tuple[str, str]]:
        """The dimensions form carries the period and the page's own parameters."""
        return self._pairs((*TIME_PARAMS, *self.kept))

    @cached_property
    def period_form_hidden(self) -> list[tuple[str, str]]:
        """The custom period form carries the dimensions and the page's own parameters but `interval`."""
        names = [name for name, _ in FILTER_DIMENSIONS]
        return self._pairs((*names, *(k for k in self.kept if k != "interval")))


def _midnight(moment: datetime) -> bool:
    return (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)
