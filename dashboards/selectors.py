"""Reads for the dashboard pages, composed from the query layer (metering.selectors).

Every function here takes the viewer's `Scope` (directly or inside a `Query`) and
starts from it. Usage, activity and sessions are read only through
metering.selectors, so a page shows what the analytics API shows for the same
filters; this module adds names, colours, buckets shaped for charts, and rows
shaped for tables. Each function reads a fixed number of times however many
rows it returns: names are fetched once per table, never once per row.

Sections:
  Filter bar   the options each filter offers the viewer
  People       names, emails and team badges of the users a table shows
  Charts       the buckets of a chart and the JSON that static/js/charts.js draws
  Tables       sorting, searching and paging rows held in memory
  Overview     tokens by project per bucket; the usage leaderboard
  Usage        the breakdown by user or by team, and its activity chart
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from accounts.access import Scope
from accounts.models import ApiKey, Membership, Role, Tag, Team
from metering import selectors as metering
from metering.models import ActivityKind, Agent, Project, Repository, ServiceType
from metering.selectors import (
    INTERVAL_LENGTHS,
    INTERVALS,
    Buckets,
    Filters,
    Query,
    activity_sums,
    among,
    dimension_names,
    plan,
    usage_sums,
    usage_trends,
)

# Shown for usage without a project or team, and for the series folded into "Others".
NEUTRAL_COLOUR = "#98a2b3"
# static/js/charts.js's palette without its grey (NEUTRAL_COLOUR's), for teams and projects nobody gave a colour.
PALETTE = ("#4f46e5", "#0d9488", "#f59e0b", "#db2777", "#0284c7", "#7c3aed", "#65a30d", "#ea580c")
_DEFAULT_COLOURS = {Team: Team._meta.get_field("colour").default, Project: Project._meta.get_field("colour").default}


def colour_of(model, pk: int, colour: str) -> str:
    """The colour a team or project is drawn in, the same on every page: its own, or, while it
    still has the default one that ingestion gives every new team and project (so all of them
    would look alike), a palette colour picked by its id."""
    if colour and colour.lower() != _DEFAULT_COLOURS[model]:
        return colour
    return PALETTE[pk % len(PALETTE)]


# --- Filter bar ----------------------------------------------------------------------------------

# The filter bar's multi-selects, in the order it shows them: (parameter, label).
FILTER_DIMENSIONS = (
    ("team", "Teams"),
    ("user", "Users"),
    ("project", "Projects"),
    ("repository", "Repositories"),
    ("agent", "Agents"),
    ("model", "Models"),
    ("api_key", "API keys"),
    ("tag", "Tags"),
    ("service_type", "Service types"),
)


@dataclass(frozen=True)
class Option:
    """One choice of a filter: `value` is what goes in the URL (a name, an email)."""

    value: str
    label: str
    detail: str = ""
    colour: str = ""


def filter_options(scope: Scope, *, start: datetime | None = None, end: datetime | None = None) -> dict:
    """{dimension: [Option]} of what `scope` may filter on.

    People and API keys follow the scope (a member sees themselves, a manager their
    teams' people and keys); teams are the viewer's own unless they see the whole org.
    Projects, repositories, agents and tags are the org's catalogue. Models are global
    (other orgs' names included), so only those with usage the viewer can see in
    [start, end) are offered. One query per dimension.
    """
    org = scope.org
    teams = Team.objects.filter(org=org)
    if not scope.sees_whole_org:
        teams = teams.filter(pk__in=scope.team_ids)
    members = (
        Membership.objects.filter(scope.users_q())
        .order_by("user__name", "user__email", "external_id")
        .values_list("user__email", "external_id", "user__name")
        .distinct()
    )
    users = []
    for email, external_id, name in members:
        value = email or external_id
        if value:
            users.append(Option(value, name or value, value if name else ""))
    return {
        "team": [
            Option(name, name, colour=colour_of(Team, pk, colour))
            for pk, name, colour in teams.values_list("pk", "name", "colour")
        ],
        "user": users,
        "project": [
            Option(name, name, colour=colour_of(Project, pk, colour))
            for pk, name, colour in Project.objects.filter(org=org).values_list("pk", "name", "colour")
        ],
        "repository": _named(Repository.objects.filter(org=org)),
        "agent": _named(Agent.objects.filter(org=org)),
        "model": _models_seen(scope, start, end),
        "api_key": _api_keys(scope),
        "tag": _named(Tag.objects.filter(org=org)),
        "service_type": [Option(value, label) for value, label in ServiceType.choices],
    }


def _named(queryset) -> list[Option]:
    return [Option(name, name) for name in queryset.order_by("name").values_list("name", flat=True)]


def _api_keys(scope: Scope) -> list[Option]:
    keys = ApiKey.objects.filter(org=scope.org)
    if scope.role == Role.MANAGER:
        people = Membership.objects.filter(scope.users_q()).values("user_id")
        keys = keys.filter(Q(owner_id__in=people) | Q(default_team_id__in=scope.team_ids))
    elif not scope.sees_whole_org:
        keys = keys.filter(owner_id=scope.user_id)
    options, seen = [], set()
    for name, revoked_at in keys.order_by("name").values_list("name", "revoked_at"):
        # The form takes a key by name, so keys sharing a name are one choice.
        if name not in seen:
            seen.add(name)
            options.append(Option(name, name, "revoked" if revoked_at else ""))
    return options


def _models_seen(scope: Scope, start: datetime | None, end: datetime | None) -> list[Option]:
    if start is None or end is None:
        return []
    rows = usage_sums(Query(scope, start, end), by=("model",))
    names = dimension_names("model", {key[1] for key in rows.sums}, scope.org)
    return [Option(name, name) for name in sorted(names.values(), key=str.lower)]


# --- People --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    name: str
    colour: str


@dataclass(frozen=True)
class Person:
    user_id: int
    key: str  # email, else external id: what the API's by_user lists and the filter takes
    name: str
    email: str
    teams: tuple[Badge, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.key


def people(scope: Scope, user_ids: Iterable[int | None]) -> dict[int, Person]:
    """The people of `user_ids` in the org, with the teams the viewer may see them in. Two queries."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    teams: dict[int, list[Badge]] = defaultdict(list)
    links = among(Membership.teams.through.objects.filter(membership__org=scope.org), "membership__user_id", ids)
    if not scope.sees_whole_org:
        links = links.filter(team_id__in=scope.team_ids)
    for user_id, team_id, name, colour in links.order_by("team__name").values_list(
        "membership__user_id", "team_id", "team__name", "team__colour"
    ):
        teams[user_id].append(Badge(name, colour_of(Team, team_id, colour)))
    result = {}
    members = among(Membership.objects.filter(org=scope.org), "user_id", ids)
    for user_id, email, external_id, name in members.values_list("user_id", "user__email", "external_id", "user__name"):
        if user_id not in ids:
            continue
        key = email or external_id or name or f"user {user_id}"
        result[user_id] = Person(user_id, key, name, email or external_id or "", tuple(teams[user_id]))
    for user_id in ids:  # usage of someone no longer in the org still counts; label it
        result.setdefault(user_id, Person(user_id, f"user {user_id}", "", ""))
    return result


# --- Charts --------------------------------------------------------------------------------------

INTERVAL_LABELS = {"5m": "5 min", "1h": "Hour", "6h": "6 hours", "day": "Day", "week": "Week"}
_TIME_UNITS = {"5m": "minute", "1h": "hour", "6h": "hour", "day": "day", "week": "week"}
MAX_CHART_POINTS = 400


def chart_interval(start: datetime, end: datetime, asked: str | None = None) -> str:
    """The bucket of a page's charts: what the URL asks for, else per day.

    The sections are "per day" in the reference product, and whole days are what the
    daily rollups answer; a period of two days or less is drawn per hour instead.
    """
    if asked:
        return asked
    return "day" if end - start > timedelta(days=2) else "1h"


def interval_choices(start: datetime, end: datetime, current: str) -> list[str]:
    """The intervals worth offering for a period: between 2 and MAX_CHART_POINTS bars."""
    span = end - start
    choices = [i for i in INTERVALS if 2 <= span / INTERVAL_LENGTHS[i] <= MAX_CHART_POINTS]
    return choices if current in choices else sorted({*choices, current}, key=INTERVALS.index)


def bucket_labels(buckets: Buckets) -> list[str]:
    """Wall-clock starts in the org's zone without an offset, as charts.js wants them."""
    whole_days = buckets.interval in ("day", "week")
    return [s.strftime("%Y-%m-%d" if whole_days else "%Y-%m-%dT%H:%M") for s in buckets.starts[:-1]]


@dataclass
class Series:
    label: str
    colour: str
    values: list
    total: object = 0


def chart_spec(buckets: Buckets, series: Sequence[Series], *, kind: str = "stacked-bar", **options) -> dict:
    """The JSON of one chart over `buckets` (see the top of static/js/charts.js)."""
    return {
        "kind": kind,
        "x": "time",
        "unit": _TIME_UNITS[buckets.interval],
        "labels": bucket_labels(buckets),
        "datasets": [{"label": s.label, "colour": s.colour, "data": s.values} for s in series],
        **options,
    }


def _top_series(per_key: dict, totals: dict, label_of: Callable, colour_of: Callable, n: int, top: int, others: str):
    """The `top` biggest series by total, then everything else added up as one."""
    keys = sorted(per_key, key=lambda k: (-totals[k], str(label_of(k))))
    series = [Series(label_of(k), colour_of(k), per_key[k], totals[k]) for k in keys[:top]]
    if len(keys) > top:
        rest = [sum(per_key[k][i] for k in keys[top:]) for i in range(n)]
        series.append(Series(others, NEUTRAL_COLOUR, rest, sum(totals[k] for k in keys[top:])))
    return series


# --- Tables --------------------------------------------------------------------------------------


@dataclass
class TablePage:
    rows: list
    number: int
    pages: int
    count: int  # rows on every page
    per_page: int

    @property
    def first(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.count else 0

    @property
    def last(self) -> int:
        return min(self.number * self.per_page, self.count)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def sort_rows(rows: list, key: str, descending: bool) -> list:
    """Rows by the attribute `key`, ties by label; numbers and text alike."""
    ordered = sorted(rows, key=lambda row: row.label.lower())
    if key == "label":
        return sorted(ordered, key=lambda row: row.label.lower(), reverse=descending)
    return sorted(ordered, key=lambda row: getattr(row, key), reverse=descending)


def search_rows(rows: list, text: str) -> list:
    """Rows whose search text (name, email, teams) contains every word of `text`."""
    words = text.lower().split()
    if not words:
        return rows
    return [row for row in rows if all(word in row.search_text for word in words)]


def page_of(rows: list, number: int, per_page: int) -> TablePage:
    """Page `number` (1-based) of `rows`; a number past the end gives the last page."""
    pages = max(1, -(-len(rows) // per_page))
    number = min(max(1, number), pages)
    return TablePage(rows[(number - 1) * per_page : number * per_page], number, pages, len(rows), per_page)


def _tokens(sums: dict) -> int:
    return sums["input_tokens"] + sums["output_tokens"]


# --- Overview ------------------------------------------------------------------------------------

TOP_PROJECTS = 8


def tokens_by_project(query: Query, buckets: Buckets) -> list[Series]:
    """Total tokens (input + output) per bucket of each project, biggest first, in its colour.

    Past TOP_PROJECTS the rest are one grey "Other projects" series; usage without a project
    is "No project". Every bucket sums to the API's tokens timeseries for the same buckets.
    """
    n = len(buckets.starts) - 1
    per_project: dict = defaultdict(lambda: [0] * n)
    for (bucket, project), sums in usage_sums(query, by=("project",), buckets=buckets).sums.items():
        per_project[project][bucket] += _tokens(sums)
    projects = {
        pk: (name, colour_of(Project, pk, colour))
        for pk, name, colour in Project.objects.filter(org=query.org, pk__in=[p for p in per_project if p]).values_list(
            "pk", "name", "colour"
        )
    }
    totals = {key: sum(values) for key, values in per_project.items()}
    return _top_series(
        per_project,
        totals,
        lambda p: projects.get(p, ("No project",))[0] if p else "No project",
        lambda p: projects[p][1] if p in projects else NEUTRAL_COLOUR,
        n,
        TOP_PROJECTS,
        "Other projects",
    )


@dataclass
class LeaderRow:
    person: Person
    accepted_diffs: int = 0
    tasks_completed: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    lines_of_code: int = 0
    requests: int = 0

    @property
    def key(self) -> str:
        return self.person.key

    @property
    def label(self) -> str:
        return self.person.label

    @property
    def search_text(self) -> str:
        return " ".join([self.person.name, self.person.email, *(t.name for t in self.person.teams)]).lower()


def leaderboard(query: Query) -> list[LeaderRow]:
    """Per user: accepted diffs, tasks completed, tokens, cost and agent lines of code.

    Everyone with usage or activity in the period, as `summary` counts them: the rows add
    up to its accepted_diffs, tasks_completed, total_tokens, cost and lines_of_code.
    """
    usage = usage_sums(query, by=("user",))
    activity = activity_sums(
        query,
        plan(query.org, query.start, query.end),
        by=("user",),
        kinds=(ActivityKind.DIFF_ACCEPTED, ActivityKind.TASK_COMPLETED),
    )
    found = people(query.scope, {key[1] for key in usage.sums} | {user for _, user in activity})
    rows: dict[int, LeaderRow] = {}

    def row(user_id) -> LeaderRow:
        if user_id not in rows:
            rows[user_id] = LeaderRow(found[user_id])
        return rows[user_id]

    for (_, user_id), sums in usage.sums.items():
        target = row(user_id)
        target.tokens, target.cost, target.requests = _tokens(sums), sums["cost"], sums["requests"]
    for (kind, user_id), values in activity.items():
        if kind == ActivityKind.DIFF_ACCEPTED:
            row(user_id).accepted_diffs += values["quantity"]
            row(user_id).lines_of_code += values["lines"]
        elif kind == ActivityKind.TASK_COMPLETED:
            row(user_id).tasks_completed += values["quantity"]
    return list(rows.values())


# --- Usage ---------------------------------------------------------------------------------------

TOP_TEAMS = 10


@dataclass
class BreakdownRow:
    """One user or team of the Usage page's table."""

    pk: int | None  # the user's or team's id (None: usage without a team)
    key: str  # data-row: the user's email (or external id), or the team's name
    label: str
    email: str = ""
    badges: tuple[Badge, ...] = ()
    colour: str = ""
    trend: list = field(default_factory=list)  # requests per bucket
    models: list[str] = field(default_factory=list)  # most requested first
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)

    @property
    def search_text(self) -> str:
        return " ".join([self.label, self.email, *(b.name for b in self.badges)]).lower()

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class UsageBreakdown:
    rows: list[BreakdownRow]
    chart: list[Series]  # by user: active users per bucket; by team: requests per bucket and team


def usage_breakdown(query: Query, buckets: Buckets, *, by: str) -> UsageBreakdown:
    """The Usage page's table and activity chart, by "user" or by "team", without the rows'
    models (`add_models` reads them for the rows shown).

    One read per part of the range gives every row's totals and trend (metering.usage_trends),
    and the chart; then one or two queries for names. Active users per bucket are users with a
    request in it (the reference's definition); the summary's unique_users also counts users
    with activity alone.
    """
    n = len(buckets.starts) - 1
    totals, trends = usage_trends(query, buckets, by=by, measures=("requests", "input_tokens", "output_tokens", "cost"))
    if by == "user":
        found = people(query.scope, totals)
        rows = [
            BreakdownRow(
                pk=user,
                key=found[user].key,
                label=found[user].label,
                email=found[user].email,
                badges=found[user].teams,
                trend=trends[user],
                **totals[user],
            )
            for user in totals
        ]
        active = [sum(map(bool, bucket)) for bucket in zip(*trends.values(), strict=True)] or [0] * n
        chart = [Series("Active users", "", active, None)]
    else:
        teams = dict(
            (pk, (name, colour_of(Team, pk, colour)))
            for pk, name, colour in Team.objects.filter(org=query.org, pk__in=[t for t in totals if t]).values_list(
                "pk", "name", "colour"
            )
        )
        rows = []
        for team in totals:
            name, colour = teams.get(team, ("No team", NEUTRAL_COLOUR)) if team else ("No team", NEUTRAL_COLOUR)
            rows.append(
                BreakdownRow(
                    pk=team,
                    key=name,
                    label=name,
                    badges=(Badge(name, colour),),
                    colour=colour,
                    trend=trends[team],
                    **totals[team],
                )
            )
        colours = {row.label: row.colour for row in rows}
        chart = _top_series(
            {row.label: row.trend for row in rows},
            {row.label: row.requests for row in rows},
            lambda label: label,
            colours.get,
            n,
            TOP_TEAMS,
            "Other teams",
        )
    return UsageBreakdown(rows, chart)


def add_models(query: Query, by: str, rows: list[BreakdownRow]) -> None:
    """Fill in the models of `rows` (a page of the table), most requested first.

    One read of those rows' usage by model: restricted to the rows shown, it is several times
    cheaper than the models of every user of a large org.
    """
    if not rows:
        return
    ids = frozenset(row.pk for row in rows)
    selected = dict(query.filters.selected)
    if None not in ids:  # "No team" cannot be filtered on: read every team's (there are few)
        chosen = selected.get(by)
        selected[by] = ids if chosen is None else chosen & ids
    page = Query(query.scope, query.start, query.end, Filters.of(**selected))
    per_model = usage_sums(page, by=(by, "model"), measures=("requests",)).sums
    names = dimension_names("model", {key[2] for key in per_model}, query.org)
    used: dict = defaultdict(list)
    for (_, value, model), _sums in sorted(
        per_model.items(), key=lambda item: (-item[1]["requests"], str(names.get(item[0][2])))
    ):
        used[value].append(names.get(model, f"model {model}"))
    for row in rows:
        row.models = used[row.pk]


# --- Analytics, Agents and Resources -------------------------------------------------------------
# The other three pages. Like the sections above, they read usage only through the query layer
# (`metering.` below), a fixed number of times per section however many rows they show.

# Service types keep one colour on every chart, as teams and projects keep theirs.
SERVICE_TYPE_COLOURS = {
    ServiceType.TEXT_GENERATION: "#4f46e5",
    ServiceType.AGENT: "#0d9488",
    ServiceType.EMBEDDING: "#d97706",
    ServiceType.SPEECH_TO_TEXT: "#db2777",
    ServiceType.TEXT_TO_SPEECH: "#0284c7",
    ServiceType.IMAGE: "#65a30d",
}
SERVICE_TYPE_LABELS = dict(ServiceType.choices)
TOKEN_COLOURS = {"cached": "#0d9488", "fresh": "#4f46e5", "output": "#f59e0b"}
TOP_PROJECT_SLICES = 6  # the cost-by-project doughnut: the biggest six, then "Others"
TOP_TREND_PROJECTS = 10
TOP_AGENTS = 10
TOP_AGENT_SERIES = 8
TOP_BARS = 10
HOUR_SECONDS = Decimal(3600)
HOURS_PLACES = Decimal("0.0001")


def _money(value) -> Decimal:
    """A cost as the API writes it (metering.format_money): '1.05', not '1.0500000000'."""
    return Decimal(metering.format_money(value))


def _money_series(values: list) -> list[Decimal]:
    return [_money(v) for v in values]


def with_service_type(query: Query, service_type: str | None) -> Query:
    """`query` narrowed to one service type (within any service types it already selects)."""
    if not service_type:
        return query
    chosen = query.filters.get("service_type")
    values = {service_type} if chosen is None else set(chosen) & {service_type}
    filters = metering.Filters.of(**{**dict(query.filters.selected), "service_type": values})
    return Query(query.scope, query.start, query.end, filters)


def _projects(org, ids) -> dict:
    """{project id: (name, colour)}; usage without a project is "No project", in grey."""
    found = {
        pk: (name, colour_of(Project, pk, colour))
        for pk, name, colour in Project.objects.filter(org=org, pk__in=[i for i in ids if i]).values_list(
            "pk", "name", "colour"
        )
    }
    return {i: found.get(i, ("No project", NEUTRAL_COLOUR)) if i else ("No project", NEUTRAL_COLOUR) for i in ids}


@dataclass
class Slice:
    """One part of a whole: a doughnut slice, or a horizontal bar in a ranked list."""

    label: str
    colour: str
    value: object
    share: float = 0.0  # percent of the whole (slices) or of the biggest (bars)
    detail: object = None  # what else a list shows of it: a count, (input, output) tokens, ...
    key: str = ""


def _with_shares(slices: list[Slice], whole=None) -> list[Slice]:
    whole = whole if whole is not None else sum(s.value for s in slices)
    for s in slices:
        s.share = round(float(s.value) * 100 / float(whole), 1) if whole else 0.0
    return slices


def doughnut_spec(slices: Sequence[Slice], *, currency: str, **options) -> dict:
    return {
        "kind": "doughnut",
        "labels": [s.label for s in slices],
        "datasets": [{"label": "Cost", "data": [s.value for s in slices], "colours": [s.colour for s in slices]}],
        "money": True,
        "currency": currency,
        "legend": False,
        **options,
    }


# ---- Analytics ----


@dataclass
class CostOverview:
    series: list[Series]  # cost per bucket of each service type, biggest first
    slices: list[Slice]  # the same, as the period's totals
    total: Decimal


def cost_by_service_type(query: Query, buckets: Buckets) -> CostOverview:
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
            _money_series(per_type[key]),
            _money(totals[key]),
        )
        for key in order
    ]
    slices = [Slice(s.label, s.colour, s.total, key=key) for s, key in zip(series, order, strict=True)]
    return CostOverview(series, _with_shares(slices), _money(sum(totals.values(), Decimal(0))))


def cost_by_project(query: Query) -> list[Slice]:
    """The period's cost by project: the TOP_PROJECT_SLICES biggest, then everything else as "Others"."""
    sums = metering.usage_sums(query, by=("project",)).sums
    costs = {project: values["cost"] for (_, project), values in sums.items()}
    names = _projects(query.org, list(costs))
    order = sorted(costs, key=lambda p: (-costs[p], names[p][0]))
    slices = [Slice(names[p][0], names[p][1], _money(costs[p]), key=names[p][0]) for p in order[:TOP_PROJECT_SLICES]]
    if len(order) > TOP_PROJECT_SLICES:
        rest = _money(sum((costs[p] for p in order[TOP_PROJECT_SLICES:]), Decimal(0)))
        slices.append(Slice("Others", NEUTRAL_COLOUR, rest, detail=f"{len(order) - TOP_PROJECT_SLICES} projects"))
    return _with_shares(slices)


def project_trends(query: Query, buckets: Buckets, *, service_type: str | None = None) -> list[Series]:
    """Cost per bucket of each project (of one service type, if given), in the project's colour.

    The TOP_TREND_PROJECTS most expensive get a line each; the rest are left out (the subtitle says so).
    """
    n = len(buckets.starts) - 1
    per_project: dict = defaultdict(lambda: [Decimal(0)] * n)
    narrowed = with_service_type(query, service_type)
    for (bucket, project), sums in metering.usage_sums(narrowed, by=("project",), buckets=buckets).sums.items():
        per_project[project][bucket] += sums["cost"]
    totals = {key: sum(values, Decimal(0)) for key, values in per_project.items()}
    names = _projects(query.org, list(per_project))
    order = sorted(per_project, key=lambda p: (-totals[p], names[p][0]))
    return [Series(names[p][0], names[p][1], _money_series(per_project[p]), _money(totals[p])) for p in order]


@dataclass
class TopAgent:
    name: str
    project: str  # the project the agent spent most on
    project_colour: str
    conversations: int = 0
    requests: int = 0
    cost: Decimal = Decimal(0)
    url: str = ""  # the Agents page filtered to it (set by the view)


def top_agents(query: Query, limit: int = TOP_AGENTS) -> list[TopAgent]:
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
    names = dimension_names("agent", per_agent, query.org)
    ranked = sorted(per_agent, key=lambda a: (-per_agent[a]["cost"], -per_agent[a]["requests"], names.get(a, "")))
    ranked = ranked[:limit]
    main = {a: max(per_agent[a]["projects"].items(), key=lambda item: (item[1], str(item[0])))[0] for a in ranked}
    projects = _projects(query.org, set(main.values()))
    conversations = metering.conversation_counts(query, "agent") if ranked else {}
    return [
        TopAgent(
            name=names.get(a, f"agent {a}"),
            project=projects[main[a]][0],
            project_colour=projects[main[a]][1],
            conversations=conversations.get(a, 0),
            requests=per_agent[a]["requests"],
            cost=_money(per_agent[a]["cost"]),
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


def service_type_cards(query: Query, buckets: Buckets, *, currency: str) -> list[ServiceCard]:
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
    names = _projects(query.org, {project for entry in per_type.values() for project in entry["projects"]})
    cards = []
    for key, entry in per_type.items():
        project_totals = {p: sum(values, Decimal(0)) for p, values in entry["projects"].items()}
        # Rounded as the API writes costs once picked and added up: a month at 6-hour buckets
        # is ~24,000 project-bucket costs, and rounding them all took 100 ms (bench/pages.py).
        projects = [
            replace(series, values=_money_series(series.values))
            for series in _top_series(
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
        tokens = [
            Series("Cached input", TOKEN_COLOURS["cached"], entry["cached"]),
            Series("Fresh input", TOKEN_COLOURS["fresh"], entry["fresh"]),
            Series("Output", TOKEN_COLOURS["output"], entry["output"]),
        ]
        cards.append(
            ServiceCard(
                key=key,
                label=label,
                colour=colour,
                cost=_money(sum(project_totals.values(), Decimal(0))),
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


def request_page(query: Query, number: int, per_page: int = REQUESTS_PER_PAGE) -> TablePage:
    """Page `number` of the period's requests, newest first, as rows of RequestRow.

    The total comes from the rollups (the summary's `requests`), so paging a month of records
    never counts them; the page itself is one query with its names joined, plus one for users.
    """
    count = metering.usage_sums(query).sums.get((None,), {}).get("requests", 0)
    pages = max(1, -(-count // per_page))
    number = min(max(1, number), pages)
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
    users = dimension_names("user", {r.user_id for r in records}, query.org)
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


def request_export_rows(query: Query):
    """The period's requests as value tuples in REQUEST_CSV_COLUMNS order, newest first: one query,
    names joined in SQL, for the export to stream. A user is their email, else their external id."""
    external_id = Membership.objects.filter(org=query.org, user_id=OuterRef("user_id")).values("external_id")[:1]
    records = metering.usage_records(query).annotate(r_user=Coalesce("user__email", Subquery(external_id)))
    return records.values_list(*(expression for _, expression in REQUEST_CSV_COLUMNS))


# ---- Agents ----


@dataclass
class AgentRow:
    """One agent of the Agents page's table: metering.by_agent's numbers plus its diffs."""

    key: str  # data-row: the agent's name ("" for usage without an agent)
    label: str
    sessions: int = 0
    requests: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal(0)
    avg_cost_per_session: Decimal = Decimal(0)
    avg_duration_seconds: float = 0.0
    accepted_diffs: int = 0
    rejected_diffs: int = 0

    @property
    def has_diffs(self) -> bool:
        return bool(self.accepted_diffs or self.rejected_diffs)

    @property
    def accept_rate(self) -> float:
        """Accepted / (accepted + rejected) diffs; -1 when there were none (sorts last)."""
        reviewed = self.accepted_diffs + self.rejected_diffs
        return self.accepted_diffs / reviewed if reviewed else -1.0

    @property
    def avg_duration_text(self) -> str:
        return duration_text(self.avg_duration_seconds)

    @property
    def search_text(self) -> str:
        return self.label.lower()


def agent_rows(query: Query) -> list[AgentRow]:
    """metering.by_agent (the by-agent API) row for row, with accepted and rejected diffs."""
    api_rows = metering.by_agent(query)["agents"]
    diffs = metering.activity_sums(query, plan(query.org, query.start, query.end), by=("agent",))
    reviewed = {
        (kind, agent): values["quantity"]
        for (kind, agent), values in diffs.items()
        if kind in (ActivityKind.DIFF_ACCEPTED, ActivityKind.DIFF_REJECTED)
    }
    names = dimension_names("agent", {agent for _, agent in reviewed}, query.org)
    by_name: dict = defaultdict(lambda: {"accepted": 0, "rejected": 0})
    for (kind, agent), quantity in reviewed.items():
        side = "accepted" if kind == ActivityKind.DIFF_ACCEPTED else "rejected"
        by_name[names.get(agent) if agent is not None else None][side] += quantity
    rows = []
    for row in api_rows:
        name = row["agent"]
        rows.append(
            AgentRow(
                key=name or "",
                label=name or "No agent",
                sessions=row["sessions"],
                requests=row["requests"],
                total_tokens=row["total_tokens"],
                cost=Decimal(row["cost"]),
                avg_cost_per_session=Decimal(row["avg_cost_per_session"]),
                avg_duration_seconds=row["avg_duration_seconds"],
                accepted_diffs=by_name[name]["accepted"] if name in by_name else 0,
                rejected_diffs=by_name[name]["rejected"] if name in by_name else 0,
            )
        )
    return rows


def duration_text(seconds: float) -> str:
    """A duration as people read it: "45s", "26m 9s", "3h 05m"; "—" for none."""
    if not seconds:
        return "—"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours_, minutes = divmod(minutes, 60)
    return f"{hours_}h {minutes:02d}m"


AGENT_METRICS = (("cost", "Cost"), ("tokens", "Tokens"), ("requests", "Requests"), ("sessions", "Sessions"))


def agent_series(query: Query, buckets: Buckets, metric: str) -> list[Series]:
    """`metric` per bucket of each agent (TOP_AGENT_SERIES of them, then "Other agents").

    Cost, tokens and requests add up per bucket to the timeseries API's; a session counts
    once per agent it ran on in a bucket.
    """
    n = len(buckets.starts) - 1
    per_agent: dict = defaultdict(lambda: [Decimal(0) if metric == "cost" else 0] * n)
    if metric == "sessions":
        for (bucket, agent), count in metering.session_counts(query, buckets, by="agent").items():
            per_agent[agent][bucket] += count
    else:
        for (bucket, agent), sums in metering.usage_sums(query, by=("agent",), buckets=buckets).sums.items():
            per_agent[agent][bucket] += (
                sums["cost"] if metric == "cost" else _tokens(sums) if metric == "tokens" else sums["requests"]
            )
        if metric == "cost":
            per_agent = {agent: _money_series(values) for agent, values in per_agent.items()}
    names = dimension_names("agent", per_agent, query.org)
    totals = {agent: sum(values) for agent, values in per_agent.items()}
    return _top_series(
        per_agent,
        totals,
        lambda a: names.get(a, f"agent {a}") if a is not None else "No agent",
        lambda a: "",
        n,
        TOP_AGENT_SERIES,
        "Other agents",
    )


# ---- Resources ----


def usage_totals(query: Query) -> dict:
    """The period's usage measures (the summary's requests, failed_requests, input_tokens,
    cached_input_tokens and output_tokens, without the rest of the summary), plus derived ones."""
    totals = metering.usage_sums(query).sums.get((None,)) or {name: 0 for name in metering.MEASURES}
    return {
        **totals,
        "successful_requests": totals["requests"] - totals["failed_requests"],
        "total_tokens": _tokens(totals),
        "cached_share": round(totals["cached_input_tokens"] * 100 / totals["input_tokens"], 1)
        if totals["input_tokens"]
        else 0,
    }


def token_series(query: Query, buckets: Buckets) -> list[Series]:
    """Cached input, fresh input and output tokens per bucket (input = cached + fresh)."""
    n = len(buckets.starts) - 1
    cached, fresh, output = [0] * n, [0] * n, [0] * n
    for (bucket,), sums in metering.usage_sums(query, buckets=buckets).sums.items():
        cached[bucket] += sums["cached_input_tokens"]
        fresh[bucket] += sums["input_tokens"] - sums["cached_input_tokens"]
        output[bucket] += sums["output_tokens"]
    return [
        Series("Cached input", TOKEN_COLOURS["cached"], cached, sum(cached)),
        Series("Fresh input", TOKEN_COLOURS["fresh"], fresh, sum(fresh)),
        Series("Output", TOKEN_COLOURS["output"], output, sum(output)),
    ]


def _ranked_bars(totals: dict, labels: dict, details: dict | None = None, limit: int = TOP_BARS) -> list[Slice]:
    """The `limit` biggest of `totals` as bars, each's share relative to the biggest."""
    order = sorted(totals, key=lambda k: (-totals[k], str(labels.get(k))))
    bars = [
        Slice(str(labels.get(k, k)), "", totals[k], detail=(details or {}).get(k), key=str(labels.get(k, k)))
        for k in order[:limit]
    ]
    return _with_shares(bars, max(totals.values(), default=0))


CONSUMERS = (("user", "Users"), ("agent", "Agents"))


def top_consumers(query: Query, by: str = "user", limit: int = TOP_BARS) -> list[Slice]:
    """Who drove the tokens (input + output): the top users or agents, biggest first."""
    sums = metering.usage_sums(query, by=(by,)).sums
    totals = {key: _tokens(values) for (_, key), values in sums.items() if _tokens(values)}
    split = {key: (values["input_tokens"], values["output_tokens"]) for (_, key), values in sums.items()}
    if by == "user":
        labels = {key: person.label for key, person in people(query.scope, totals).items()}
    else:
        labels = dimension_names(by, totals, query.org)
        labels[None] = "No agent"
    return _ranked_bars(totals, labels, split, limit)


def tokens_by_model(query: Query, limit: int = TOP_BARS) -> list[Slice]:
    sums = metering.usage_sums(query, by=("model",)).sums
    totals = {key: _tokens(values) for (_, key), values in sums.items() if _tokens(values)}
    split = {key: (values["input_tokens"], values["output_tokens"]) for (_, key), values in sums.items()}
    labels = dimension_names("model", totals, query.org)
    return _ranked_bars(totals, labels, split, limit)


def hours(seconds) -> Decimal:
    """Core- or GB-seconds as core- or GB-hours, to 1/10,000 of an hour."""
    return (Decimal(seconds) / HOUR_SECONDS).quantize(HOURS_PLACES)


@dataclass
class ResourceOverview:
    cpu_core_hours: Decimal
    ram_gb_hours: Decimal
    storage_gb_hours: Decimal
    compute: list[Series]  # CPU core-hours and RAM GB-hours per bucket
    storage: list[Series]  # storage GB-hours per bucket
    compute_agents: list[Slice]  # top agents by core-hours (RAM in the detail)
    storage_agents: list[Slice]


def resource_overview(query: Query, buckets: Buckets) -> ResourceOverview:
    """Compute and storage of the period: totals, per bucket, and by agent. Three reads."""
    totals = metering.resource_sums(query).get((None,), dict.fromkeys(metering.RESOURCE_MEASURES, Decimal(0)))
    n = len(buckets.starts) - 1
    per_bucket = {name: [Decimal(0)] * n for name in metering.RESOURCE_MEASURES}
    for (bucket,), values in metering.resource_sums(query, buckets=buckets).items():
        for name in metering.RESOURCE_MEASURES:
            per_bucket[name][bucket] += values[name]
    series = {name: [hours(v) for v in values] for name, values in per_bucket.items()}
    by_agent = {agent: values for (_, agent), values in metering.resource_sums(query, by=("agent",)).items()}
    labels = dimension_names("agent", by_agent, query.org)
    labels[None] = "No agent"
    cpu = {a: hours(v["cpu_core_seconds"]) for a, v in by_agent.items() if v["cpu_core_seconds"]}
    storage = {a: hours(v["storage_gb_seconds"]) for a, v in by_agent.items() if v["storage_gb_seconds"]}
    return ResourceOverview(
        cpu_core_hours=hours(totals["cpu_core_seconds"]),
        ram_gb_hours=hours(totals["ram_gb_seconds"]),
        storage_gb_hours=hours(totals["storage_gb_seconds"]),
        compute=[
            Series("CPU core-hours", "#4f46e5", series["cpu_core_seconds"]),
            Series("RAM GB-hours", "#0d9488", series["ram_gb_seconds"]),
        ],
        storage=[Series("Storage GB-hours", "#0284c7", series["storage_gb_seconds"])],
        compute_agents=_ranked_bars(cpu, labels, {a: hours(v["ram_gb_seconds"]) for a, v in by_agent.items()}, 8),
        storage_agents=_ranked_bars(storage, labels, limit=8),
    )


PLATFORM_KINDS = (ActivityKind.THREAD_CREATED, ActivityKind.MESSAGE_SENT)


@dataclass
class PlatformActivity:
    threads_created: int
    messages_sent: int
    series: list[Series]


def platform_activity(query: Query, buckets: Buckets) -> PlatformActivity:
    """Threads created and messages sent (their quantities), in total and per bucket."""
    n = len(buckets.starts) - 1
    per_kind = {kind: [0] * n for kind in PLATFORM_KINDS}
    for (bucket, kind), values in metering.activity_series(query, buckets, kinds=PLATFORM_KINDS).items():
        per_kind[kind][bucket] += values["quantity"]
    threads, messages = per_kind[ActivityKind.THREAD_CREATED], per_kind[ActivityKind.MESSAGE_SENT]
    return PlatformActivity(
        threads_created=sum(threads),
        messages_sent=sum(messages),
        series=[Series("Threads created", "#7c3aed", threads), Series("Messages sent", "#0284c7", messages)],
    )
