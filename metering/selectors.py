"""The query layer: every read of usage, activity and sessions goes through here.

A question is a `Query` (the viewer's `Scope`, a time range and `Filters`)
plus what to group by and how to bucket time. The range is cut into parts
(`plan`): whole org-local days that are clean are read from a daily rollup,
whole UTC hours of clean days may be read from the hourly rollup, and the
rest (the partial first and last days, days still marked dirty) from the raw
rows. Each part is summed in SQL and the parts are added up here, so answers
are exact and current however stale the rollups are.

Rollups come in grains (metering.models); `_source` picks the smallest one
whose dimensions cover the filters, the group-by and the viewer's scope.
Distinct counts (users, sessions, conversations) union id sets across parts.

A filter selects the rows that carry its dimension: a model filter selects
the usage records of that model and no activity events (events have no
model), so agent runs are 0 under it and sessions are those with such records.
"""

import bisect
import contextlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import BigIntegerField, Count, Exists, F, Func, IntegerField, Model, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Cast

from accounts.access import Scope
from accounts.models import ApiKey, Membership, Role, Tag, Team
from metering.models import (
    ActiveUserDaily,
    ActivityDaily,
    ActivityDailyBy,
    ActivityEvent,
    ActivityHourlyOrg,
    ActivityKind,
    Agent,
    ConversationDaily,
    ConversationDayCount,
    DirtyDay,
    LLMModel,
    Project,
    Repository,
    ResourceDaily,
    ResourceUsage,
    Session,
    SessionDaily,
    UsageDaily,
    UsageDailyBy,
    UsageDailyByTag,
    UsageHourly,
    UsageHourlyBy,
    UsageHourlyOrg,
    UsageMeasures,
    UsageRecord,
)
from metering.pricing import quantize_money
from metering.rollups import ACTIVITY_BY, USAGE_HOURLY_BY, USAGE_MEASURES, day_bounds, integer_sum

DIMENSIONS = ("team", "user", "project", "repository", "agent", "model", "api_key", "tag", "service_type")
MEASURES = UsageMeasures.measure_names()
MONEY_MEASURES = ("cost", "session_cost")
HOUR = timedelta(hours=1)


