"""Daily rollups: rebuilt whole per (org, org-local day) from the raw rows.

Rebuilding a day makes its rows of each rollup those of one aggregate query
(writing only the rows that changed: `_write_day`), in one transaction: running
it twice changes nothing, and readers never see a half-built day. Ingestion
marks the days it touches in DirtyDay; `dirty_days_rebuild` (the Celery beat
task) clears them.
"""

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Cast, Round, TruncHour
from django.utils import timezone

from accounts.models import Organization
from metering.models import (
    ActiveUserDaily,
    ActivityDaily,
    ActivityDailyBy,
    ActivityEvent,
    ActivityHourlyOrg,
    ConversationDaily,
    ConversationDayCount,
    DirtyDay,
    ResourceDaily,
    ResourceUsage,
    RollupDimensions,
    SessionDaily,
    UsageDaily,
    UsageDailyBy,
    UsageDailyByTag,
    UsageDimensions,
    UsageHourly,
    UsageHourlyBy,
    UsageHourlyOrg,
    UsageRecord,
    UsageRecordTag,
)


def integer_sum(field: str, **kwargs) -> Cast:
    """SUM of an integer column as an integer: PostgreSQL's SUM(bigint) is a numeric, which Django
    turns back into int row by row, and the query layer reads rows without Django's converters.
    `kwargs` go to Sum (filter, default)."""
    return Cast(Sum(field, **kwargs), BigIntegerField())


def usage_measures(record: str = "") -> dict:
    """The rollups' usage measures as aggregates of records, named r_<rollup field> (a bare
    "cost" would shadow the column it sums); `record` is the path to the record ("record__"
    from its tag links).

    Requests are the sum of request_count (a record may stand for several requests, or none:
    DESIGN §12.8), not a count of records; failed ones default to 0 where no record failed,
    as the COUNT they replace did (the rollup columns are NOT NULL)."""
    return {
        "r_requests": integer_sum(f"{record}request_count"),
        "r_failed_requests": integer_sum(f"{record}request_count", filter=Q(**{f"{record}status": "error"}), default=0),
        "r_input_tokens": integer_sum(f"{record}input_tokens"),
        "r_cached_input_tokens": integer_sum(f"{record}cached_input_tokens"),
        "r_cache_write_tokens": integer_sum(f"{record}cache_write_tokens"),
        "r_output_tokens": integer_sum(f"{record}output_tokens"),
        "r_reasoning_tokens": integer_sum(f"{record}reasoning_tokens"),
        "r_cost": Sum(f"{record}cost"),
        "r_session_cost": Sum(f"{record}cost", filter=Q(**{f"{record}session__isnull": False}), default=Decimal(0)),
    }


USAGE_MEASURES = usage_measures()


@dataclass(frozen=True)
class Staged:
    """Rows grouped from one of the day's staged tables (see `_stage`): `keys` are its columns,
    named as the rollup's fields, and each of `sums` the sum of its r_<field> column (staged_sum)."""

    source: str  # a staged table, or any FROM item over them
    keys: tuple[str, ...]
    sums: tuple[str, ...] = ()
    where: str = ""

    @property
    def aliases(self) -> list[str]:
        return [*self.keys, *(f"r_{name}" for name in self.sums)]

    def sql(self) -> str:
        quote = connection.ops.quote_name
        keys = ", ".join(quote(k) for k in self.keys)
        sums = "".join(f", {staged_sum(name)} AS {quote(f'r_{name}')}" for name in self.sums)
        where = f" WHERE {self.where}" if self.where else ""
        return f"SELECT {keys}{sums} FROM {self.source}{where} GROUP BY {keys}"


@dataclass(frozen=True)
class Rollup:
    """How one rollup table is built for a day: from the staged rows, or from a query of its own."""

    table: type
    # Staged rows, or (org, day, start, end) -> the aggregate query (start and end bound the day).
    rows: Staged | Callable[[Organization, date, datetime, datetime], QuerySet]


# The day's usage records and events are read once each, grouped at the finest grain any rollup
# below needs (the hour, every dimension, the session and the conversation), into temporary
# tables: on a 180,000-record day that is ~70,000 rows, and the hourly, daily, conversation and
# session rollups are summed from them instead of each reading the records again.
USAGE_STAGE, ACTIVITY_STAGE = "tally_stage_usage", "tally_stage_activity"
USAGE_KEYS = ("user", "team", "project", "repository", "agent", "model", "api_key", "service_type")
ACTIVITY_KEYS = ("user", "team", "project", "repository", "agent", "kind")
ACTIVITY_MEASURES = ("events", "quantity", "lines_added", "lines_removed")


