"""Reads of the Analytics page: costs, project trends, top agents, service-type cards, the requests and their export."""

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from django.db.models import OuterRef, Subquery
from django.db.models.functions import Coalesce

from accounts.models import Membership, Team
from dashboards.charts import (
    NEUTRAL_COLOUR,
    SERVICE_TYPE_COLOURS,
    SERVICE_TYPE_LABELS,
    Series,
    Slice,
    chart_spec,
    colour_of,
    token_kinds,
    top_series,
    with_shares,
)
from dashboards.selectors.common import money, money_series, project_names
from dashboards.tables import TablePage, clamp_page
from metering import selectors as metering
from metering.models import Project

TOP_PROJECT_SLICES = 6  # the cost-by-project doughnut: the biggest six, then "Others"
TOP_TREND_PROJECTS = 10
TOP_AGENTS = 10


def with_service_type(query: metering.Query, service_type: str | None) -> metering.Query:
    """`query` narrowed to one service type (within any service types it already selects)."""
    if not service_type:
        return query
    chosen = query.filters.get("service_type")
    values = {service_type} if chosen is None else set(chosen) & {service_type}
    filters = metering.Filters.of(**{**dict(query.filters.selected), "service_type": values})
    return metering.Query(query.scope, query.start, query.end, filters)


@dataclass
class CostOverview:
    series: list[Series]  # cost per bucket of each service type, biggest first
    slices: list[Slice]  # the same, as the period's totals
    total: Decimal


def cost_by_service_type(query: metering.Query, buckets: metering.Buckets) -> CostOverview:
    """Cost per bucket by service type; the series add up to the summary's cost."""
    n = len(buckets.starts) - 1
    per_type: dict = defaultdict(lambda: [Decimal(0)] * n)
    for (bucket, service_type), sums in metering.usage_sums(query, by=("service_type",), buckets=buckets).sums.items():
        per_type[service_type][bucket] += sums["cost"]
    totals = {key: sum(values, Decimal(0)) for key, values in per_type.items()}
    order = sorted(per_type, key=lambda key: (-totals[key], key))
    series = [
        Series(
            SERVICE_TYPE_LABELS.get(key, key),
            SERVICE_TYPE_COLOURS.get(key, NEUTRAL_COLOUR),
            money_series(per_type[key]),
            money(totals[key]),
        )
        for key in order
    ]
    slices = [Slice(s.label, s.colour, s.total, key=key) for s, key in zip(series, order, strict=True)]
    return CostOverview(series, with_shares(slices), money(sum(totals.values(), Decimal(0))))


def cost_by_project(query: metering.Query) -> list[Slice]:
    """The period's cost by project: the TOP_PROJECT_SLICES biggest, then everything else as "Others"."""
    sums = metering.usage_sums(query, by=("project",)).sums
    costs = {project: values["cost"] for (_, project), values in sums.items()}
    names = project_names(query.org, list(costs))
    order = sorted(costs, key=lambda p: (-costs[p], names[p][0]))
    slices = [Slice(names[p][0], names[p][1], money(costs[p]), key=names[p][0]) for p in order[:TOP_PROJECT_SLICES]]
    if len(order) > TOP_PROJECT_SLICES:
        rest = money(sum((costs[p] for p in order[TOP_PROJECT_SLICES:]), Decimal(0)))
        slices.append(Slice("Others", NEUTRAL_COLOUR, rest, detail=f"{len(order) - TOP_PROJECT_SLICES} projects"))
    return with_shares(slices)


def project_trends(
    query: metering.Query, buckets: metering.Buckets, *, service_type: str | None = None
) -> list[Series]:
    """Cost per bucket of each project (of one service type, if given), in the project's colour.

    The TOP_TREND_PROJECTS most expensive get a line each; the rest are left out (the subtitle says so).
    """
    n = len(buckets.starts) - 1
    per_project: dict = defaultdict(lambda: [Decimal(0)] * n)
    narrowed = with_service_type(query, service_type)
    for (bucket, project), sums in metering.usage_sums(narrowed, by=("project",), buckets=buckets).sums.items():
        per_project[project][bucket] += sums["cost"]
    totals = {key: sum(values, Decimal(0)) for key, values in per_project.items()}
    names = project_names(query.org, list(per_project))
    order = sorted(per_project, key=lambda p: (-totals[p], names[p][0]))
    return [Series(names[p][0], names[p][1], money_series(per_project[p]), money(totals[p])) for p in order]


