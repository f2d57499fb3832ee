"""Summing usage: each part of a range read from the smallest table that answers it, and added up."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import BigIntegerField, Count, F, Q, QuerySet, Sum
from django.db.models.functions import Cast

from metering.models import (
    UsageDailyBy,
    UsageHourlyBy,
)
from metering.rollups import USAGE_HOURLY_BY, USAGE_MEASURES, day_bounds, integer_sum
from metering.selectors.buckets import Buckets, EpochSlot, WidthBucket, _bucket_lookup, _thresholds
from metering.selectors.plan import Plan, _hours_q, _merge, _time_q, plan
from metering.selectors.query import MEASURES, MONEY_MEASURES, Query
from metering.selectors.tables import (
    PAIRS,
    USAGE_HOURLY,
    USAGE_HOURLY_ORG,
    USAGE_RAW,
    Table,
    _by_dimension_ok,
    _day_table,
    _raw_group,
    _restrict,
    _stored,
    _whole_org,
)


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