# --- The question --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """Selected values per dimension: ids, or service type values. A dimension that was
    asked for but matched nothing is present with an empty set: it selects nothing."""

    selected: tuple[tuple[str, frozenset], ...] = ()

    @classmethod
    def of(cls, **dimensions: Iterable | None) -> "Filters":
        unknown = set(dimensions) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"Unknown dimensions: {sorted(unknown)}")
        return cls(tuple(sorted((k, frozenset(v)) for k, v in dimensions.items() if v is not None)))

    def __iter__(self):
        return iter(self.selected)

    @property
    def dims(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.selected)

    @property
    def select_nothing(self) -> bool:
        return any(not values for _, values in self.selected)

    def get(self, name: str) -> frozenset | None:
        return dict(self.selected).get(name)

    def matches(self, dims: Mapping) -> bool:
        """Whether a row with these dimension values (ids; `tag` a list of ids) is selected: the
        filters applied in Python, to rows that never touch the database (Live Mode)."""
        for name, values in self.selected:
            if name == "tag":
                if not values.intersection(dims.get("tag") or ()):
                    return False
            elif dims.get(name) not in values:
                return False
        return True


@dataclass(frozen=True)
class Query:
    scope: Scope
    start: datetime
    end: datetime
    filters: Filters = field(default_factory=Filters)

    @property
    def org(self):
        return self.scope.org


# --- Time buckets --------------------------------------------------------------------------------

INTERVALS = ("5m", "1h", "6h", "day", "week")
MAX_POINTS = 300


def _local_midnight(day: date, tz) -> datetime:
    return datetime.combine(day, time(), tz)


def bucket_starts(org, start: datetime, end: datetime, interval: str) -> list[datetime]:
    """The starts of the buckets covering [start, end), in the org's zone, plus the end of the
    last one. Days and weeks (from Monday) start at local midnight, so a DST day is a 23- or
    25-hour bucket; 6-hour buckets start at local 0, 6, 12 and 18 h; 5-minute and hourly
    buckets are steps of real time from the first local boundary, so they follow the local
    clock across whole-hour DST changes (after Lord Howe's 30-minute one they fall on :30)."""
    tz = org.tzinfo
    local = start.astimezone(tz)
    if interval in ("5m", "1h"):
        step = timedelta(minutes=5) if interval == "5m" else HOUR
        floor = local.replace(
            minute=local.minute - local.minute % 5 if interval == "5m" else 0, second=0, microsecond=0
        )
        first = floor.astimezone(UTC)
        while first + step <= start:  # an ambiguous local time (DST fold) floors too far back
            first += step
        count = -(-(end - first) // step)
        return [(first + i * step).astimezone(tz) for i in range(count + 1)]
    day = local.date() - timedelta(days=local.weekday() if interval == "week" else 0)
    starts = []
    while True:
        if interval == "6h":
            candidates = [datetime.combine(day, time(h), tz) for h in (0, 6, 12, 18)]
        else:
            candidates = [_local_midnight(day, tz)]
        for moment in candidates:
            if moment >= end:
                starts.append(moment)
                return [s for i, s in enumerate(starts) if i + 1 == len(starts) or starts[i + 1] > start]
            starts.append(moment)
        day += timedelta(days=7 if interval == "week" else 1)


INTERVAL_LENGTHS = {"5m": timedelta(minutes=5), "1h": HOUR, "6h": 6 * HOUR, "day": 24 * HOUR, "week": 168 * HOUR}


def interval_for(start: datetime, end: datetime) -> str:
    """DESIGN section 6: 24 h -> 5 min, 7 days -> 1 h, 30 days -> 6 h; otherwise the finest
    interval that keeps a chart within about MAX_POINTS points."""
    for interval in INTERVALS:
        if (end - start) / INTERVAL_LENGTHS[interval] <= MAX_POINTS:
            return interval
    return "week"


@dataclass(frozen=True)
class Buckets:
    starts: tuple[datetime, ...]  # the bucket starts and, last, the end of the last bucket
    interval: str

    @classmethod
    def of(cls, org, start, end, interval) -> "Buckets":
        return cls(tuple(bucket_starts(org, start, end, interval)), interval)

    def index(self, moment: datetime) -> int:
        return bisect.bisect_right(self.starts, moment) - 1

    @property
    def raw_slot_seconds(self) -> int:
        # Every zone's offset is a multiple of 15 minutes, so a 15-minute UTC slot never
        # straddles a local hour, day or week boundary.
        return 300 if self.interval == "5m" else 900

    @property
    def whole_utc_hours(self) -> bool:
        return self.interval != "5m" and all(
            (s := start.astimezone(UTC)).minute == 0 and s.second == 0 and s.microsecond == 0 for start in self.starts
        )


# --- Cutting the range into parts ----------------------------------------------------------------


@dataclass
class Plan:
    days: list[date] = field(default_factory=list)  # whole, clean: read from a daily rollup
    hours: list[tuple[date, datetime, datetime]] = field(default_factory=list)  # whole UTC hours of clean days
    raw: list[tuple[datetime, datetime]] = field(default_factory=list)  # read from the raw rows


_raw_only = ContextVar("raw_only", default=False)


@contextlib.contextmanager
def raw_only() -> Iterator[None]:
    """Answer from the raw rows alone, ignoring every rollup: the benchmark's baseline."""
    token = _raw_only.set(True)
    try:
        yield
    finally:
        _raw_only.reset(token)


def plan(org, start: datetime, end: datetime, *, hours: bool = False) -> Plan:
    """Cut [start, end) into rollup days, (optionally) rollup hours and raw intervals."""
    if _raw_only.get():
        return Plan(raw=[(start, end)])
    tz = org.tzinfo
    first, last = start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date()
    dirty = set(DirtyDay.objects.filter(org=org, day__gte=first, day__lte=last).values_list("day", flat=True))
    result = Plan()
    day = first
    while day <= last:
        day_start, day_end = day_bounds(org, day)
        a, b = max(day_start, start), min(day_end, end)
        if day in dirty:
            _add_raw(result, a, b)
        elif (a, b) == (day_start, day_end):
            result.days.append(day)
        elif hours:
            whole_from = a.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            whole_from += HOUR if whole_from < a else timedelta(0)
            whole_to = b.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            if whole_from < whole_to:
                _add_raw(result, a, whole_from)
                result.hours.append((day, whole_from, whole_to))
                _add_raw(result, whole_to, b)
            else:
                _add_raw(result, a, b)
        else:
            _add_raw(result, a, b)
        day += timedelta(days=1)
    return result


def _add_raw(result: Plan, a: datetime, b: datetime) -> None:
    if a >= b:
        return
    if result.raw and result.raw[-1][1] == a:
        result.raw[-1] = (result.raw[-1][0], b)
    else:
        result.raw.append((a, b))


def _time_q(intervals: list[tuple[datetime, datetime]], column: str = "timestamp") -> Q:
    q = Q(pk__in=[])
    for a, b in intervals:
        q |= Q(**{f"{column}__gte": a, f"{column}__lt": b})
    return q


# --- Tables and the dimensions they carry --------------------------------------------------------


@dataclass(frozen=True)
class Table:
    model: type[Model]
    dims: frozenset[str]
    grain: str  # "day", "hour" or "raw"
    by_user: bool = True  # False: no user column, so only a whole-org scope may read it


USAGE_RAW = Table(UsageRecord, frozenset(DIMENSIONS) | {"session", "conversation"}, "raw")
USAGE_DAILY_BY = Table(UsageDailyBy, frozenset(), "day", by_user=False)  # one dimension at a time
USAGE_HOURLY = Table(UsageHourly, frozenset({"user", "team", "service_type"}), "hour")
USAGE_HOURLY_ORG = Table(UsageHourlyOrg, frozenset(), "hour", by_user=False)  # the whole org, unfiltered
USAGE_DAILY = Table(UsageDaily, frozenset(DIMENSIONS) - {"tag"}, "day")
USAGE_DAILY_BY_TAG = Table(
    UsageDailyByTag, frozenset({"user", "team", "project", "agent", "model", "service_type", "tag"}), "day"
)
ACTIVITY_DIMS = frozenset({"team", "user", "project", "repository", "agent", "tag"})
ACTIVITY_BY_DIMS = frozenset(ACTIVITY_BY)


def _tag_overlap_ok(query: Query, by: tuple[str, ...]) -> bool:
    """A by-tag rollup counts a record under each of its tags: right when grouping by tag,
    or when filtering on one tag; a filter on several would count a record once per tag."""
    tags = query.filters.get("tag")
    return "tag" in by or tags is None or len(tags) <= 1


def _day_table(query: Query, by: tuple[str, ...], needs: frozenset[str]) -> Table | None:
    """UsageDaily, or UsageDailyByTag for a question about tags (there a record is under each of
    its tags, which is right only as _tag_overlap_ok says); None when neither covers `needs`."""
    if "tag" not in needs:
        return USAGE_DAILY if needs <= USAGE_DAILY.dims else None
    if needs <= USAGE_DAILY_BY_TAG.dims and _tag_overlap_ok(query, by):
        return USAGE_DAILY_BY_TAG
    return None


# Pairs of dimensions UsageDailyBy also keeps (metering.rollups.USAGE_BY), as stored: the
# Analytics page's top agents (each agent's main project) and service-type cards (cost by
# project), and the models of the people or teams a page of the Usage table shows.
PAIRS = {
    frozenset(pair): pair
    for pair in (("agent", "project"), ("project", "service_type"), ("user", "model"), ("team", "model"))
}


def _by_dimension_ok(query: Query, needs: frozenset[str], by: tuple[str, ...]) -> bool:
    """Whether UsageDailyBy answers: the whole org, about one dimension (filtered on it or not),
    or about one of the PAIRS (grouped or filtered by its dimensions)."""
    if not query.scope.sees_whole_org:
        return False
    if len(needs) > 1:
        return needs in PAIRS
    return "tag" not in needs or _tag_overlap_ok(query, by)


# --- Summing usage -------------------------------------------------------------------------------


class EpochSlot(Func):
    """floor(seconds since the epoch / `seconds`): a time-zone-free bucket of raw timestamps."""

    output_field = BigIntegerField()

    def __init__(self, expression, seconds: int):
        super().__init__(expression)
        self.seconds = int(seconds)

    def as_sql(self, compiler, connection, **extra):
        # date_part() is a double, EXTRACT() a numeric: half the time over 180k rows (bench/queries.py).
        # A double holds epoch seconds to ~0.1 us, so a microsecond before a boundary stays before it.
        template = f"CAST(FLOOR(date_part('epoch', %(expressions)s) / {self.seconds}) AS BIGINT)"
        return super().as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Whole seconds first: unixepoch() rounds fractions, so 23:59:59.9999 would become midnight.
        template = f"(CAST(unixepoch(substr(%(expressions)s, 1, 19)) AS INTEGER) / {self.seconds})"
        return super().as_sql(compiler, connection, template=template, **extra)


class WidthBucket(Func):
    """The index of the bucket a value is in, as Buckets.index finds it: width_bucket() over the
    buckets' starts as `kind` (PostgreSQL only)."""

    output_field = IntegerField()

    def __init__(self, expression, thresholds: list, kind: str):
        super().__init__(expression)
        self.thresholds, self.kind = thresholds, kind

    def as_sql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"width_bucket({sql}, CAST(%s AS {self.kind}[])) - 1", [*params, self.thresholds]


def _slot_start(slot: int, seconds: int) -> datetime:
    return datetime.fromtimestamp(slot * seconds, UTC)


def _restrict(queryset: QuerySet, query: Query, table: Table, kind_dims: frozenset[str]) -> QuerySet:
    """Scope and filters on one table holding rows of a kind with dimensions `kind_dims`. A
    filter on a dimension the kind lacks selects none of its rows (see the module docstring)."""
    scope = query.scope
    if table.by_user:
        queryset = queryset.filter(scope.usage_q())
    elif scope.sees_whole_org:
        queryset = queryset.filter(org=scope.org)
    else:  # never chosen for a narrower scope; refuse rather than leak
        raise AssertionError(f"{table.model.__name__} cannot be read for a {scope.role}")
    for name, values in query.filters:
        if name not in kind_dims:
            return queryset.none()
        if name not in table.dims:  # the planner picks only tables that carry the filters
            raise AssertionError(f"{table.model.__name__} has no {name}")
        if name == "tag" and table.grain == "raw":
            links = queryset.model.tags.through.objects.filter(**{_link_field(queryset.model): OuterRef("pk")})
            queryset = queryset.filter(Exists(links.filter(tag__in=values)))
        else:
            queryset = queryset.filter(**{f"{name}__in": values})
    return queryset


def _link_field(model) -> str:
    return "record" if model is UsageRecord else "event"


def _raw_group(name: str) -> str:
    return "tags" if name == "tag" else name


@dataclass
class Rows:
    """Sums by key: key = (bucket index or None, *group-by values)."""

    sums: dict[tuple, dict[str, object]] = field(default_factory=dict)

    def add(self, key: tuple, values: Mapping[str, object]) -> None:
        target = self.sums.get(key)
        if target is None:
            self.sums[key] = dict(values)
        else:
            for name, value in values.items():
                target[name] += value

    def add_all(self, records: Iterable[tuple], *, groups: int, measures: tuple[str, ...], bucket_of=None):
        """Add up database rows (*group values, *measures), the first group value a bucket's
        when `bucket_of` maps it. The loop runs once per row (26,000 for 30 days of per-person
        sparklines), so it does as little as it can."""
        sums, first = self.sums, 1 if bucket_of else 0
        for values in records:
            key = (bucket_of(values[0]) if bucket_of else None, *values[first:groups])
            target = sums.get(key)
            if target is None:
                sums[key] = {name: value or 0 for name, value in zip(measures, values[groups:], strict=True)}
            else:
                for name, value in zip(measures, values[groups:], strict=True):
                    target[name] += value or 0


def usage_sums(
    query: Query, *, by: tuple[str, ...] = (), buckets: Buckets | None = None, measures: tuple[str, ...] = MEASURES
) -> Rows:
    """Usage `measures` of `query` grouped by `by` (dimension names) and, if given, time buckets.

    Every part of the range is read from the smallest table that can answer it, and added up.
    """
    rows = Rows()
    for part in _usage_parts(query, by, buckets, measures):
        part.add_to(rows, query, buckets)
    return rows


def usage_trends(
    query: Query, buckets: Buckets, *, by: str, measures: tuple[str, ...] = MEASURES, trend: str = "requests"
) -> tuple[dict, dict]:
    """({value: its `measures` over the whole range}, {value: its `trend` per bucket}) of one
    dimension `by`: a table of people or teams with a sparkline each.

    usage_sums(by=(by,), buckets=...) gives the same numbers as one row per value and bucket:
    30,000 rows for 1,000 people over 30 days, or 120,000 at 6-hour buckets, each added up here.
    On PostgreSQL each part is folded in SQL to one row per value, its buckets and their `trend`
    as two arrays (width_bucket() finds a bucket as Buckets.index does).
    """
    totals = Rows()  # keyed by value alone
    trends: dict = defaultdict(lambda: [0] * (len(buckets.starts) - 1))
    if connection.vendor != "postgresql":
        for (bucket, value), sums in usage_sums(query, by=(by,), buckets=buckets, measures=measures).sums.items():
            trends[value][bucket] += sums[trend]
            totals.add(value, sums)
        return totals.sums, trends
    for part in _usage_parts(query, (by,), buckets, measures):
        if (bucketed := part.bucketed(buckets, query.org, summed=False)) is None:
            continue
        sql, params, columns = bucketed
        folded = (
            f"SELECT g0, {_sums_sql(columns)}, array_agg(b), array_agg({columns[trend]}) "
            f"FROM ({sql}) AS part GROUP BY g0"
        )
        for value, *values, positions, counts in _fetched_sql(folded, params):
            totals.add(value, dict(zip(measures, values, strict=True)))
            row = trends[value]
            for position, count in zip(positions, counts, strict=True):
                row[position] += count
    return totals.sums, trends


def _sums_sql(columns: dict[str, str]) -> str:
    """SUM of each measure's column, named as it: integers as integers (SUM(bigint) is a numeric)."""
    return ", ".join(
        f"SUM({c}) AS {c}" if m in MONEY_MEASURES else f"CAST(SUM({c}) AS BIGINT) AS {c}" for m, c in columns.items()
    )


def _thresholds(buckets: Buckets, org, column: str) -> tuple[str, list]:
    """The bucket starts as the values of a part's bucket column, and their SQL type."""
    if column == "day":
        return "DATE", [start.astimezone(org.tzinfo).date() for start in buckets.starts]
    if column == "hour":
        return "TIMESTAMPTZ", list(buckets.starts)
    seconds = buckets.raw_slot_seconds  # raw rows: epoch slots, and every start is on one
    return "BIGINT", [int(start.timestamp()) // seconds for start in buckets.starts]


@dataclass(frozen=True)
class Part:
    """One read of a usage question: `queryset`'s rows grouped by `groups` (the bucket column
    first when bucketed: a day, an hour, or an epoch slot of raw rows) with `aggregates`, or,
    when `aggregates` is None, rows already one per group, read as they are."""

    queryset: QuerySet
    groups: tuple[str, ...]
    aggregates: dict | None
    column: str  # "day", "hour" or "timestamp"
    measures: tuple[str, ...]

    def listing(self) -> QuerySet:
        """The values_list of (*groups, *measures)."""
        if self.aggregates is None:
            return self.queryset.values_list(*self.groups, *self.measures).order_by()
        return _listing(self.queryset, list(self.groups), self.aggregates)

    def bucketed(self, buckets: Buckets, org, *, summed: bool = True) -> tuple[str, list, dict[str, str]] | None:
        """SQL of the part's rows summed per bucket (on PostgreSQL; not `summed`: rows read as they
        are each in its bucket, while rows to aggregate come back summed all the same): columns b
        (the bucket's index, as width_bucket() finds it, like Buckets.index), g0, g1... (the group
        values) and one per measure (named in the dict returned); None when it selects nothing."""
        kind, thresholds = _thresholds(buckets, org, self.column)
        groups = [f"g{i}" for i in range(len(self.groups) - 1)]
        columns = {m: connection.ops.quote_name(f"m_{m}") for m in self.measures}
        keys, values = ", ".join(["b", *groups]), ", ".join([*groups, *columns.values()])
        # Rows to aggregate are grouped by bucket where they are read, not by hour first: a
        # thousand people's hourly rows of 30 days were 217,000 (hour, person) groups, spilled to
        # disk, for 66,000 at 6-hour buckets (bench/pages.py: the Usage table at 6 h, 800 ms).
        if self.aggregates is not None:
            queryset = self.queryset.annotate(r_bucket=WidthBucket(F(self.groups[0]), thresholds, kind))
            listing = _listing(queryset, ["r_bucket", *self.groups[1:]], self.aggregates)
        else:
            listing = self.listing()
        try:
            sql, params = listing.query.sql_with_params()
        except EmptyResultSet:  # .none(): a filter that selects nothing
            return None
        if self.aggregates is not None:  # summed already
            return f"SELECT b, {values} FROM ({sql}) AS summed (b, {values})", params, columns
        slots = f"SELECT width_bucket(c, CAST(%s AS {kind}[])) - 1 AS b, {values} FROM ({sql}) AS listed (c, {values})"
        if summed:
            slots = f"SELECT {keys}, {_sums_sql(columns)} FROM ({slots}) AS slots GROUP BY {keys}"
        return slots, [thresholds, *params], columns

    def add_to(self, rows: "Rows", query: Query, buckets: Buckets | None) -> None:
        if buckets is not None and connection.vendor == "postgresql":
            bucketed = self.bucketed(buckets, query.org)
            if bucketed is not None:
                sql, params, _ = bucketed
                records = _fetched_sql(sql, params)
                rows.add_all(records, groups=len(self.groups), measures=self.measures, bucket_of=int)
            return
        if self.aggregates is None:
            records = _fetched(self.listing())
        else:
            records = _grouped(self.queryset, list(self.groups), self.aggregates)
        bucket_of = _bucket_lookup(buckets, query.org, self.column) if buckets is not None else None
        rows.add_all(records, groups=len(self.groups), measures=self.measures, bucket_of=bucket_of)


def _usage_parts(query: Query, by: tuple[str, ...], buckets: Buckets | None, measures: tuple[str, ...]) -> list[Part]:
    """The reads that answer a usage question, each from the smallest table that can."""
    if query.filters.select_nothing:
        return []
    needs = query.filters.dims | frozenset(by)
    if not query.scope.sees_whole_org:
        needs |= {"user", "team"}
    sub_day = buckets is not None and buckets.interval not in ("day", "week")
    by_dimension = _by_dimension_ok(query, needs, by)
    whole_hours = buckets is None or buckets.whole_utc_hours
    hourly_by = sub_day and whole_hours and by_dimension and _stored(needs) in USAGE_HOURLY_BY
    hourly_ok = (needs <= USAGE_HOURLY.dims or hourly_by) and whole_hours
    day_table = None if sub_day else _day_table(query, by, needs)
    parts = plan(query.org, query.start, query.end, hours=hourly_ok)
    hour_days: list[date] = []
    if sub_day and not hourly_ok:  # no daily rollup can split a day: read it raw
        parts = Plan(raw=[(query.start, query.end)])
    elif sub_day:  # whole days come from the hourly rollup too
        hour_days, parts.days = parts.days, []

    reads = []
    if parts.days and by_dimension:
        reads.append(
            _by_dimension_part(query, UsageDailyBy, Q(day__in=parts.days), "day", needs, by, buckets, measures)
        )
    elif parts.days and day_table is not None:
        reads.append(_table_part(query, day_table, Q(day__in=parts.days), "day", by, buckets, measures))
    elif parts.days:
        parts.raw = _merge(parts.raw + [day_bounds(query.org, d) for d in parts.days])
    hourly = USAGE_HOURLY_ORG if _whole_org(query) and not by else USAGE_HOURLY
    # Whole days and the hours of partial ones in two reads: OR-ed into one, PostgreSQL could
    # not combine a manager's (user OR team) with the (day, user) and (day, team) indexes.
    for where in [Q(day__in=hour_days)] * bool(hour_days) + [_hours_q(parts.hours)] * bool(parts.hours):
        if hourly_by:
            reads.append(_by_dimension_part(query, UsageHourlyBy, where, "hour", needs, by, buckets, measures))
        else:
            reads.append(_table_part(query, hourly, where, "hour", by, buckets, measures))
    if parts.raw:
        reads.append(_table_part(query, USAGE_RAW, _time_q(parts.raw), "timestamp", by, buckets, measures))
    return reads


def _hours_q(hours: list[tuple[date, datetime, datetime]]) -> Q:
    """The hourly rows of Plan.hours. (A whole day's are simply its day's: those its rebuild
    wrote, from the UTC hour holding its start to the one holding its end.)"""
    q = Q(pk__in=[])
    for day, a, b in hours:
        q |= Q(day=day, hour__gte=a, hour__lt=b)
    return q


def _merge(intervals):
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(intervals):
        if merged and merged[-1][1] >= a:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _bucket_of(buckets: Buckets | None, org, column: str, value) -> int | None:
    if buckets is None:
        return None
    if column == "day":
        return buckets.index(_local_midnight(value, org.tzinfo))
    if column == "hour":
        return buckets.index(value)
    return buckets.index(_slot_start(value, buckets.raw_slot_seconds))


def _bucket_lookup(buckets: Buckets, org, column: str):
    """_bucket_of, remembered: thousands of rows share a few dozen days, hours or slots."""
    known: dict = {}

    def lookup(value) -> int:
        if value not in known:
            known[value] = _bucket_of(buckets, org, column, value)
        return known[value]

    return lookup


def _table_part(query: Query, table: Table, where: Q, column: str, by, buckets, measures) -> Part:
    queryset = _restrict(table.model.objects.filter(where), query, table, USAGE_RAW.dims)
    groups = [_raw_group(name) if table.grain == "raw" else name for name in by]
    if table.grain == "raw":
        aggregates = {f"r_{name}": USAGE_MEASURES[f"r_{name}"] for name in measures}
        if buckets is not None:
            queryset = queryset.annotate(r_slot=EpochSlot("timestamp", buckets.raw_slot_seconds))
            groups = ["r_slot", *groups]
    else:
        aggregates = {f"r_{name}": _rollup_sum(name) for name in measures}
        if buckets is not None:
            groups = [column, *groups]
    if table.grain == "raw" and "tag" in by:
        # Each record under each of its tags (the filter's, when there is one), as the by-tag
        # rollups count it; untagged records have no row, there as here.
        tags = query.filters.get("tag")
        queryset = queryset.filter(tags__in=tags) if tags is not None else queryset.filter(tags__isnull=False)
    return Part(queryset, tuple(groups), aggregates, column, measures)


def _rollup_sum(measure: str):
    return Sum(measure) if measure in MONEY_MEASURES else integer_sum(measure)


def _grouped(queryset: QuerySet, groups: list[str], aggregates: dict) -> Iterable[tuple]:
    """(*group values, *aggregates) per group, or once for the whole queryset (values() of
    nothing would be every column, one row per row); nothing when there are no rows."""
    if not groups:
        row = queryset.aggregate(r_rows=Count("pk"), **aggregates)
        return [tuple(row[name] for name in aggregates)] if row["r_rows"] else []
    return _fetched(_listing(queryset, groups, aggregates))


def _listing(queryset: QuerySet, groups: list[str], aggregates: dict) -> QuerySet:
    return queryset.values(*groups).annotate(**aggregates).order_by().values_list(*groups, *aggregates)


def _fetched(rows: QuerySet) -> Iterable[tuple]:
    """A values_list's rows; on PostgreSQL as psycopg returns them, in its binary format.

    A 30-day sparkline per user is 30,000 rows: Django's converters per row took 40 % of the
    time (bench/queries.py), and datetimes and numerics arrive without being parsed from text,
    4x faster for the Resources page's 14,000 allocations of a month. SQLite returns text and
    floats, which need Django's converters."""
    if connection.vendor != "postgresql":
        return rows
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # .none(): a filter that selects nothing
        return []
    return _fetched_sql(sql, params)


def _fetched_sql(sql: str, params) -> list[tuple]:
    """The rows of one SQL query on PostgreSQL, as _fetched reads them (Django still logs it)."""
    from psycopg import Cursor
    from psycopg.pq import Format

    connection.ensure_connection()
    raw = Cursor(connection.connection)  # binds on the server, which binary results need
    raw.format = Format.BINARY
    with connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _stored(needs: frozenset[str]) -> str:
    """The `dimension` of UsageDailyBy and UsageHourlyBy rows about `needs`."""
    return ",".join(PAIRS.get(needs) or sorted(needs))


def _by_dimension_part(query: Query, model, where: Q, column: str, needs, by, buckets, measures) -> Part:
    """A read of UsageDailyBy or UsageHourlyBy (`column` "day" or "hour")."""
    stored = PAIRS.get(needs) or tuple(needs) or ("service_type",)  # totals: service types are few
    queryset = model.objects.filter(where, org=query.org, dimension=",".join(stored))
    columns = dict(zip(stored, ("value", "other"), strict=False))
    for name, column_name in columns.items():
        values = query.filters.get(name)
        if values is not None:
            queryset = queryset.filter(**{f"{column_name}__in": [str(v) for v in values]})
        if name != "service_type":  # ids, as numbers straight from the database
            queryset = queryset.annotate(**{f"r_{column_name}": Cast(column_name, BigIntegerField())})
    groups = [columns[d] if d == "service_type" else f"r_{columns[d]}" for d in by]
    if buckets is not None:
        groups = [column, *groups]
    # By a dimension and bucket, the rows are one per group already (or a few): read them as they are.
    aggregates = None if by and buckets is not None else {f"r_{m}": _rollup_sum(m) for m in measures}
    return Part(queryset, tuple(groups), aggregates, column, measures)


def _typed(dimension: str, value: str | None):
    if value is None or dimension == "service_type":
        return value
    return int(value)


# --- Distinct things: users, sessions, conversations; activity ----------------------------------

ACTIVITY_RAW = Table(ActivityEvent, ACTIVITY_DIMS, "raw")
ACTIVITY_DAY = Table(ActivityDaily, ACTIVITY_DIMS - {"tag"}, "day")
SESSION_DAY = Table(SessionDaily, frozenset({"user", "team", "project", "agent"}), "day")  # both kinds
CONVERSATION_DAY = Table(
    ConversationDaily, frozenset({"user", "team", "project", "agent", "model", "service_type"}), "day"
)


def _covering(table: Table, query: Query, kind_dims: frozenset[str]) -> Table | None:
    """`table` if it can apply every filter that applies to its kind of row, else None (read raw)."""
    return table if (query.filters.dims & kind_dims) <= table.dims else None


def _split(query: Query, parts: Plan, table: Table | None) -> tuple[list[date], list[tuple[datetime, datetime]]]:
    """The days `table` answers and the raw intervals left (all of them when there is no table)."""
    if table is None:
        return [], _merge(parts.raw + [day_bounds(query.org, d) for d in parts.days])
    return parts.days, parts.raw


def _distinct(queryset: QuerySet, column: str) -> set:
    values = set(_column(queryset, column).values_list(column, flat=True))
    values.discard("")
    return values


def _column(queryset: QuerySet, column: str) -> QuerySet:
    """The distinct non-empty values of one column, as a query to count or union in SQL."""
    return (
        queryset.exclude(**{f"{column}__isnull": True})
        .exclude(**{column: ""} if column == "conversation_id" else {})
        .values(column)
        .order_by()
        .distinct()
    )


def _union(querysets: list[QuerySet]) -> QuerySet | None:
    """One query of the distinct rows of several (UNION drops duplicates), or None if none."""
    if not querysets:
        return None
    return querysets[0].union(*querysets[1:]) if len(querysets) > 1 else querysets[0]


# Raw usage records and events, each with the dimensions its rows carry.
RAW_KINDS = ((USAGE_RAW, USAGE_RAW.dims), (ACTIVITY_RAW, ACTIVITY_DIMS))


def _sessions(query: Query, parts: Plan, among: list[int] | None = None) -> QuerySet | None:
    """The ids of the sessions (of `among`, if given) with a record or an event in the range that
    the scope and filters select, as one SQL query (None when nothing can match)."""
    if query.filters.select_nothing:
        return None
    # SessionDaily holds sessions seen in records and in events alike: usable only when every
    # filter applies to both kinds of rows.
    table = SESSION_DAY if query.filters.dims <= SESSION_DAY.dims else None
    days, raw = _split(query, parts, table)
    ids = []
    only = Q(session__in=among) if among is not None else Q()
    if days:
        rows = _restrict(SessionDaily.objects.filter(only, day__in=days), query, table, table.dims)
        ids.append(_column(rows, "session"))
    for raw_table, kind_dims in RAW_KINDS:
        if raw:
            rows = _restrict(raw_table.model.objects.filter(only, _time_q(raw)), query, raw_table, kind_dims)
            ids.append(_column(rows, "session"))
    return _union(ids)


def _whole_org(query: Query) -> bool:
    """An unfiltered question about the whole org: the one the smallest rollups answer."""
    return query.scope.sees_whole_org and not query.filters.selected


def session_stats(query: Query, parts: Plan, *, by_agent: bool = False) -> dict:
    """{agent id (None unless by_agent): (sessions, their total duration in seconds)}, counted in SQL.
    A session's duration is its last minus its first timestamp, over all of its records and events."""
    if _whole_org(query):
        return _whole_org_session_stats(query, parts, by_agent)
    ids = _sessions(query, parts)
    if ids is None:
        return {}
    return _stats_of(Session.objects.filter(pk__in=ids), by_agent)


def _stats_of(sessions: QuerySet, by_agent: bool) -> dict:
    sessions = sessions.order_by()
    # COUNT(*), not COUNT(id): the (org, last_seen) index covers the rest, so it is read alone.
    stats = {"n": Count("*"), "seconds": Sum(F("last_seen") - F("first_seen"))}
    rows = sessions.values("agent").annotate(**stats) if by_agent else [{"agent": None, **sessions.aggregate(**stats)}]
    return {row["agent"]: (row["n"], row["seconds"].total_seconds() if row["seconds"] else 0.0) for row in rows}


def _whole_org_session_stats(query: Query, parts: Plan, by_agent: bool) -> dict:
    """The org's sessions of a period straight from their spans: a session that starts before the
    end and ends at or after the start has a record or event in the period (at its start or its
    end), unless it spans the whole period; only those few are looked up in the rows. On the
    benchmark's 10M records: 15 ms instead of 130 ms for the distinct sessions of 30 days."""
    spanning = Session.objects.filter(org=query.org, last_seen__gte=query.start, first_seen__lt=query.end)
    stats = _stats_of(spanning, by_agent)
    around = list(spanning.filter(first_seen__lt=query.start, last_seen__gte=query.end).values_list("pk", flat=True))
    active = _sessions(query, parts, among=around) if around else None
    idle = Session.objects.filter(pk__in=around).exclude(pk__in=active) if active is not None else None
    for agent, (n, seconds) in (_stats_of(idle, by_agent) if idle is not None else {}).items():
        total_n, total_seconds = stats[agent]
        stats[agent] = (total_n - n, total_seconds - seconds)
    return {agent: values for agent, values in stats.items() if values[0]}


def conversation_count(query: Query, parts: Plan) -> int:
    if query.filters.select_nothing:
        return 0
    one_user = _one_user(query)
    if (_whole_org(query) or one_user) and parts.days:
        return _counted_conversations(query, parts, one_user)
    table = _covering(CONVERSATION_DAY, query, USAGE_RAW.dims)
    days, raw = _split(query, parts, table)
    ids = []
    if days:
        qs = ConversationDaily.objects.filter(day__in=days)
        ids.append(_column(_restrict(qs, query, table, USAGE_RAW.dims), "conversation_id"))
    if raw:
        qs = UsageRecord.objects.filter(_time_q(raw))
        ids.append(_column(_restrict(qs, query, USAGE_RAW, USAGE_RAW.dims), "conversation_id"))
    union = _union(ids)
    return union.count() if union is not None else 0


def _one_user(query: Query) -> int | None:
    """The user a question is about when it is about exactly one person's usage: a member with
    no filters, or anyone allowed to see them filtering on them alone."""
    scope, filters = query.scope, query.filters
    if scope.role == Role.MEMBER and not filters.selected:
        return scope.user_id
    users = filters.get("user")
    if filters.dims == {"user"} and len(users) == 1:
        (user,) = users
        if scope.sees_whole_org:
            return user
    return None


def _counted_conversations(query: Query, parts: Plan, user: int | None) -> int:
    """Conversations over the whole clean days (ConversationDayCount: each counted on its first
    day in their span), of the org or of one user, plus those of the raw parts that no clean day
    counted."""
    counts = _first_in_span(query, parts, grain="user" if user is not None else "org").filter(user=user)
    count = counts.aggregate(n=Sum("conversations"))["n"] or 0
    if not parts.raw:
        return count
    mine = Q(user=user) if user is not None else Q()
    edges = UsageRecord.objects.filter(mine, _time_q(parts.raw), org=query.org)
    return count + _uncounted(edges, query, parts, user=user).get(None, 0)


def _first_in_span(query: Query, parts: Plan, *, grain: str) -> QuerySet:
    """The ConversationDayCount rows of `grain` of the whole clean days (parts.days) that count
    conversations on their first day in the span from the first of those days to the last."""
    counts = ConversationDayCount.objects.filter(org=query.org, grain=grain, day__in=parts.days)
    return counts.filter(Q(prev_day__isnull=True) | Q(prev_day__lt=parts.days[0]))


def _uncounted(edges: QuerySet, query: Query, parts: Plan, *, user: int | None = None, by_agent=False) -> dict:
    """{agent (None unless by_agent): the conversations of the raw records `edges` that the
    clean days' _first_in_span rows did not count (for that agent, or for `user`)}: those with no
    ConversationDaily row in the span, or whose first row there is a dirty day's. A dirty day
    inside the span is read raw and its rows are stale; but records are never removed, so they
    still hold all the day had when it was built, and the clean days after it took those
    conversations as seen. One index probe of each distinct conversation (not of each record:
    two dirty days are 330,000 records of 50,000 conversations on the benchmark)."""
    first, last = parts.days[0], parts.days[-1]
    clean = set(parts.days)
    dirty = [day for day in (first + timedelta(days=n) for n in range((last - first).days)) if day not in clean]
    pairs = {"r_conversation": F("conversation_id"), **({"r_agent": F("agent")} if by_agent else {})}
    distinct = edges.exclude(conversation_id="").values(**pairs).order_by().distinct()
    sql, params = distinct.query.sql_with_params()
    same, same_params = "", []
    if by_agent:
        same = " AND (c.agent_id = e.r_agent OR c.agent_id IS NULL AND e.r_agent IS NULL)"
    elif user is not None:
        same, same_params = " AND c.user_id = %s", [user]
    first_day = (
        f"(SELECT c.day FROM {connection.ops.quote_name(ConversationDaily._meta.db_table)} c WHERE c.org_id = %s "
        f"AND c.conversation_id = e.r_conversation AND c.day >= %s AND c.day <= %s{same} ORDER BY c.day LIMIT 1)"
    )
    first_value, last_value, *dirty_values = (connection.ops.adapt_datefield_value(d) for d in (first, last, *dirty))
    params = [*params, query.org.pk, first_value, last_value, *same_params, *dirty_values]
    in_dirty = ", ".join(["%s"] * len(dirty))
    uncounted = f"COALESCE({first_day} IN ({in_dirty}), TRUE)" if dirty else f"{first_day} IS NULL"
    agent = "e.r_agent" if by_agent else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {agent}, COUNT(*) FROM ({sql}) e WHERE {uncounted} GROUP BY 1", params)
        return dict(cursor.fetchall())


def _conversations_per_agent(query: Query, parts: Plan) -> dict:
    """conversation_counts(query, "agent") of the whole org over whole clean days (and raw
    parts): each agent's from ConversationDayCount, plus the conversations of the raw parts
    that no clean day counted for that agent. On the benchmark's 10M records, 30 days: 1.7 s
    for the distinct (agent, conversation) pairs, a few ms this way."""
    result = {
        row["agent"]: row["n"]
        for row in _first_in_span(query, parts, grain="agent")
        .values("agent")
        .annotate(n=Sum("conversations"))
        .order_by()
    }
    if parts.raw:
        edges = UsageRecord.objects.filter(_time_q(parts.raw), org=query.org)
        for agent, n in _uncounted(edges, query, parts, by_agent=True).items():
            result[agent] = result.get(agent, 0) + n
    return {agent: n for agent, n in result.items() if n}


def _activity_parts(query: Query, parts: Plan, by: tuple[str, ...] = ()):
    """(grain, queryset) of activity per part: "day" rows (kind, events, quantity, lines_added,
    lines_removed and the dimensions in `by`) or "raw" events. Org-wide questions about at most
    one dimension read ActivityDailyBy, as usage_sums reads UsageDailyBy."""
    needs = query.filters.dims | frozenset(by)
    if query.scope.sees_whole_org and len(needs) <= 1 and needs <= ACTIVITY_BY_DIMS:
        days, raw = parts.days, parts.raw
        if days:
            yield "day", _activity_by_dimension(query, days, needs)
    else:
        table = _covering(ACTIVITY_DAY, query, ACTIVITY_DIMS)
        days, raw = _split(query, parts, table)
        if days:
            yield "day", _restrict(ActivityDaily.objects.filter(day__in=days), query, table, ACTIVITY_DIMS)
    if raw:
        yield "raw", _restrict(ActivityEvent.objects.filter(_time_q(raw)), query, ACTIVITY_RAW, ACTIVITY_DIMS)


def _activity_by_dimension(query: Query, days: list[date], needs: frozenset[str]) -> QuerySet:
    (name,) = needs or {"team"}  # totals: every dimension's rows add up to them; teams are few
    rows = ActivityDailyBy.objects.filter(org=query.org, dimension=name, day__in=days)
    values = query.filters.get(name)
    if values is not None:
        rows = rows.filter(value__in=[str(v) for v in values])
    return rows.annotate(**{name: Cast("value", BigIntegerField())})


def activity_users(query: Query, parts: Plan) -> set[int]:
    if query.filters.select_nothing:
        return set()
    return set().union(*(_distinct(qs, "user") for _, qs in _activity_parts(query, parts, by=("user",))))


def activity_sums(
    query: Query, parts: Plan, *, by: tuple[str, ...] = (), kinds: Collection[str] = ()
) -> dict[tuple, dict[str, int]]:
    """Events, quantity and lines (added + removed) by (kind, *by) over the range; of `kinds`
    alone when given."""
    result: dict[tuple, dict[str, int]] = defaultdict(lambda: {"events": 0, "quantity": 0, "lines": 0})
    if query.filters.select_nothing:
        return result
    for grain, queryset in _activity_parts(query, parts, by):
        if kinds:
            queryset = queryset.filter(kind__in=kinds)
        sums = {
            "r_events": integer_sum("events") if grain == "day" else Count("id"),
            **{f"r_{name}": integer_sum(name) for name in ("quantity", "lines_added", "lines_removed")},
        }
        for kind, *values, events, quantity, added, removed in _grouped(queryset, ["kind", *by], sums):
            target = result[(kind, *values)]
            target["events"] += events or 0
            target["quantity"] += quantity or 0
            target["lines"] += (added or 0) + (removed or 0)
    return result


# --- Answers: what the API and the pages show ----------------------------------------------------


def format_money(value: Decimal | int | float) -> str:
    """Exact decimal string, at least two decimals: '12.5' -> '12.50', '0.0012345' stays."""
    value = quantize_money(Decimal(value)).normalize()
    if value == value.to_integral_value() or -value.as_tuple().exponent < 2:
        return f"{value:.2f}"
    return f"{value:f}"


def _zero() -> dict[str, object]:
    return {name: Decimal(0) if name in ("cost", "session_cost") else 0 for name in MEASURES}


def _total(rows: Rows) -> dict[str, object]:
    total = _zero()
    for values in rows.sums.values():
        for name in MEASURES:
            total[name] += values[name]
    return total


def _ratio(numerator, denominator, places: int = 3):
    return round(numerator / denominator, places) if denominator else 0


def _usage_profile(query: Query, parts: Plan) -> tuple[dict, set, set, set]:
    """Usage totals, the users active (a usage record or an activity event), and the models and
    projects used. Org-wide, reads of the one-dimension rollups beat one read grouped by all
    three at the daily grain."""
    if query.scope.sees_whole_org and len(query.filters.dims) <= 1:
        by = breakdowns(query, ("model", "project") if _whole_org(query) else ("model", "project", "user"))
        models, projects = ({key[1] for key in by[d].sums} for d in ("model", "project"))
        if _whole_org(query):
            return _total(by["model"]), _whole_org_users(query, parts), models, projects
        users = {key[1] for key in by["user"].sums} | activity_users(query, parts)
        return _total(by["model"]), users, models, projects
    rows = usage_sums(query, by=("user", "model", "project"))
    users, models, projects = (
        (set(values) for values in zip(*(key[1:] for key in rows.sums), strict=True))
        if rows.sums
        else (set(), set(), set())
    )
    return _total(rows), users | activity_users(query, parts), models, projects


def _whole_org_users(query: Query, parts: Plan) -> set[int]:
    users = set()
    if parts.days:
        days = ActiveUserDaily.objects.filter(org=query.org, day__in=parts.days)
        users = set(days.values_list("user", flat=True).distinct())
    for raw_table, kind_dims in RAW_KINDS if parts.raw else ():
        rows = raw_table.model.objects.filter(_time_q(parts.raw))
        users |= _distinct(_restrict(rows, query, raw_table, kind_dims), "user")
    return users


def summary(query: Query) -> dict:
    """DESIGN section 8: the KPI summary of a range."""
    parts = plan(query.org, query.start, query.end)
    total, users, models, projects = _usage_profile(query, parts)
    work = _work_figures(query, parts, total)
    return {
        "start": query.start.astimezone(query.org.tzinfo).isoformat(),
        "end": query.end.astimezone(query.org.tzinfo).isoformat(),
        "requests": total["requests"],
        "failed_requests": total["failed_requests"],
        "input_tokens": total["input_tokens"],
        "cached_input_tokens": total["cached_input_tokens"],
        "output_tokens": total["output_tokens"],
        "total_tokens": work["total_tokens"],
        "cost": work["cost"],
        "sessions": work["sessions"],
        "avg_session_duration_seconds": work["avg_session_duration_seconds"],
        "avg_cost_per_session": work["avg_cost_per_session"],
        "unique_users": len(users),
        "agent_runs": work["agent_runs"],
        "accepted_diffs": work["accepted_diffs"],
        "tasks_completed": work["tasks_completed"],
        "lines_of_code": work["lines_of_code"],
        "unique_models": len(models),
        "active_projects": len(projects - {None}),
        "total_projects": Project.objects.filter(org=query.org).count(),
        "conversations": conversation_count(query, parts),
    }


METRICS = ("cost", "tokens", "requests", "sessions")
TOKENS = ("input_tokens", "output_tokens")


def timeseries(query: Query, *, metric: str, interval: str | None = None) -> dict:
    """DESIGN section 8: one metric per bucket, every bucket present."""
    interval = interval or interval_for(query.start, query.end)
    buckets = Buckets.of(query.org, query.start, query.end, interval)
    values = _series(query, buckets, metric)
    points = [
        {"start": start.isoformat(), "value": format_money(v) if metric == "cost" else v}
        for start, v in zip(buckets.starts[:-1], values, strict=True)
    ]
    return {"metric": metric, "interval": interval, "points": points}


def _series(query: Query, buckets: Buckets, metric: str, by: tuple[str, ...] = ()) -> list:
    n = len(buckets.starts) - 1
    if metric == "sessions":
        return [len(ids) for ids in _session_series(query, buckets)]
    values = [Decimal(0) if metric == "cost" else 0] * n
    rows = usage_sums(query, by=by, buckets=buckets, measures=METRIC_MEASURES[metric])
    for (bucket, *_), sums in rows.sums.items():
        values[bucket] += _metric(sums, metric)
    return values


METRIC_MEASURES = {"cost": ("cost",), "tokens": ("input_tokens", "output_tokens"), "requests": ("requests",)}


def _metric(sums, metric: str):
    if metric == "cost":
        return sums["cost"]
    if metric == "tokens":
        return sums["input_tokens"] + sums["output_tokens"]
    return sums["requests"]


def _session_series(query: Query, buckets: Buckets) -> list[set]:
    """Distinct sessions per bucket: daily rows for whole days when buckets are days or weeks."""
    per_bucket: list[set] = [set() for _ in range(len(buckets.starts) - 1)]
    if query.filters.select_nothing:
        return per_bucket
    daily = buckets.interval in ("day", "week")
    parts = plan(query.org, query.start, query.end) if daily else Plan(raw=[(query.start, query.end)])
    table = SESSION_DAY if query.filters.dims <= SESSION_DAY.dims else None
    days, raw = _split(query, parts, table)
    if days:
        qs = _restrict(SessionDaily.objects.filter(day__in=days), query, table, table.dims)
        for day, session in qs.values_list("day", "session").distinct():
            per_bucket[buckets.index(_local_midnight(day, query.org.tzinfo))].add(session)
    seconds = buckets.raw_slot_seconds
    for raw_table, kind_dims in RAW_KINDS:
        if not raw:
            break
        qs = _restrict(raw_table.model.objects.filter(_time_q(raw)), query, raw_table, kind_dims)
        qs = qs.filter(session__isnull=False).annotate(r_slot=EpochSlot("timestamp", seconds))
        for slot, session in qs.values_list("r_slot", "session").distinct():
            per_bucket[buckets.index(_slot_start(slot, seconds))].add(session)
    return per_bucket


# Django binds each value of an IN list at ~30 us: for a thousand people, reading the org's
# whole (indexed) membership list and keeping the wanted ones in Python is faster.
MANY_IDS = 200


def among(queryset: QuerySet, field: str, ids: Collection) -> QuerySet:
    """`queryset` narrowed to `field` in `ids`, or left whole when the ids are many: the caller
    keeps only the rows it asked for."""
    return queryset if len(ids) > MANY_IDS else queryset.filter(**{f"{field}__in": ids})


def dimension_names(dimension: str, ids: Iterable, org) -> dict:
    """Display names of dimension values: emails (or external ids) for users, names otherwise."""
    ids = {i for i in ids if i is not None}
    if dimension == "service_type":
        return {i: i for i in ids}
    if dimension == "user":
        members = among(Membership.objects.filter(org=org), "user_id", ids)
        rows = members.values_list("user_id", "user__email", "external_id", "user__name")
        return {uid: email or external or name or f"user {uid}" for uid, email, external, name in rows if uid in ids}
    model = {"team": Team, "project": Project, "repository": Repository, "agent": Agent, "model": LLMModel, "tag": Tag}
    return dict(model[dimension].objects.filter(pk__in=ids).values_list("pk", "name"))


def breakdowns(query: Query, dimensions: Iterable[str], measures: tuple[str, ...] = MEASURES) -> dict[str, Rows]:
    """usage_sums(query, by=(d,), measures=measures) for each dimension d, reading each part of
    the range once for all of them where it can: a record has one value of each dimension, so
    rows grouped by all of them add up to each one's. (Not tags: a record has several.)"""
    dimensions = tuple(dimensions)
    together = tuple(d for d in dimensions if d != "tag")
    out = {d: Rows() for d in dimensions}
    if "tag" in dimensions:
        out["tag"] = usage_sums(query, by=("tag",), measures=measures)
    if not together or query.filters.select_nothing:
        return out
    if all(_by_dimension_ok(query, query.filters.dims | {d}, (d,)) for d in together):
        # The whole org, unfiltered but for at most one of these: the one-dimension rollup per
        # dimension for whole days, and one read of the raw rows for the rest of the range.
        parts = plan(query.org, query.start, query.end)
        for d in together:
            if parts.days:
                days = Q(day__in=parts.days)
                needs = query.filters.dims | {d}
                _by_dimension_part(query, UsageDailyBy, days, "day", needs, (d,), None, measures).add_to(
                    out[d], query, None
                )
        if not parts.raw:
            return out
        combined = Rows()
        _table_part(query, USAGE_RAW, _time_q(parts.raw), "timestamp", together, None, measures).add_to(
            combined, query, None
        )
    else:
        combined = usage_sums(query, by=together, measures=measures)
    for key, sums in combined.sums.items():
        for i, d in enumerate(together, start=1):
            out[d].add((None, key[i]), sums)
    return out


def breakdown(query: Query, dimension: str) -> list[dict]:
    """{"name", "cost", "requests", "total_tokens"} per value of one dimension, by cost."""
    return _breakdown_rows(query, dimension, usage_sums(query, by=(dimension,)))


def _breakdown_rows(query: Query, dimension: str, rows: Rows) -> list[dict]:
    names = dimension_names(dimension, (key[1] for key in rows.sums), query.org)
    out = [
        {
            "name": names.get(value, value) if value is not None else None,
            "cost": sums["cost"],
            "requests": sums["requests"],
            "total_tokens": sums["input_tokens"] + sums["output_tokens"],
        }
        for (_, value), sums in rows.sums.items()
    ]
    out.sort(key=lambda r: (-r["cost"], -r["requests"], str(r["name"])))
    for row in out:
        row["cost"] = format_money(row["cost"])
    return out


BY_TAG_NOTE = (
    "A record with several tags counts under each of them, so by_tag can add up to more than the total; "
    "untagged records are in no by_tag row."
)


def cost_breakdown(query: Query) -> dict:
    """DESIGN section 8, plus `by_tag`: unlike the other lists it overlaps the total (BY_TAG_NOTE)."""
    sums = breakdowns(query, ("model", "project", "user", "team", "service_type", "tag"), ("cost", "requests", *TOKENS))
    lists = {f"by_{d}": _breakdown_rows(query, d, rows) for d, rows in sums.items()}
    total = sum((Decimal(r["cost"]) for r in lists["by_model"]), Decimal(0))
    return {"total": format_money(total), **lists, "by_tag_note": BY_TAG_NOTE}


def by_agent(query: Query) -> dict:
    """DESIGN section 8: usage and sessions per agent."""
    rows = usage_sums(query, by=("agent",))
    parts = plan(query.org, query.start, query.end)
    sessions = session_stats(query, parts, by_agent=True)
    agents = set(sessions) | {key[1] for key in rows.sums}
    names = dimension_names("agent", agents, query.org)
    out = []
    for agent in agents:
        sums = rows.sums.get((None, agent), _zero())
        n, seconds = sessions.get(agent, (0, 0.0))
        out.append(
            {
                "agent": names.get(agent) if agent is not None else None,
                "sessions": n,
                "requests": sums["requests"],
                "total_tokens": sums["input_tokens"] + sums["output_tokens"],
                "cost": sums["cost"],
                "avg_cost_per_session": format_money(_ratio(sums["session_cost"], n, 10)),
                "avg_duration_seconds": _ratio(seconds, n),
            }
        )
    out.sort(key=lambda r: (-r["cost"], -r["requests"], str(r["agent"])))
    for row in out:
        row["cost"] = format_money(row["cost"])
    return {"agents": out}


# --- Filters by name -----------------------------------------------------------------------------


def filters_from_names(org, names: Mapping[str, list[str]]) -> Filters:
    """Filters from the values people type (names; emails or external ids for users; names or
    public prefixes for API keys), looked up in `org` only. Unknown names select nothing: a
    member asking for someone else gets zeros, not a hint that the person exists."""
    selected: dict[str, set] = {}
    for dimension, values in names.items():
        values = [v for v in values if v]
        if not values:
            continue
        if dimension == "service_type":
            selected[dimension] = set(values)
        elif dimension == "user":
            emails = Q(user__email__in=[])
            for value in values:
                emails |= Q(user__email__iexact=value)
            members = Membership.objects.filter(org=org).filter(emails | Q(external_id__in=values))
            selected[dimension] = set(members.values_list("user_id", flat=True))
        elif dimension == "api_key":
            keys = ApiKey.objects.filter(org=org).filter(Q(name__in=values) | Q(prefix__in=values))
            selected[dimension] = set(keys.values_list("pk", flat=True))
        elif dimension == "model":
            selected[dimension] = set(LLMModel.objects.filter(name__in=values).values_list("pk", flat=True))
        else:
            model = {"team": Team, "project": Project, "repository": Repository, "agent": Agent, "tag": Tag}[dimension]
            selected[dimension] = set(model.objects.filter(org=org, name__in=values).values_list("pk", flat=True))
    return Filters.of(**selected)


# --- Pages: resources and request lists ---------------------------------------------------------
# What the Analytics, Agents and Resources pages read beyond the API's four answers. Like
# everything above, each function takes a Query and starts from its scope.

RESOURCE_DIMS = frozenset({"user", "team", "project", "agent"})
RESOURCE_RAW = Table(ResourceUsage, RESOURCE_DIMS, "raw")
RESOURCE_DAY = Table(ResourceDaily, RESOURCE_DIMS, "day")
RESOURCE_MEASURES = ("cpu_core_seconds", "ram_gb_seconds", "storage_gb_seconds")


def resource_sums(
    query: Query, *, by: tuple[str, ...] = (), buckets: Buckets | None = None
) -> dict[tuple, dict[str, Decimal]]:
    """CPU core-seconds, RAM GB-seconds and storage GB-seconds by (bucket index or None, *by).

    Allocations are counted for the time they spend inside the range (and each bucket), as
    ResourceDaily counts them per day: whole clean days come from that rollup, the rest (partial
    and dirty days, and every day when buckets are shorter than a day) from the raw allocations,
    prorated here the way metering.rollups._resources does. Allocations carry a user, team,
    project and agent only, so a filter on any other dimension selects none of them.
    """
    unknown = set(by) - RESOURCE_DIMS
    if unknown:
        raise ValueError(f"Resources have no {sorted(unknown)}")
    result: dict[tuple, dict[str, Decimal]] = {}

    def add(key, values):
        target = result.setdefault(key, dict.fromkeys(RESOURCE_MEASURES, Decimal(0)))
        for name, value in values:
            target[name] += value or 0

    if query.filters.select_nothing:
        return result
    sub_day = buckets is not None and buckets.interval not in ("day", "week")
    parts = Plan(raw=[(query.start, query.end)]) if sub_day else plan(query.org, query.start, query.end)
    if parts.days:
        days = _restrict(ResourceDaily.objects.filter(day__in=parts.days), query, RESOURCE_DAY, RESOURCE_DIMS)
        groups = (["day"] if buckets is not None else []) + list(by)
        sums = {f"r_{name}": Sum(name) for name in RESOURCE_MEASURES}
        bucket_of = _bucket_lookup(buckets, query.org, "day") if buckets is not None else None
        for row in _grouped(days, groups, sums):
            bucket, key = (bucket_of(row[0]), row[1 : len(groups)]) if bucket_of else (None, row[: len(groups)])
            add((bucket, *key), zip(RESOURCE_MEASURES, row[len(groups) :], strict=True))
    if parts.raw:
        overlapping = Q(pk__in=[])
        for a, b in parts.raw:
            overlapping |= Q(start__lt=b, end__gt=a)
        allocations = _restrict(ResourceUsage.objects.filter(overlapping), query, RESOURCE_RAW, RESOURCE_DIMS)
        rows = _fetched(allocations.values_list("start", "end", "cpu_cores", "ram_gb", "storage_gb", *by).order_by())
        # Datetimes compare fast when they share a tzinfo object (no UTC offsets to work out):
        # the bounds are put in the rows' zone. Thousands of allocations a month, split per bucket.
        zone = None
        for start, end, *sizes_and_key in rows:
            if zone is not start.tzinfo:
                zone = start.tzinfo
                intervals = [(a.astimezone(zone), b.astimezone(zone)) for a, b in parts.raw]
                starts = [s.astimezone(zone) for s in buckets.starts] if buckets is not None else []
            sizes, key = sizes_and_key[:3], tuple(sizes_and_key[3:])
            for a, b in intervals:
                lo, hi = max(start, a), min(end, b)
                if lo >= hi:
                    continue
                if buckets is None:
                    pieces = [(None, lo, hi)]
                else:
                    pieces, i = [], bisect.bisect_right(starts, lo) - 1
                    while i < len(starts) - 1 and starts[i] < hi:
                        pieces.append((i, max(lo, starts[i]), min(hi, starts[i + 1])))
                        i += 1
                for bucket, x, y in pieces:
                    seconds = Decimal((y - x).total_seconds())  # as the rollup computes it
                    add(
                        (bucket, *key),
                        [(name, size * seconds) for name, size in zip(RESOURCE_MEASURES, sizes, strict=True)],
                    )
    return result


def usage_records(query: Query) -> QuerySet:
    """The raw usage records the scope and filters select in the range, newest first.

    A lazy QuerySet: the requests table slices one page of it, the CSV export streams it with
    .aiterator(), so neither ever holds the whole range in memory.
    """
    if query.filters.select_nothing:
        return UsageRecord.objects.none()
    rows = UsageRecord.objects.filter(timestamp__gte=query.start, timestamp__lt=query.end)
    return _restrict(rows, query, USAGE_RAW, USAGE_RAW.dims).order_by("-timestamp", "-id")


# A reconnecting page catches up on what arrived while it was away by reading records received
# since, among those timestamped at most this long before: that keeps the read on the
# (org, timestamp) index. A late record (timestamped earlier) that arrived in the gap reaches
# the page's numbers, which it refreshes on reconnecting, but not its feed.
CATCH_UP_WINDOW = timedelta(minutes=10)


def recent_usage(query: Query, *, received_after: datetime | None = None, limit: int = 20) -> list[tuple]:
    """Live Mode's feed: the newest usage records of the query (those received after
    `received_after` when given, as a reconnecting page asks), each with its tag ids."""
    records = usage_records(query)
    if received_after is not None:
        records = records.filter(received_at__gt=received_after, timestamp__gte=received_after - CATCH_UP_WINDOW)
    records = list(records[:limit])
    tags = defaultdict(list)
    links = UsageRecord.tags.through.objects.filter(record__in=[r.pk for r in records]).values_list("record", "tag")
    for record, tag in links:
        tags[record].append(tag)
    return [(record, tags[record.pk]) for record in records]


def conversation_counts(query: Query, dimension: str) -> dict:
    """Distinct conversations per value of `dimension` (user, team, project, agent, model or
    service_type); a conversation that spans two values counts for each. Counted in SQL."""
    if dimension not in CONVERSATION_DAY.dims:
        raise ValueError(f"Conversations are not counted by {dimension}")
    if query.filters.select_nothing:
        return {}
    parts = plan(query.org, query.start, query.end)
    if dimension == "agent" and _whole_org(query) and parts.days:
        return _conversations_per_agent(query, parts)
    table = _covering(CONVERSATION_DAY, query, USAGE_RAW.dims)
    days, raw = _split(query, parts, table)
    pairs = []
    if days:
        qs = _restrict(ConversationDaily.objects.filter(day__in=days), query, table, USAGE_RAW.dims)
        pairs.append(qs)
    if raw:
        pairs.append(_restrict(UsageRecord.objects.filter(_time_q(raw)), query, USAGE_RAW, USAGE_RAW.dims))
    union = _union(
        [
            qs.exclude(conversation_id="")
            .values(r_value=F(dimension), r_conversation=F("conversation_id"))
            .order_by()
            .distinct()
            for qs in pairs
        ]
    )
    if union is None:
        return {}
    # UNION leaves distinct (value, conversation) pairs; counting them per value is one more GROUP BY.
    sql, params = union.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT u.r_value, COUNT(*) FROM ({sql}) u GROUP BY u.r_value", params)
        return {_typed(dimension, value) if value is not None else None: n for value, n in cursor.fetchall()}


def session_counts(query: Query, buckets: Buckets, *, by: str = "agent") -> dict[tuple, int]:
    """Distinct sessions per (bucket index, value of `by`), as the sessions timeseries counts them
    (a session counts in every bucket it has a record or an event in)."""
    if by not in SESSION_DAY.dims:
        raise ValueError(f"Sessions are not counted by {by}")
    per: dict[tuple, set] = defaultdict(set)
    if query.filters.select_nothing:
        return {}
    daily = buckets.interval in ("day", "week")
    parts = plan(query.org, query.start, query.end) if daily else Plan(raw=[(query.start, query.end)])
    table = SESSION_DAY if query.filters.dims <= SESSION_DAY.dims else None
    days, raw = _split(query, parts, table)
    if days:
        qs = _restrict(SessionDaily.objects.filter(day__in=days), query, table, table.dims)
        for day, value, session in qs.values_list("day", by, "session").order_by().distinct():
            per[(buckets.index(_local_midnight(day, query.org.tzinfo)), value)].add(session)
    seconds = buckets.raw_slot_seconds
    for raw_table, kind_dims in RAW_KINDS if raw else ():
        qs = _restrict(raw_table.model.objects.filter(_time_q(raw)), query, raw_table, kind_dims)
        qs = qs.filter(session__isnull=False).annotate(r_slot=EpochSlot("timestamp", seconds))
        for slot, value, session in qs.values_list("r_slot", by, "session").order_by().distinct():
            per[(buckets.index(_slot_start(slot, seconds)), value)].add(session)
    return {key: len(sessions) for key, sessions in per.items()}


def activity_series(query: Query, buckets: Buckets, *, kinds: Iterable[str] = ()) -> dict[tuple, dict[str, int]]:
    """Events and quantity by (bucket index, kind), only of `kinds` when given: activity_sums over time."""
    result: dict[tuple, dict[str, int]] = defaultdict(lambda: {"events": 0, "quantity": 0})
    if query.filters.select_nothing:
        return result
    kinds = list(kinds)
    if buckets.interval in ("day", "week"):
        parts = plan(query.org, query.start, query.end)
    elif _whole_org(query) and buckets.whole_utc_hours:  # whole hours from ActivityHourlyOrg
        parts = plan(query.org, query.start, query.end, hours=True)
        hours = Q(day__in=parts.days) | _hours_q(parts.hours)
        rows = ActivityHourlyOrg.objects.filter(hours, org=query.org, **({"kind__in": kinds} if kinds else {}))
        for hour, kind, events, quantity in rows.values_list("hour", "kind", "events", "quantity"):
            target = result[(buckets.index(hour), kind)]
            target["events"] += events
            target["quantity"] += quantity
        parts = Plan(raw=parts.raw)
    else:
        parts = Plan(raw=[(query.start, query.end)])
    seconds = buckets.raw_slot_seconds
    for grain, queryset in _activity_parts(query, parts):
        if kinds:
            queryset = queryset.filter(kind__in=kinds)
        if grain == "day":
            rows = queryset.values("day", "kind").annotate(r_events=Sum("events"), r_quantity=Sum("quantity"))
        else:
            rows = (
                queryset.annotate(r_slot=EpochSlot("timestamp", seconds))
                .values("r_slot", "kind")
                .annotate(r_events=Count("id"), r_quantity=Sum("quantity"))
            )
        for row in rows.order_by():
            if grain == "day":
                bucket = buckets.index(_local_midnight(row["day"], query.org.tzinfo))
            else:
                bucket = buckets.index(_slot_start(row["r_slot"], seconds))
            target = result[(bucket, row["kind"])]
            target["events"] += row["r_events"] or 0
            target["quantity"] += row["r_quantity"] or 0
    return result


def session_summary(query: Query) -> dict:
    """The summary's session and agent-work figures alone (plus rejected_diffs), computed as
    `summary` computes them, without the distinct users, models, projects and conversations that
    cost most of a summary: the Agents page's cards."""
    return _work_figures(query, plan(query.org, query.start, query.end), _total(usage_sums(query)))


def _work_figures(query: Query, parts: Plan, total: dict) -> dict:
    sessions, seconds = session_stats(query, parts).get(None, (0, 0.0))
    counted = (
        ActivityKind.AGENT_RUN,
        ActivityKind.DIFF_ACCEPTED,
        ActivityKind.DIFF_REJECTED,
        ActivityKind.TASK_COMPLETED,
    )
    kinds = {kind: values for (kind,), values in activity_sums(query, parts, kinds=counted).items()}
    none = {"events": 0, "quantity": 0, "lines": 0}
    diffs = kinds.get(ActivityKind.DIFF_ACCEPTED, none)
    return {
        "input_tokens": total["input_tokens"],
        "output_tokens": total["output_tokens"],
        "total_tokens": total["input_tokens"] + total["output_tokens"],
        "cost": format_money(total["cost"]),
        "sessions": sessions,
        "avg_session_duration_seconds": float(_ratio(seconds, sessions)),
        "avg_cost_per_session": format_money(_ratio(total["session_cost"], sessions, 10)),
        "agent_runs": kinds.get(ActivityKind.AGENT_RUN, none)["quantity"],
        "accepted_diffs": diffs["quantity"],
        "rejected_diffs": kinds.get(ActivityKind.DIFF_REJECTED, none)["quantity"],
        "tasks_completed": kinds.get(ActivityKind.TASK_COMPLETED, none)["quantity"],
        "lines_of_code": diffs["lines"],
    }