@dataclass
class TopAgent:
    name: str
    project: str  # the project the agent spent most on
    project_colour: str
    conversations: int = 0
    requests: int = 0
    cost: Decimal = Decimal(0)
    url: str = ""  # the Agents page filtered to it (set by the view)


def top_agents(query: metering.Query, limit: int = TOP_AGENTS) -> list[TopAgent]:
    """The `limit` agents that cost most, each with its main project and its conversations.

    Requests and cost agree with metering.by_agent for the same query. Three reads and one for names.
    """
    sums = metering.usage_sums(query, by=("agent", "project")).sums
    per_agent: dict = {}
    for (_, agent, project), values in sums.items():
        if agent is None:
            continue
        entry = per_agent.setdefault(agent, {"requests": 0, "cost": Decimal(0), "projects": {}})
        entry["requests"] += values["requests"]
        entry["cost"] += values["cost"]
        entry["projects"][project] = entry["projects"].get(project, Decimal(0)) + values["cost"]
    names = metering.dimension_names("agent", per_agent, query.org)
    ranked = sorted(per_agent, key=lambda a: (-per_agent[a]["cost"], -per_agent[a]["requests"], names.get(a, "")))
    ranked = ranked[:limit]
    main = {a: max(per_agent[a]["projects"].items(), key=lambda item: (item[1], str(item[0])))[0] for a in ranked}
    projects = project_names(query.org, set(main.values()))
    conversations = metering.conversation_counts(query, "agent") if ranked else {}
    return [
        TopAgent(
            name=names.get(a, f"agent {a}"),
            project=projects[main[a]][0],
            project_colour=projects[main[a]][1],
            conversations=conversations.get(a, 0),
            requests=per_agent[a]["requests"],
            cost=money(per_agent[a]["cost"]),
        )
        for a in ranked
    ]


@dataclass
class ServiceCard:
    """One service type's card: its total and three views of the period (costs by project,
    requests, tokens by kind), each a chart spec."""

    key: str
    label: str
    colour: str
    cost: Decimal
    requests: int
    total_tokens: int
    views: dict  # "costs" | "requests" | "usage" -> chart spec


SERVICE_VIEWS = (("costs", "Costs"), ("requests", "Requests"), ("usage", "Usage"))
TOP_CARD_PROJECTS = 5


def service_type_cards(query: metering.Query, buckets: metering.Buckets, *, currency: str) -> list[ServiceCard]:
    """A card per service type used in the period, most expensive first. One read for all of them."""
    n = len(buckets.starts) - 1
    measures = ("cost", "requests", "input_tokens", "cached_input_tokens", "output_tokens")
    sums = metering.usage_sums(query, by=("service_type", "project"), buckets=buckets, measures=measures).sums
    per_type: dict = {}
    for (bucket, service_type, project), values in sums.items():
        entry = per_type.setdefault(
            service_type,
            {
                "projects": defaultdict(lambda: [Decimal(0)] * n),
                "requests": [0] * n,
                "cached": [0] * n,
                "fresh": [0] * n,
                "output": [0] * n,
            },
        )
        entry["projects"][project][bucket] += values["cost"]
        entry["requests"][bucket] += values["requests"]
        entry["cached"][bucket] += values["cached_input_tokens"]
        entry["fresh"][bucket] += values["input_tokens"] - values["cached_input_tokens"]
        entry["output"][bucket] += values["output_tokens"]
    names = project_names(query.org, {project for entry in per_type.values() for project in entry["projects"]})
    cards = []
    for key, entry in per_type.items():
        project_totals = {p: sum(values, Decimal(0)) for p, values in entry["projects"].items()}
        # Rounded as the API writes costs once picked and added up: a month at 6-hour buckets
        # is ~24,000 project-bucket costs, and rounding them all took 100 ms (bench/pages.py).
        projects = [
            replace(series, values=money_series(series.values))
            for series in top_series(
                entry["projects"],
                project_totals,
                lambda p: names[p][0],
                lambda p: names[p][1],
                n,
                TOP_CARD_PROJECTS,
                "Other projects",
            )
        ]
        label = SERVICE_TYPE_LABELS.get(key, key)
        colour = SERVICE_TYPE_COLOURS.get(key, NEUTRAL_COLOUR)
        tokens = token_kinds(entry["cached"], entry["fresh"], entry["output"])
        cards.append(
            ServiceCard(
                key=key,
                label=label,
                colour=colour,
                cost=money(sum(project_totals.values(), Decimal(0))),
                requests=sum(entry["requests"]),
                total_tokens=sum(entry["fresh"]) + sum(entry["cached"]) + sum(entry["output"]),
                views={
                    "costs": chart_spec(
                        buckets, projects, money=True, currency=currency, title=f"{label}: cost by project"
                    ),
                    "requests": chart_spec(
                        buckets,
                        [Series("Requests", colour, entry["requests"])],
                        kind="line",
                        area=True,
                        title=f"{label}: requests",
                    ),
                    "usage": chart_spec(buckets, tokens, title=f"{label}: tokens by kind"),
                },
            )
        )
    cards.sort(key=lambda card: (-card.cost, -card.requests, card.label))
    return cards


