"""Daily rollups: rebuilt whole per (org, org-local day) from the raw rows.

Rebuilding a day deletes its rollup rows and inserts them again from one
aggregate query per rollup, in one transaction: running it twice changes
nothing, and readers never see a half-built day. Ingestion marks the days it
touches in DirtyDay; `dirty_days_rebuild` (the Celery beat task) clears them.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncHour

from accounts.models import Organization
from metering.models import (
    ActivityDaily,
    ActivityEvent,
    ConversationDaily,
    DirtyDay,
    ResourceDaily,
    ResourceUsage,
    SessionDaily,
    UsageDaily,
    UsageDailyBy,
    UsageDailyByTag,
    UsageDailyNarrow,
    UsageHourly,
    UsageRecord,
)

# Aggregates are named r_<rollup field>: a bare "cost" would shadow the column it sums.
USAGE_MEASURES = {
    "r_requests": Count("id"),
    "r_failed_requests": Count("id", filter=Q(status="error")),
    "r_input_tokens": Sum("input_tokens"),
    "r_cached_input_tokens": Sum("cached_input_tokens"),
    "r_cache_write_tokens": Sum("cache_write_tokens"),
    "r_output_tokens": Sum("output_tokens"),
    "r_reasoning_tokens": Sum("reasoning_tokens"),
    "r_cost": Sum("cost"),
    "r_session_cost": Sum("cost", filter=Q(session__isnull=False), default=Decimal(0)),
}


@dataclass(frozen=True)
class Rollup:
    """How one rollup table is aggregated from its raw table for a time window."""

    table: type
    # (org, day, start, end) -> the aggregate query; start and end bound the org-local day.
    rows: Callable[[Organization, date, datetime, datetime], QuerySet]


def _usage(*dimensions: str):
    def rows(org, day, start, end):
        window = UsageRecord.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end)
        if "tags" in dimensions:
            window = window.filter(tags__isnull=False)  # untagged records have no row here
        return window.values(*dimensions).annotate(**USAGE_MEASURES).order_by()

    return rows


def _narrow(org, day, start, end):
    # From the day's all-dimension rows, already ~8x fewer than the raw ones: UsageDaily
    # comes first in ROLLUPS, so it is rebuilt by then.
    dims = ("user", "team", "project", "agent", "model", "service_type")
    sums = {f"r_{name}": Sum(name) for name in UsageDaily.measure_names()}
    return UsageDaily.objects.filter(org=org, day=day).values(*dims).annotate(**sums).order_by()


def _hourly(org, day, start, end):
    window = UsageRecord.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end)
    hours = window.annotate(r_hour=TruncHour("timestamp", tzinfo=UTC))
    return hours.values("r_hour", "user", "team", "service_type").annotate(**USAGE_MEASURES).order_by()


def _conversations(org, day, start, end):
    window = UsageRecord.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end).exclude(conversation_id="")
    dims = ("conversation_id", "user", "team", "project", "agent", "model", "service_type")
    return window.values(*dims).distinct().order_by()


def _activity(org, day, start, end):
    window = ActivityEvent.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end)
    return (
        window.values("user", "team", "project", "repository", "agent", "kind")
        .annotate(
            r_events=Count("id"),
            r_quantity=Sum("quantity"),
            r_lines_added=Sum("lines_added"),
            r_lines_removed=Sum("lines_removed"),
        )
        .order_by()
    )


def _sessions(org, day, start, end):
    # A session is active on a day when any of its records or events is.
    dims = ("session", "user", "team", "project", "agent")
    records = UsageRecord.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end, session__isnull=False)
    events = ActivityEvent.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end, session__isnull=False)
    return records.values(*dims).order_by().union(events.values(*dims).order_by())


ROLLUPS = [
    Rollup(
        UsageDaily,
        _usage("user", "team", "project", "repository", "agent", "model", "api_key", "service_type"),
    ),
    Rollup(UsageDailyNarrow, _narrow),
    Rollup(UsageDailyByTag, _usage("tags", "user", "team", "project", "agent", "model", "service_type")),
    Rollup(UsageHourly, _hourly),
    Rollup(ConversationDaily, _conversations),
    Rollup(ActivityDaily, _activity),
    Rollup(SessionDaily, _sessions),
]


def day_bounds(org: Organization, day: date) -> tuple[datetime, datetime]:
    """[start, end) of an org-local day in aware datetimes: 23 or 25 hours on DST days."""
    tz = org.tzinfo
    return datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=1), time(), tz)


def _insert_from(rollup: Rollup, org: Organization, day: date, start: datetime, end: datetime) -> None:
    query = rollup.rows(org, day, start, end)
    # The aggregate's columns, by their aliases: dimensions by name ("tags" is the tag),
    # then the aggregates named r_<field>. (A union's columns are its first query's.)
    first = query.query.combined_queries[0] if query.query.combinator else query.query
    aliases = [*first.values_select, *first.annotation_select]
    fields = {f.name: f for f in rollup.table._meta.concrete_fields}
    targets = [fields["tag" if alias == "tags" else alias.removeprefix("r_")] for alias in aliases]
    quote = connection.ops.quote_name
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(rollup.table._meta.db_table)} "
            f"(org_id, day, {', '.join(quote(f.column) for f in targets)}) "
            f"SELECT %s, %s, {', '.join('agg.' + quote(alias) for alias in aliases)} FROM ({sql}) agg",
            [org.pk, connection.ops.adapt_datefield_value(day), *params],
        )


def _resources(org: Organization, day: date, start: datetime, end: datetime) -> list[ResourceDaily]:
    """Allocations overlapping the day, each counted for the seconds it spent inside it."""
    totals: dict[tuple, list[Decimal]] = {}
    overlapping = ResourceUsage.objects.filter(org=org, start__lt=end, end__gt=start)
    for r in overlapping.values(
        "user", "team", "project", "agent", "start", "end", "cpu_cores", "ram_gb", "storage_gb"
    ):
        seconds = Decimal((min(r["end"], end) - max(r["start"], start)).total_seconds())
        sums = totals.setdefault((r["user"], r["team"], r["project"], r["agent"]), [Decimal(0)] * 3)
        sums[0] += r["cpu_cores"] * seconds
        sums[1] += r["ram_gb"] * seconds
        sums[2] += r["storage_gb"] * seconds
    return [
        ResourceDaily(
            org=org, day=day, user_id=user, team_id=team, project_id=project, agent_id=agent,
            cpu_core_seconds=cpu, ram_gb_seconds=ram, storage_gb_seconds=storage,
        )
        for (user, team, project, agent), (cpu, ram, storage) in totals.items()
    ]  # fmt: skip


# UsageDailyBy's dimensions and the rollup each is summed from (the day's rows, already aggregated).
BY_DIMENSION = {
    **{name: UsageDaily for name in ("user", "team", "project", "repository", "agent", "model", "api_key")},
    "service_type": UsageDaily,
    "tag": UsageDailyByTag,
}


def _insert_by_dimension(org: Organization, day: date) -> None:
    measures = [f.column for f in UsageDailyBy._meta.concrete_fields if f.name in UsageDaily.measure_names()]
    sums = ", ".join(f"SUM({connection.ops.quote_name(c)})" for c in measures)
    target = connection.ops.quote_name(UsageDailyBy._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in measures)
    with connection.cursor() as cursor:
        for name, source in BY_DIMENSION.items():
            column = connection.ops.quote_name(source._meta.get_field(name).column)
            cursor.execute(
                f"INSERT INTO {target} (org_id, day, dimension, value, {columns}) "
                f"SELECT org_id, day, %s, CAST({column} AS TEXT), {sums} "
                f"FROM {connection.ops.quote_name(source._meta.db_table)} WHERE org_id = %s AND day = %s "
                f"GROUP BY org_id, day, {column}",
                [name, org.pk, connection.ops.adapt_datefield_value(day)],
            )


def rollup_day_rebuild(*, org: Organization, day: date) -> None:
    """Rebuild every rollup of one org-local day, in one transaction."""
    start, end = day_bounds(org, day)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Measured on a 10M-record day (bench/queries.py): compiling these one-off
            # aggregates costs the JIT ~50 ms each for nothing; the default work_mem sends
            # their sorts to disk; and the planner hash-joins the whole tag table to a day's
            # records (640 ms) where probing the (record, tag) index per record takes 190 ms.
            # The only join in a rebuild is that one.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; "
                    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
                )
        for rollup in ROLLUPS:
            rollup.table.objects.filter(org=org, day=day).delete()
            _insert_from(rollup, org, day, start, end)
        UsageDailyBy.objects.filter(org=org, day=day).delete()
        _insert_by_dimension(org, day)
        ResourceDaily.objects.filter(org=org, day=day).delete()
        ResourceDaily.objects.bulk_create(_resources(org, day, start, end))


def dirty_days_rebuild(*, limit: int | None = None) -> int:
    """Rebuild the days ingestion marked, oldest mark first; returns how many were rebuilt.

    A mark is cleared only if nobody re-marked the day while it was rebuilt
    (its version is unchanged), so nothing written meanwhile is lost.
    """
    marks = DirtyDay.objects.select_related("org").order_by("marked_at")
    done = 0
    for mark in marks[:limit] if limit else marks:
        with transaction.atomic():
            rollup_day_rebuild(org=mark.org, day=mark.day)
            DirtyDay.objects.filter(pk=mark.pk, version=mark.version).delete()
        done += 1
    return done


def days_with_data(org: Organization, first: date | None, last: date | None) -> list[date]:
    """Every org-local day from `first` (default: the org's earliest data) to `last` (default: today)."""
    if first is None:
        earliest = [
            UsageRecord.objects.filter(org=org).order_by("timestamp").values_list("timestamp", flat=True).first(),
            ActivityEvent.objects.filter(org=org).order_by("timestamp").values_list("timestamp", flat=True).first(),
            ResourceUsage.objects.filter(org=org).order_by("start").values_list("start", flat=True).first(),
        ]
        moments = [m for m in earliest if m is not None]
        if not moments:
            return []
        first = min(moments).astimezone(org.tzinfo).date()
    if last is None:
        last = datetime.now(org.tzinfo).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def rollups_rebuild_days(*, org: Organization, days: Iterable[date], progress=None) -> int:
    """Rebuild the given days of `org`, clearing their marks unless re-marked meanwhile."""
    done = 0
    for day in sorted(set(days)):
        with transaction.atomic():
            version = DirtyDay.objects.filter(org=org, day=day).values_list("version", flat=True).first()
            rollup_day_rebuild(org=org, day=day)
            if version is not None:
                DirtyDay.objects.filter(org=org, day=day, version=version).delete()
        done += 1
        if progress:
            progress(1)
    return done


def rollups_rebuild(
    *, orgs: Iterable[Organization], first: date | None = None, last: date | None = None, progress=None
) -> int:
    """Rebuild every day of `orgs` in [first, last]; `progress(n)` is called per day. Returns days rebuilt."""
    return sum(rollups_rebuild_days(org=org, days=days_with_data(org, first, last), progress=progress) for org in orgs)
