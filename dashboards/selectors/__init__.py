"""Reads for the dashboard pages, a module per page, composed from the query layer (metering.selectors).

Every function takes the viewer's `Scope` (directly or inside a `Query`) and starts from it.
Usage, activity and sessions are read only through metering.selectors, so a page shows what
the analytics API shows for the same filters; these modules add names and shape rows and series
for the pages, a fixed number of reads however many rows they return (names are fetched once
per table, never once per row). How things are drawn lives apart, in dashboards.charts
(colours, Chart.js specs) and dashboards.tables (sorting, searching, paging).

  common      the filter bar's options, people and their team badges, project names
  home        the orgs the viewer can open, with their teams
  overview    tokens by project per bucket; the usage leaderboard
  usage       the breakdown by user or by team, and its activity chart
  analytics   cost by service type and project, trends, top agents, cards, requests
  agents      the per-agent table and a metric per bucket by agent
  live        Live Mode's feed and a reconnecting page's catch-up
  resources   tokens, consumers, models, compute, storage and platform activity

Every name the single module had is importable from here; the presentation ones are
re-exported from dashboards.charts and dashboards.tables for code that still imports them so.
"""

from dashboards.charts import (
    INTERVAL_LABELS,
    MAX_CHART_POINTS,
    NEUTRAL_COLOUR,
    PALETTE,
    SERVICE_TYPE_COLOURS,
    SERVICE_TYPE_LABELS,
    TOKEN_COLOURS,
    Series,
    Slice,
    bucket_labels,
    chart_interval,
    chart_spec,
    colour_of,
    doughnut_spec,
    interval_choices,
)
from dashboards.selectors.agents import AGENT_METRICS, TOP_AGENT_SERIES, AgentRow, agent_rows, agent_series
from dashboards.selectors.analytics import (
    REQUEST_CSV_COLUMNS,
    REQUESTS_PER_PAGE,
    SERVICE_VIEWS,
    TOP_AGENTS,
    TOP_CARD_PROJECTS,
    TOP_PROJECT_SLICES,
    TOP_TREND_PROJECTS,
    CostOverview,
    RequestRow,
    ServiceCard,
    TopAgent,
    cost_by_project,
    cost_by_service_type,
    project_trends,
    request_export_rows,
    request_page,
    service_type_cards,
    top_agents,
    with_service_type,
)
from dashboards.selectors.common import FILTER_DIMENSIONS, Badge, Option, Person, filter_options, people
from dashboards.selectors.home import OrgPlace, org_places_for
from dashboards.selectors.live import CATCH_UP_WINDOW, recent_usage
from dashboards.selectors.overview import TOP_PROJECTS, LeaderRow, leaderboard, tokens_by_project
from dashboards.selectors.resources import (
    CONSUMERS,
    HOUR_SECONDS,
    HOURS_PLACES,
    PLATFORM_KINDS,
    TOP_BARS,
    PlatformActivity,
    ResourceOverview,
    hours,
    platform_activity,
    resource_overview,
    token_series,
    tokens_by_model,
    top_consumers,
    usage_totals,
)
from dashboards.selectors.usage import TOP_TEAMS, BreakdownRow, UsageBreakdown, add_models, usage_breakdown
from dashboards.tables import TablePage, duration_text, page_of, search_rows, sort_rows

__all__ = [
    # common
    "FILTER_DIMENSIONS",
    "Badge",
    "Option",
    "Person",
    "filter_options",
    "people",
    # home
    "OrgPlace",
    "org_places_for",
    # live
    "CATCH_UP_WINDOW",
    "recent_usage",
    # overview
    "TOP_PROJECTS",
    "LeaderRow",
    "leaderboard",
    "tokens_by_project",
    # usage
    "TOP_TEAMS",
    "BreakdownRow",
    "UsageBreakdown",
    "add_models",
    "usage_breakdown",
    # analytics
    "REQUEST_CSV_COLUMNS",
    "REQUESTS_PER_PAGE",
    "SERVICE_VIEWS",
    "TOP_AGENTS",
    "TOP_CARD_PROJECTS",
    "TOP_PROJECT_SLICES",
    "TOP_TREND_PROJECTS",
    "CostOverview",
    "RequestRow",
    "ServiceCard",
    "TopAgent",
    "cost_by_project",
    "cost_by_service_type",
    "project_trends",
    "request_export_rows",
    "request_page",
    "service_type_cards",
    "top_agents",
    "with_service_type",
    # agents
    "AGENT_METRICS",
    "TOP_AGENT_SERIES",
    "AgentRow",
    "agent_rows",
    "agent_series",
    # resources
    "CONSUMERS",
    "HOUR_SECONDS",
    "HOURS_PLACES",
    "PLATFORM_KINDS",
    "TOP_BARS",
    "PlatformActivity",
    "ResourceOverview",
    "hours",
    "platform_activity",
    "resource_overview",
    "token_series",
    "tokens_by_model",
    "top_consumers",
    "usage_totals",
    # presentation, from dashboards.charts and dashboards.tables
    "INTERVAL_LABELS",
    "MAX_CHART_POINTS",
    "NEUTRAL_COLOUR",
    "PALETTE",
    "SERVICE_TYPE_COLOURS",
    "SERVICE_TYPE_LABELS",
    "TOKEN_COLOURS",
    "Series",
    "Slice",
    "TablePage",
    "bucket_labels",
    "chart_interval",
    "chart_spec",
    "colour_of",
    "doughnut_spec",
    "duration_text",
    "interval_choices",
    "page_of",
    "search_rows",
    "sort_rows",
]