# Money is staged as a whole number of its smallest unit (10^-10 USD): summing bigints costs
# PostgreSQL a third of summing numerics, and the staged rows are summed five times (~100 ms
# of the busiest day's rebuild). A staged row holds one hour of one conversation: bigint
# overflows past $900M, which would fail the rebuild, not round it.
MONEY_UNIT = Decimal(1).scaleb(-settings.MONEY_DECIMAL_PLACES)
STAGED_MONEY = ("cost", "session_cost")


def staged_sum(name: str) -> str:
    """SQL of the sum of a staged measure (r_<name>), in the rollup field's own unit."""
    return f"SUM(r_{name}) * {MONEY_UNIT:f}" if name in STAGED_MONEY else f"SUM(r_{name})"


def _staged_usage(org, start, end) -> QuerySet:
    window = UsageRecord.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end)
    # The records' band of ids and their ids' range: see _by_tag.
    hours = window.annotate(r_hour=TruncHour("timestamp", tzinfo=UTC), r_band=F("id") / ID_BAND)
    ids = {"r_first_id": Min("id"), "r_last_id": Max("id")}
    in_units = {f"r_{m}": Cast(Round(USAGE_MEASURES[f"r_{m}"] / MONEY_UNIT), BigIntegerField()) for m in STAGED_MONEY}
    measures = {**USAGE_MEASURES, **in_units}
    groups = ("r_hour", *USAGE_KEYS, "session", "conversation_id", "r_band")
    return hours.values(*groups).annotate(**measures, **ids).order_by()


def _staged_activity(org, start, end) -> QuerySet:
    window = ActivityEvent.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end)
    sums = {"r_events": Count("id"), **{f"r_{name}": Sum(name) for name in ACTIVITY_MEASURES[1:]}}
    return window.values(*ACTIVITY_KEYS, "session").annotate(**sums).order_by()


def _stage(org: Organization, start: datetime, end: datetime) -> None:
    with connection.cursor() as cursor:
        for table, rows in ((USAGE_STAGE, _staged_usage), (ACTIVITY_STAGE, _staged_activity)):
            sql, params = rows(org, start, end).query.sql_with_params()
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {sql}", params)


def _unstage() -> None:
    with connection.cursor() as cursor:
        for table in (USAGE_STAGE, ACTIVITY_STAGE):
            cursor.execute(f"DROP TABLE {table}")


ID_BAND = 100_000


def _by_tag(org, day, start, end):
    """The day's records per tag, from their tag links (untagged records have no row here; tags
    are not staged: they would multiply the staged rows). The links are found by the ranges of
    the day's record ids as well: records arrive about in time order, so PostgreSQL reads those
    ranges of links and looks each record up (the 49,000 links of a 131,000-record day) instead
    of probing the links of every record (2.5x as long). The ranges are runs of the bands of
    100,000 ids the day's records fall in: records that came late make a range of their own
    instead of stretching the day's over every id in between."""
    links = UsageRecordTag.objects.filter(record__org=org, record__timestamp__gte=start, record__timestamp__lt=end)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT r_band, MIN(r_first_id), MAX(r_last_id) FROM {USAGE_STAGE} GROUP BY r_band")
        bands = sorted(cursor.fetchall())
    runs = []
    for band, first, last in bands:
        if runs and band == runs[-1][0] + 1:
            runs[-1] = (band, runs[-1][1], last)
        else:
            runs.append((band, first, last))
    if runs:
        links = links.filter(reduce(operator.or_, (Q(record__gte=first, record__lte=last) for _, first, last in runs)))
    dims = {
        "tags": F("tag"),
        **{d: F(f"record__{d}") for d in UsageDimensions.dimension_names()},
    }
    return links.values(**dims).annotate(**usage_measures("record__")).order_by()


def _activity_hourly_org(org, day, start, end):
    window = ActivityEvent.objects.filter(org=org, timestamp__gte=start, timestamp__lt=end)
    hours = window.annotate(r_hour=TruncHour("timestamp", tzinfo=UTC))
    return hours.values("r_hour", "kind").annotate(r_events=Count("id"), r_quantity=Sum("quantity")).order_by()


