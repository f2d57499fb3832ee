"""The query layer: every read of usage, activity and sessions goes through here.

A question is a `Query` (the viewer's `Scope`, a time range and `Filters`)
plus what to group by and how to bucket time. The range is cut into parts
(`plan`): whole org-local days that are clean are read from a daily rollup,
whole UTC hours of clean days may be read from the hourly rollup, and the
rest (the partial first and last days, days still marked dirty) from the raw
rows. Each part is summed in SQL and the parts are added up here, so answers
are exact and current however stale the rollups are.

Rollups come in grains (metering.models); `metering.selectors.sums` picks the smallest one
whose dimensions cover the filters, the group-by and the viewer's scope.
Distinct counts (users, sessions, conversations) union id sets across parts.

A filter selects the rows that carry its dimension: a model filter selects
the usage records of that model and no activity events (events have no
model), so agent runs are 0 under it and sessions are those with such records.
"""

from metering.selectors.activity import (
    activity_series,
    activity_sums,
    activity_users,
    conversation_count,
    conversation_counts,
    session_counts,
    session_stats,
)
from metering.selectors.answers import (
    BY_TAG_NOTE,
    MANY_IDS,
    METRIC_MEASURES,
    METRICS,
    TOKENS,
    among,
    breakdown,
    by_agent,
    cost_breakdown,
    dimension_names,
    session_summary,
    summary,
    timeseries,
    usage_records,
)
from metering.selectors.buckets import (
    HOUR,
    INTERVAL_LENGTHS,
    INTERVALS,
    MAX_POINTS,
    Buckets,
    EpochSlot,
    WidthBucket,
    bucket_starts,
    interval_for,
)
from metering.selectors.plan import Plan, plan, raw_only
from metering.selectors.query import DIMENSIONS, MEASURES, MONEY_MEASURES, Filters, Query, filters_from_names, visible
from metering.selectors.resources import RESOURCE_MEASURES, resource_sums
from metering.selectors.sums import Part, Rows, breakdowns, usage_sums, usage_trends
from metering.selectors.tables import (
    ACTIVITY_BY_DIMS,
    ACTIVITY_DAY,
    ACTIVITY_DIMS,
    ACTIVITY_RAW,
    CONVERSATION_DAY,
    PAIRS,
    RAW_KINDS,
    RESOURCE_DAY,
    RESOURCE_DIMS,
    RESOURCE_RAW,
    SESSION_DAY,
    USAGE_DAILY,
    USAGE_DAILY_BY,
    USAGE_DAILY_BY_TAG,
    USAGE_HOURLY,
    USAGE_HOURLY_ORG,
    USAGE_RAW,
    Table,
)

__all__ = [
    "DIMENSIONS",
    "MEASURES",
    "MONEY_MEASURES",
    "Filters",
    "Query",
    "filters_from_names",
    "visible",
    "HOUR",
    "INTERVALS",
    "MAX_POINTS",
    "bucket_starts",
    "INTERVAL_LENGTHS",
    "interval_for",
    "Buckets",
    "EpochSlot",
    "WidthBucket",
    "Plan",
    "raw_only",
    "plan",
    "Table",
    "USAGE_RAW",
    "USAGE_DAILY_BY",
    "USAGE_HOURLY",
    "USAGE_HOURLY_ORG",
    "USAGE_DAILY",
    "USAGE_DAILY_BY_TAG",
    "ACTIVITY_DIMS",
    "ACTIVITY_BY_DIMS",
    "ACTIVITY_RAW",
    "ACTIVITY_DAY",
    "SESSION_DAY",
    "CONVERSATION_DAY",
    "RAW_KINDS",
    "RESOURCE_DIMS",
    "RESOURCE_RAW",
    "RESOURCE_DAY",
    "PAIRS",
    "Rows",
    "usage_sums",
    "usage_trends",
    "Part",
    "breakdowns",
    "session_stats",
    "conversation_count",
    "activity_users",
    "activity_sums",
    "conversation_counts",
    "session_counts",
    "activity_series",
    "RESOURCE_MEASURES",
    "resource_sums",
    "summary",
    "METRICS",
    "TOKENS",
    "timeseries",
    "METRIC_MEASURES",
    "MANY_IDS",
    "among",
    "dimension_names",
    "breakdown",
    "BY_TAG_NOTE",
    "cost_breakdown",
    "by_agent",
    "usage_records",
    "session_summary",
]
