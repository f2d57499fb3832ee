"""The answers: the analytics API's four (DESIGN section 8) and the page reads built the same way.

Answers are data: money as Decimal (quantised as the price table's money is), times as aware
datetimes in the org's zone. How they are written out (money strings, RFC 3339) is the API's
business (metering.api's schemas), and the pages'.
"""

from collections.abc import Collection, Iterable
from decimal import Decimal

from django.db.models import QuerySet

from accounts.models import Membership, Tag, Team
from metering.models import (
    LINES_OF_CODE_KINDS,
    ActiveUserDaily,
    ActivityKind,
    Agent,
    LLMModel,
    Project,
    Repository,
    UsageRecord,
)
from metering.pricing import quantize_money
from metering.selectors.activity import (
    _distinct,
    activity_sums,
    activity_users,
    conversation_count,
    session_series,
    session_stats,
)
from metering.selectors.buckets import Buckets, interval_for
from metering.selectors.plan import Plan, _time_q, plan
from metering.selectors.query import MEASURES, Query
from metering.selectors.sums import Rows, breakdowns, usage_sums
from metering.selectors.tables import RAW_KINDS, USAGE_RAW, _restrict, _whole_org


def _zero() -> dict[str, object]:
    return {name: Decimal(0) if name in ("cost", "session_cost") else 0 for name in MEASURES}


def _total(rows: Rows) -> dict[str, object]:
    total = _zero()
    for values in rows.sums.values():
        for name in MEASURES:
            total[name] += values[name]
    return total


def _money(value) -> Decimal:
    return quantize_money(Decimal(value))


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
        "start": query.start.astimezone(query.org.tzinfo),
        "end": query.end.astimezone(query.org.tzinfo),
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
        {"start": start, "value": _money(v) if metric == "cost" else v}
        for start, v in zip(buckets.starts[:-1], values, strict=True)
    ]
    return {"metric": metric, "interval": interval, "points": points}


def _series(query: Query, buckets: Buckets, metric: str, by: tuple[str, ...] = ()) -> list:
    n = len(buckets.starts) - 1
    if metric == "sessions":
        return session_series(query, buckets)
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
        row["cost"] = _money(row["cost"])
    return out


BY_TAG_NOTE = (
    "A record with several tags counts under each of them, so by_tag can add up to more than the total; "
    "untagged records are in no by_tag row."
)


def cost_breakdown(query: Query) -> dict:
    """DESIGN section 8, plus `by_tag`: unlike the other lists it overlaps the total (BY_TAG_NOTE)."""
    sums = breakdowns(query, ("model", "project", "user", "team", "service_type", "tag"), ("cost", "requests", *TOKENS))
    lists = {f"by_{d}": _breakdown_rows(query, d, rows) for d, rows in sums.items()}
    total = sum((r["cost"] for r in lists["by_model"]), Decimal(0))
    return {"total": total, **lists, "by_tag_note": BY_TAG_NOTE}


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
                "avg_cost_per_session": _money(_ratio(sums["session_cost"], n, 10)),
                "avg_duration_seconds": _ratio(seconds, n),
            }
        )
    out.sort(key=lambda r: (-r["cost"], -r["requests"], str(r["agent"])))
    for row in out:
        row["cost"] = _money(row["cost"])
    return {"agents": out}


def usage_records(query: Query) -> QuerySet:
    """The raw usage records the scope and filters select in the range, newest first.

    A lazy QuerySet: the requests table slices one page of it, the CSV export streams it with
    .aiterator(), so neither ever holds the whole range in memory.
    """
    if query.filters.select_nothing:
        return UsageRecord.objects.none()
    rows = UsageRecord.objects.filter(timestamp__gte=query.start, timestamp__lt=query.end)
    return _restrict(rows, query, USAGE_RAW, USAGE_RAW.dims).order_by("-timestamp", "-id")


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
        ActivityKind.LINES_CHANGED,
    )
    kinds = {kind: values for (kind,), values in activity_sums(query, parts, kinds=counted).items()}
    none = {"events": 0, "quantity": 0, "lines": 0}
    diffs = kinds.get(ActivityKind.DIFF_ACCEPTED, none)
    return {
        "input_tokens": total["input_tokens"],
        "output_tokens": total["output_tokens"],
        "total_tokens": total["input_tokens"] + total["output_tokens"],
        "cost": _money(total["cost"]),
        "sessions": sessions,
        "avg_session_duration_seconds": float(_ratio(seconds, sessions)),
        "avg_cost_per_session": _money(_ratio(total["session_cost"], sessions, 10)),
        "agent_runs": kinds.get(ActivityKind.AGENT_RUN, none)["quantity"],
        "accepted_diffs": diffs["quantity"],
        "rejected_diffs": kinds.get(ActivityKind.DIFF_REJECTED, none)["quantity"],
        "tasks_completed": kinds.get(ActivityKind.TASK_COMPLETED, none)["quantity"],
        # Accepted diffs' lines and lines changed outside a decision (Claude Code's metric).
        "lines_of_code": sum(kinds.get(kind, none)["lines"] for kind in LINES_OF_CODE_KINDS),
    }