def _hourly_org(org, day, start, end):
    # From the day's hourly rows, built just before (ROLLUPS order).
    sums = {f"r_{name}": Sum(name) for name in UsageHourly.measure_names()}
    return UsageHourly.objects.filter(org=org, day=day).values("hour").annotate(**sums).order_by()


_SESSION_KEYS = ("session", *RollupDimensions.dimension_names())
# A session is active on a day when any of its records or events is.
_SESSION_ROWS = " UNION ".join(
    f"SELECT {', '.join(connection.ops.quote_name(k) for k in _SESSION_KEYS)} FROM {stage} WHERE {connection.ops.quote_name('session')} IS NOT NULL"
    for stage in (USAGE_STAGE, ACTIVITY_STAGE)
)

ROLLUPS = [
    Rollup(UsageDaily, Staged(USAGE_STAGE, USAGE_KEYS, UsageDaily.measure_names())),
    Rollup(UsageDailyByTag, _by_tag),
    Rollup(UsageHourly, Staged(USAGE_STAGE, ("r_hour", "user", "team", "service_type"), UsageHourly.measure_names())),
    Rollup(UsageHourlyOrg, _hourly_org),
    Rollup(
        ConversationDaily,
        Staged(USAGE_STAGE, ("conversation_id", *UsageDimensions.dimension_names()), where="conversation_id <> ''"),
    ),
    Rollup(ActivityDaily, Staged(ACTIVITY_STAGE, ACTIVITY_KEYS, ACTIVITY_MEASURES)),
    Rollup(ActivityHourlyOrg, _activity_hourly_org),
    Rollup(SessionDaily, Staged(f"({_SESSION_ROWS}) sessions", _SESSION_KEYS)),
]  # fmt: skip


def day_bounds(org: Organization, day: date) -> tuple[datetime, datetime]:
    """[start, end) of an org-local day in aware datetimes: 23 or 25 hours on DST days."""
    tz = org.tzinfo
    return datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=1), time(), tz)


def _write_day(
    table, org: Organization, day: date, columns: list[str], rows: str, params: list, ctes: str = ""
) -> None:
    """Make `table`'s rows of (org, day) the rows `rows` selects (SQL giving `columns` in order,
    each row once; `ctes` are WITH items it may use, their parameters first in `params`).

    On PostgreSQL, once the day has rows, only the difference is written, in one statement: a
    row of the day that the query no longer gives (or gives changed) is deleted, a new or
    changed row inserted, and a row that is the same is left alone. Ingestion rebuilds today
    every minute, and late records touch a few rows of a past day: rewriting every row each
    time cost ~6 us a row in index upkeep and ~57 MB of WAL a day (bench/queries.py).
    Otherwise: delete, then insert.
    """
    quote = connection.ops.quote_name
    name, cols = quote(table._meta.db_table), ", ".join(quote(c) for c in columns)
    # Written person by person, each person's rows of the day share a few pages: a member's 30
    # days are then ~150 page reads instead of one per row (bench/queries.py).
    order = ' ORDER BY "user_id"' if "user_id" in columns else ""
    day_value = connection.ops.adapt_datefield_value(day)
    with_ctes = f"WITH {ctes + ', ' if ctes else ''}"
    if connection.vendor != "postgresql" or not table.objects.filter(org=org, day=day).exists():
        table.objects.filter(org=org, day=day).delete()
        with connection.cursor() as cursor:
            cursor.execute(
                f"{with_ctes}new ({cols}) AS MATERIALIZED ({rows}) INSERT INTO {name} (org_id, day, {cols}) "
                f"SELECT %s, %s, {cols} FROM new{order}",
                [*params, org.pk, day_value],
            )
        return
    # Grouped by every column (GROUP BY takes NULLs as equal), each row is in the day's rows
    # (`keep` is one of their ids), in the query's (`news`), or both. The day's rows that are
    # not kept go: those the query no longer gives, and any extra copies of a row.
    with connection.cursor() as cursor:
        cursor.execute(
            f"{with_ctes}new ({cols}) AS MATERIALIZED ({rows}), "
            f"diff AS (SELECT {cols}, COUNT(*) - COUNT(id) AS news, MIN(id) AS keep "
            f"FROM (SELECT id, {cols} FROM {name} WHERE org_id = %s AND day = %s "
            f"UNION ALL SELECT NULL, {cols} FROM new) day_rows GROUP BY {cols}), "
            f"gone AS (DELETE FROM {name} WHERE org_id = %s AND day = %s AND id NOT IN "
            f"(SELECT keep FROM diff WHERE news > 0 AND keep IS NOT NULL)) "
            f"INSERT INTO {name} (org_id, day, {cols}) SELECT %s, %s, {cols} FROM diff WHERE keep IS NULL{order}",
            [*params, *[org.pk, day_value] * 3],
        )


