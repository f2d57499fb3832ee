"""Distinct things (users, sessions, conversations) and activity events: counted across parts."""

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import date, timedelta

from django.db import connection
from django.db.models import BigIntegerField, Count, F, Q, QuerySet, Sum
from django.db.models.functions import Cast

from accounts.models import Role
from metering.models import (
    ActivityDaily,
    ActivityDailyBy,
    ActivityEvent,
    ActivityHourlyOrg,
    ConversationDaily,
    ConversationDayCount,
    Session,
    SessionDaily,
    UsageRecord,
)
from metering.rollups import integer_sum
from metering.selectors.buckets import Buckets, EpochSlot, _local_midnight, _slot_start
from metering.selectors.plan import Plan, _hours_q, _split, _time_q, plan
from metering.selectors.query import Query
from metering.selectors.sums import _grouped, _typed
from metering.selectors.tables import (
    ACTIVITY_BY_DIMS,
    ACTIVITY_DAY,
    ACTIVITY_DIMS,
    ACTIVITY_RAW,
    CONVERSATION_DAY,
    RAW_KINDS,
    SESSION_DAY,
    USAGE_RAW,
    _covering,
    _restrict,
    _whole_org,
)


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


def session_series(query: Query, buckets: Buckets) -> list[int]:
    """Distinct sessions per bucket, as the sessions timeseries counts them."""
    per = _sessions_per_bucket(query, buckets)
    return [len(per.get((i, None), ())) for i in range(len(buckets.starts) - 1)]


def _sessions_per_bucket(query: Query, buckets: Buckets, by: str | None = None) -> dict[tuple, set]:
    """{(bucket index, value of `by` or None): the distinct sessions with a record or an event in
    that bucket}: SessionDaily rows for whole clean days when buckets are days or weeks, else raw."""
    per: dict[tuple, set] = defaultdict(set)
    if query.filters.select_nothing:
        return per
    daily = buckets.interval in ("day", "week")
    parts = plan(query.org, query.start, query.end) if daily else Plan(raw=[(query.start, query.end)])
    table = SESSION_DAY if query.filters.dims <= SESSION_DAY.dims else None
    days, raw = _split(query, parts, table)
    columns = [by] if by else []
    if days:
        qs = _restrict(SessionDaily.objects.filter(day__in=days), query, table, table.dims)
        for day, *value, session in qs.values_list("day", *columns, "session").order_by().distinct():
            per[(buckets.index(_local_midnight(day, query.org.tzinfo)), *(value or [None]))].add(session)
    seconds = buckets.raw_slot_seconds
    for raw_table, kind_dims in RAW_KINDS if raw else ():
        qs = _restrict(raw_table.model.objects.filter(_time_q(raw)), query, raw_table, kind_dims)
        qs = qs.filter(session__isnull=False).annotate(r_slot=EpochSlot("timestamp", seconds))
        for slot, *value, session in qs.values_list("r_slot", *columns, "session").order_by().distinct():
            per[(buckets.index(_slot_start(slot, seconds)), *(value or [None]))].add(session)
    return per


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
    return {key: len(sessions) for key, sessions in _sessions_per_bucket(query, buckets, by).items()}


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