@dataclass
class RequestRow:
    request_id: str
    timestamp: datetime
    user: str
    team: str
    team_colour: str
    project: str
    project_colour: str
    agent: str
    model: str
    service_type: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    status: str

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


REQUESTS_PER_PAGE = 25


def request_page(query: metering.Query, number: int, per_page: int = REQUESTS_PER_PAGE) -> TablePage:
    """Page `number` of the period's requests, newest first, as rows of RequestRow.

    The total comes from the rollups (the summary's `requests`), so paging a month of records
    never counts them; the page itself is one query with its names joined, plus one for users.
    """
    count = metering.usage_sums(query).sums.get((None,), {}).get("requests", 0)
    number, pages = clamp_page(number, count, per_page)
    offset = (number - 1) * per_page
    records = list(
        metering.usage_records(query)
        .select_related("team", "project", "agent", "model")
        .only(
            "request_id",
            "timestamp",
            "user_id",
            "team__name",
            "team__colour",
            "project__name",
            "project__colour",
            "agent__name",
            "model__name",
            "service_type",
            "status",
            "input_tokens",
            "output_tokens",
            "cost",
        )[offset : offset + per_page]
    )
    users = metering.dimension_names("user", {r.user_id for r in records}, query.org)
    rows = [
        RequestRow(
            request_id=r.request_id,
            timestamp=r.timestamp,
            user=users.get(r.user_id, f"user {r.user_id}"),
            team=r.team.name if r.team else "",
            team_colour=colour_of(Team, r.team_id, r.team.colour) if r.team else "",
            project=r.project.name if r.project else "",
            project_colour=colour_of(Project, r.project_id, r.project.colour) if r.project else NEUTRAL_COLOUR,
            agent=r.agent.name if r.agent else "",
            model=r.model.name,
            service_type=SERVICE_TYPE_LABELS.get(r.service_type, r.service_type),
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            cost=r.cost,
            status=r.status,
        )
        for r in records
    ]
    return TablePage(rows, number, pages, count, per_page)


# The CSV export's columns: (header, value expression of a usage record).
REQUEST_CSV_COLUMNS = (
    ("timestamp", "timestamp"),
    ("request_id", "request_id"),
    ("user", "r_user"),
    ("team", "team__name"),
    ("project", "project__name"),
    ("repository", "repository__name"),
    ("agent", "agent__name"),
    ("model", "model__name"),
    ("provider", "provider"),
    ("service_type", "service_type"),
    ("status", "status"),
    ("api_key", "api_key__name"),
    ("input_tokens", "input_tokens"),
    ("cached_input_tokens", "cached_input_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("output_tokens", "output_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("cost", "cost"),
    ("duration_ms", "duration_ms"),
    ("session_id", "session__session_id"),
    ("conversation_id", "conversation_id"),
)


def request_export_rows(query: metering.Query):
    """The period's requests as value tuples in REQUEST_CSV_COLUMNS order, newest first: one query,
    names joined in SQL, for the export to stream. A user is their email, else their external id."""
    external_id = Membership.objects.filter(org=query.org, user_id=OuterRef("user_id")).values("external_id")[:1]
    records = metering.usage_records(query).annotate(r_user=Coalesce("user__email", Subquery(external_id)))
    return records.values_list(*(expression for _, expression in REQUEST_CSV_COLUMNS))