def _write_from(rollup: Rollup, org: Organization, day: date, start: datetime, end: datetime) -> None:
    if isinstance(rollup.rows, Staged):
        aliases, sql, params = rollup.rows.aliases, rollup.rows.sql(), []
    else:
        query = rollup.rows(org, day, start, end)
        # The aggregate's columns, by their aliases: dimensions by name ("tags" is the tag),
        # then the aggregates named r_<field>.
        aliases = [*query.query.values_select, *query.query.annotation_select]
        sql, params = query.query.sql_with_params()
    fields = {f.name: f for f in rollup.table._meta.concrete_fields}
    columns = [fields["tag" if alias == "tags" else alias.removeprefix("r_")].column for alias in aliases]
    select = ", ".join(f"agg.{connection.ops.quote_name(alias)}" for alias in aliases)
    _write_day(rollup.table, org, day, columns, f"SELECT {select} FROM ({sql}) agg", params)


_NO_ID = "CAST(NULL AS BIGINT)"


def _conversation_neighbours(nearest: str, compare: str) -> str:
    """WITH items: `near` holds the day's (conversation, user, agent), each with the nearest other
    day (MAX of the earlier or MIN of the later ones, as `nearest` and `compare` say) the
    conversation was active on at all (`overall`), with that user and with that agent, from
    one index probe of the conversation's rows for all three. Parameters: org, day, org, day."""
    daily = connection.ops.quote_name(ConversationDaily._meta.db_table)
    return (
        f"today AS (SELECT DISTINCT conversation_id, user_id, agent_id FROM {daily} WHERE org_id = %s AND day = %s), "
        f"near AS (SELECT t.conversation_id, t.user_id, t.agent_id, {nearest}(e.day) AS overall, "
        f"{nearest}(CASE WHEN e.user_id = t.user_id THEN e.day END) AS same_user, "
        # NULL agents are their own group ("no agent"): IS NOT DISTINCT FROM matches them.
        f"{nearest}(CASE WHEN e.agent_id IS NOT DISTINCT FROM t.agent_id THEN e.day END) AS same_agent "
        f"FROM today t LEFT JOIN {daily} e "
        f"ON e.org_id = %s AND e.conversation_id = t.conversation_id AND e.day {compare} %s "
        f"GROUP BY t.conversation_id, t.user_id, t.agent_id)"
    )


def _write_conversation_counts(org: Organization, day: date) -> None:
    """ConversationDayCount of the day: each of its (conversation, user, agent) with the latest
    earlier day the conversation was active on at all, with that user and with that agent, from
    the rows earlier rebuilds wrote, counted by that day for the org, per user and per agent."""
    counts = " UNION ALL ".join(
        f"SELECT '{grain}', {user}, {agent}, {prev}, COUNT(DISTINCT conversation_id) FROM near GROUP BY {keys}"
        for grain, user, agent, prev, keys in (
            ("org", _NO_ID, _NO_ID, "overall", "overall"),
            ("user", "user_id", _NO_ID, "same_user", "user_id, same_user"),
            ("agent", _NO_ID, "agent_id", "same_agent", "agent_id, same_agent"),
        )
    )
    day_value = connection.ops.adapt_datefield_value(day)
    columns = ["grain", "user_id", "agent_id", "prev_day", "conversations"]
    _write_day(
        ConversationDayCount, org, day, columns, counts, [org.pk, day_value] * 2, _conversation_neighbours("MAX", "<")
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


# The one-dimension-at-a-time rollups: for each dimension (or pair, "a,b"), the rollup it is
# summed from (the day's rows, already aggregated). Tags overlap in UsageDailyBy, as in
# UsageDailyByTag. The pairs are those the pages group the whole org by (metering.selectors.PAIRS).
USAGE_BY = {
    **{name: UsageDaily for name in ("user", "team", "project", "repository", "agent", "model", "api_key")},
    "service_type": UsageDaily,
    "tag": UsageDailyByTag,
    "agent,project": UsageDaily,
    "project,service_type": UsageDaily,
    "user,model": UsageDaily,
    "team,model": UsageDaily,
}
ACTIVITY_BY = {name: ActivityDaily for name in ("user", "team", "project", "repository", "agent")}


def _staged_hours(*keys: str) -> str:
    columns = ", ".join(f"{k} AS {UsageDaily._meta.get_field(k).column}" for k in keys)
    sums = "".join(f", {staged_sum(m)} AS {m}" for m in UsageDaily.measure_names())
    return f"SELECT r_hour AS hour, {columns}{sums} FROM {USAGE_STAGE} GROUP BY r_hour, {', '.join(keys)}"


# UsageHourlyBy, from the day's staged usage records grouped by hour and the dimensions the
# whole org's sub-day charts group by, with UsageDaily's column names: each dimension from the
# smallest of these that has it (three passes over the ~70,000 staged rows instead of one that
# grouped them by all five and six over its ~38,000 groups: 300 -> 145 ms on the busiest day).
_PROJECT_HOURS, _AGENT_HOURS = _staged_hours("project", "service_type"), _staged_hours("agent", "model")
USAGE_HOURLY_BY = {
    **dict.fromkeys(("project", "service_type", "project,service_type"), _PROJECT_HOURS),
    **dict.fromkeys(("agent", "model"), _AGENT_HOURS),
    "team": _staged_hours("team"),
}


def _write_by_dimension(org: Organization, day: date, target, sources: dict, measures, keys=()) -> None:
    """`target`'s rows of the day, one dimension at a time, in one statement that reads each
    source's rows of the day once (MATERIALIZED) for all of its dimensions. A source is a
    rollup model, or SQL of rows with UsageDaily's column names (USAGE_HOURLY_BY)."""
    quote = connection.ops.quote_name
    sums = ", ".join(f"SUM({quote(c)})" for c in measures)
    keys_sql = "".join(f"{quote(k)}, " for k in keys)
    tables = {source: f"day_{n}" for n, source in enumerate(dict.fromkeys(sources.values()))}
    ctes, params = [], []
    for source, name in tables.items():
        if isinstance(source, str):
            ctes.append(f"{name} AS MATERIALIZED ({source})")
        else:
            table = quote(source._meta.db_table)
            ctes.append(f"{name} AS MATERIALIZED (SELECT * FROM {table} WHERE org_id = %s AND day = %s)")
            params += [org.pk, connection.ops.adapt_datefield_value(day)]
    pairs = any("," in name for name in sources)
    selects = []
    for name, source in sources.items():
        model = UsageDaily if isinstance(source, str) else source
        parts = [quote(model._meta.get_field(part).column) for part in name.split(",")]
        other = (f", CAST({parts[1]} AS TEXT)" if len(parts) > 1 else ", NULL") if pairs else ""
        selects.append(
            f"SELECT '{name}', CAST({parts[0]} AS TEXT){other}, {keys_sql}{sums} "
            f"FROM {tables[source]} GROUP BY {keys_sql}{', '.join(parts)}"
        )
    columns = ["dimension", "value", *(["other"] if pairs else []), *keys, *measures]
    _write_day(target, org, day, columns, " UNION ALL ".join(selects), params, ", ".join(ctes))


def _write_active_users(org: Organization, day: date) -> None:
    """ActiveUserDaily of the day: the users of its usage and its activity (UNION drops repeats)."""
    selects = [
        f"SELECT CAST(value AS BIGINT) FROM {connection.ops.quote_name(source._meta.db_table)} "
        f"WHERE org_id = %s AND day = %s AND dimension = 'user'"
        for source in (UsageDailyBy, ActivityDailyBy)
    ]
    day_value = connection.ops.adapt_datefield_value(day)
    _write_day(ActiveUserDaily, org, day, ["user_id"], " UNION ".join(selects), [org.pk, day_value] * 2)


def _conversation_rows_of(org: Organization, day: date) -> int:
    return ConversationDaily.objects.filter(org=org, day=day).count()


def _mark_next_conversation_days(org: Organization, day: date) -> None:
    """Late records gave `day` conversations it lacked (or users or agents of them): the next day
    each of its conversations is active on, overall, for the same user and for the same agent,
    may now have `day` as its previous day. Mark those days dirty (read raw until rebuilt). Some
    had it already; rebuilding them changes nothing, and late data is rare."""
    if not ConversationDaily.objects.filter(org=org, day__gt=day).exists():
        return
    day_value = connection.ops.adapt_datefield_value(day)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {_conversation_neighbours('MIN', '>')} "
            "SELECT overall FROM near UNION SELECT same_user FROM near UNION SELECT same_agent FROM near",
            [org.pk, day_value] * 2,
        )
        # (SQLite gives the days as ISO strings.)
        days = {value if isinstance(value, date) else date.fromisoformat(value) for (value,) in cursor if value}
    mark_days_dirty(org, days)


def rollup_day_rebuild(*, org: Organization, day: date) -> None:
    """Rebuild every rollup of one org-local day, in one transaction."""
    start, end = day_bounds(org, day)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Measured on a 10M-record day (bench/queries.py): compiling these one-off
            # aggregates costs the JIT ~50 ms each for nothing; the default work_mem sends
            # their sorts to disk; the planner, guessing 6x too many groups, sorts 180,000 rows
            # where hashing them takes half the time; and it hash-joins the whole tag table to a
            # day's records (640 ms) where probing the (record, tag) index per record takes 190 ms.
            # The rebuild's other joins probe an index per row as well.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; SET LOCAL enable_sort = off; "
                    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
                )
        conversation_rows_before = _conversation_rows_of(org, day)
        _stage(org, start, end)
        for rollup in ROLLUPS:
            _write_from(rollup, org, day, start, end)
        _write_by_dimension(org, day, UsageHourlyBy, USAGE_HOURLY_BY, UsageDaily.measure_names(), ("hour",))
        _unstage()
        usage_measures = [f.column for f in UsageDailyBy._meta.concrete_fields if f.name in UsageDaily.measure_names()]
        _write_by_dimension(org, day, UsageDailyBy, USAGE_BY, usage_measures)
        _write_by_dimension(org, day, ActivityDailyBy, ACTIVITY_BY, ACTIVITY_MEASURES, ("kind",))
        _write_conversation_counts(org, day)
        _write_active_users(org, day)
        ResourceDaily.objects.filter(org=org, day=day).delete()
        ResourceDaily.objects.bulk_create(_resources(org, day, start, end))
        # Records are never removed, so a day's conversation rows only ever grow: the same count
        # means the same rows, and no later day's previous day changed.
        if _conversation_rows_of(org, day) != conversation_rows_before:
            _mark_next_conversation_days(org, day)


def dirty_days_rebuild(*, limit: int | None = None) -> int:
    """Rebuild the days ingestion marked, oldest mark first; returns how many were rebuilt.

    A mark is cleared only if nobody re-marked the day while it was rebuilt
    (its version is unchanged), so nothing written meanwhile is lost.
    """
    done = 0
    # Two passes: the second takes the later days the first one's rebuilds marked (see
    # _mark_next_conversation_days), whose own rebuilds mark nothing more.
    for _ in range(2):
        marks = DirtyDay.objects.select_related("org").order_by("marked_at")
        marks = list(marks[: limit - done] if limit else marks)
        for mark in marks:
            with transaction.atomic():
                rollup_day_rebuild(org=mark.org, day=mark.day)
                DirtyDay.objects.filter(pk=mark.pk, version=mark.version).delete()
            done += 1
        if not marks or (limit and done >= limit):
            break
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


def mark_days_dirty(org: Organization, days: Iterable[date]) -> None:
    """Mark (org, day) rollups stale. Re-marking a marked day bumps its version, so a
    rollup that was rebuilding it meanwhile leaves the mark for the next run."""
    days = sorted(set(days))
    if not days:
        return
    table = connection.ops.quote_name(DirtyDay._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = ", ".join(["(%s, %s, %s, 1)"] * len(days))
    params = [value for day in days for value in (org.pk, connection.ops.adapt_datefield_value(day), now)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (org_id, day, marked_at, version) VALUES {rows} "
            f"ON CONFLICT (org_id, day) DO UPDATE SET version = {table}.version + 1, marked_at = excluded.marked_at",
            params,
        )
