"""The dashboard views: home, the five pages and their htmx partials, and the Live Mode switch."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts.access import scope_for_request, scopes_for_user
from accounts.services import user_set_live_mode
from dashboards import selectors
from dashboards.charts import INTERVAL_LABELS, chart_interval, chart_spec, doughnut_spec, interval_choices
from dashboards.exports import requests_csv
from dashboards.forms import TABLE_PARAMS, Column, FilterBar, Link, TableForm, table_headers, url_with
from dashboards.routing import live_socket_path
from dashboards.tables import duration_text, page_of, search_rows, sort_rows
from metering import live
from metering import selectors as metering
from metering.models import ServiceType


@login_required
@require_GET
def home(request):
    places = selectors.org_places_for(request.user)
    return render(
        request,
        "dashboards/home.html",
        {
            "places": places,
            # The org the viewer lands on (access.default_org_for); the top bar shows it.
            "scope": places[0].scope if places else None,
        },
    )


# --- The five dashboard pages (DESIGN section 7) ----------------------------------------------
# Each view: access gate -> AnalyticsForm -> selectors -> render the page, or only the partial
# named by the htmx request. Filled in page by page (issue 5).


def page_context(request, org_slug: str, page_name: str) -> dict:
    """What every dashboard page needs: the viewer's scope (404 for another org), their orgs
    for the switcher, the filter form bound to the URL's query string, its `query` (None when
    the parameters are invalid: `filter_form.errors` says why), and the `filter_bar`
    (templates/dashboards/partials/filter_bar.html). The orgs and the bar's options are read
    only if the template shows them, so an htmx partial does not pay for them."""
    from metering.forms import AnalyticsForm

    scope = scope_for_request(request, org_slug)
    form = AnalyticsForm(request.GET, org=scope.org)
    query = form.query(scope) if form.is_valid() else None
    return {
        "scope": scope,
        "scopes": SimpleLazyObject(lambda: scopes_for_user(request.user)),
        "page_name": page_name,
        "filter_form": form,
        "query": query,
        "filter_bar": FilterBar(request, scope, form, query),
    }


# --- Live Mode (DESIGN section 9) ---------------------------------------------------------------
# The Usage and Overview pages carry the toggle. `?live=1` turns it on for that view, `?live=0`
# off; otherwise the viewer's remembered choice decides. The page then opens the websocket of
# dashboards.consumers with its own query string, so the pushed records follow its filters,
# and refreshes the sections named in LIVE_SECTIONS as they arrive.

LIVE_FEED_ROWS = 20
LIVE_SECTIONS = {"overview": ("overview-kpis", "overview-leaderboard"), "usage": ("usage-kpis", "usage-table")}


def live_context(request, context: dict) -> dict:
    """The toggle's state and, when on, the feed's first rows (the newest records of the view)."""
    choice = request.GET.get("live")
    on = choice == "1" or (choice != "0" and request.user.live_mode)
    query, page_name = context["query"], context["page_name"]
    socket_params = request.GET.copy()
    for name in ("live", "page", "section"):
        socket_params.pop(name, None)
    return {
        "on": on,
        "socket_path": f"{live_socket_path(context['scope'].org.slug)}?{socket_params.urlencode()}",
        "since": timezone.now().isoformat(),
        "sections": " ".join(LIVE_SECTIONS[page_name]),
        "feed": live.usage_payloads(query.org, selectors.recent_usage(query, limit=LIVE_FEED_ROWS))
        if on and query is not None
        else [],
        "next": request.get_full_path(),
    }


@login_required
@require_POST
def live_mode(request, org_slug: str):
    """Remember the viewer's Live Mode choice (`live=1|0`); back to `next` without JavaScript."""
    scope = scope_for_request(request, org_slug)
    on = request.POST.get("live") == "1"
    user_set_live_mode(user=request.user, on=on)
    if request.htmx:
        return HttpResponse(status=204)
    target = request.POST.get("next") or reverse("usage", kwargs={"org_slug": scope.org.slug})
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("usage", kwargs={"org_slug": scope.org.slug})
    # The choice is remembered: the URL's own switch would override it, so drop it.
    path, _, query_string = target.partition("?")
    params = QueryDict(query_string, mutable=True)
    params.pop("live", None)
    return redirect(f"{path}?{params.urlencode()}" if params else path)


# --- Overview and Usage -----------------------------------------------------------------------
# A section's links (sort, page, search) change only that section's parameters and swap only
# it, with hx-push-url; every other link or form (filters, period, by user/team, the chart's
# interval) is a whole-page navigation that starts the table afresh, so no link on the page
# ever carries a stale copy of another section's state.


def htmx_section(request, sections: dict[str, str]) -> str | None:
    """The partial an htmx request wants: named by `section`, else by the id of its target.
    Boosted navigation and history restores get the whole page."""
    htmx = request.htmx
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return None
    name = request.GET.get("section") or sections.get(htmx.target or "")
    return name if name in sections.values() else None


def render_section(request, page_name: str, context: dict, section: str | None):
    if context["query"] is None:  # bad parameters: the whole page, saying which
        return render(request, f"dashboards/{page_name}.html", context, status=400)
    template = f"dashboards/{page_name}.html" + (f"#{section}" if section else "")
    return render(request, template, context)


def interval_links(request, choices: Sequence[str], current: str, *, drop: tuple[str, ...] = TABLE_PARAMS) -> list:
    """Links to the page with its charts at another interval (without `drop`), `current` marked."""
    return [
        Link(key, INTERVAL_LABELS[key], url_with(request.path, request.GET, drop=drop, interval=key), key == current)
        for key in choices
    ]


def chart_buckets(request, query, form) -> tuple[metering.Buckets, dict]:
    """The buckets of the page's charts, and the links that pick another interval."""
    interval = chart_interval(query.start, query.end, form.cleaned_data.get("interval") or None)
    links = interval_links(request, interval_choices(query.start, query.end, interval), interval)
    return metering.Buckets.of(query.org, query.start, query.end, interval), {"interval_links": links}


# --- Charts -------------------------------------------------------------------------------------
# Every time chart of the pages is a row of the tables below. A view reads its sections' series
# into the context; `add_charts` then draws each row whose series are there (a section not asked
# for has none) as the Chart.js spec of static/js/charts.js under the row's key.


@dataclass(frozen=True)
class Chart:
    key: str  # the context key of its spec
    series: str  # where its series are: a context key, then attributes ("resources.compute")
    title: str  # str.format()-ed with add_charts' labels
    empty_text: str
    kind: str = "stacked-bar"
    money: bool | None = None  # True or False: drawn as money or not, in the org's currency; None: neither option
    suffix: str = ""
    integer: bool = False


NO_TOKENS = "No tokens in this period"
NO_COST = "No cost in this period"
OVERVIEW_CHARTS = (Chart("tokens_chart", "tokens_series", "Tokens by project", NO_TOKENS),)
USAGE_CHARTS = {  # by user, by team
    "user": (
        Chart(
            "activity_chart", "activity_series", "Active users", "No requests in this period", kind="bar", integer=True
        ),
    ),
    "team": (
        Chart("activity_chart", "activity_series", "Requests by team", "No requests in this period", integer=True),
    ),
}
ANALYTICS_CHARTS = (
    Chart("cost_bars", "cost_overview.series", "Cost per bucket by service type", NO_COST, money=True),
    Chart("trend_chart", "trend_series", "Cost per project", NO_COST, kind="line", money=True),
)
AGENT_CHARTS = {  # by metric
    metric: (
        Chart(
            "agent_chart",
            "agent_series",
            f"{label} per {{interval}} by agent",
            "No agent activity in this period",
            money=metric == "cost",
        ),
    )
    for metric, label in selectors.AGENT_METRICS
}
RESOURCES_CHARTS = (
    Chart("token_chart", "token_series", "Tokens over time: cached and fresh input, and output", NO_TOKENS),
    Chart(
        "compute_chart",
        "resources.compute",
        "CPU core-hours and RAM GB-hours over time",
        "No compute allocated in this period",
        kind="bar",
    ),
    Chart(
        "storage_chart",
        "resources.storage",
        "Storage GB-hours over time",
        "No storage allocated in this period",
        kind="bar",
        suffix="GB-h",
    ),
    Chart(
        "platform_chart",
        "platform.series",
        "Threads created and messages sent over time",
        "No threads or messages in this period",
        kind="bar",
    ),
)


def add_charts(context: dict, buckets: metering.Buckets, charts: Sequence[Chart], **labels) -> None:
    """The spec of each of `charts` whose series the context holds, under its key."""
    for chart in charts:
        name, *attributes = chart.series.split(".")
        if name not in context:
            continue
        options = {}
        if chart.money is not None:
            options.update(money=chart.money, currency=context["query"].org.currency)
        if chart.suffix:
            options["suffix"] = chart.suffix
        options.update(empty_text=chart.empty_text, title=chart.title.format(**labels))
        if chart.integer:
            options["integer"] = True
        series = reduce(getattr, attributes, context[name])
        context[chart.key] = chart_spec(buckets, series, kind=chart.kind, **options)


def table_context(request, rows: list, columns: tuple[Column, ...], *, default_sort: str, per_page: int) -> dict:
    """Search (q), sort and page `rows` as the URL says; totals of every row the search keeps."""
    state = TableForm(request.GET, columns=columns, default_sort=default_sort).state()
    matched = search_rows(rows, state.q)
    page = page_of(sort_rows(matched, state.sort, state.descending), state.page, per_page)

    def page_url(number):
        return url_with(request.path, request.GET, page=number if number > 1 else None)

    return {
        "table": page,
        "headers": table_headers(request.path, request.GET, columns, state),
        "table_state": state,
        "table_totals": {c.key: sum(getattr(row, c.key) for row in matched) for c in columns if c.numeric},
        "previous_url": page_url(page.number - 1) if page.has_previous else "",
        "next_url": page_url(page.number + 1) if page.has_next else "",
        "all_rows": len(rows),
        # The search form carries the rest of the URL (its sort order comes from the table).
        "search_hidden": [
            (name, value)
            for name in request.GET
            if name not in (*TABLE_PARAMS, "section")
            for value in request.GET.getlist(name)
        ],
        "clear_search_url": url_with(request.path, request.GET, drop=("q", "page")),
    }


OVERVIEW_SECTIONS = {"overview-kpis": "kpis", "overview-chart": "tokens-chart", "overview-leaderboard": "leaderboard"}
LEADERBOARD_COLUMNS = (
    Column("label", "User", numeric=False),
    Column("accepted_diffs", "Accepted diffs"),
    Column("tasks_completed", "Tasks completed"),
    Column("tokens", "Tokens"),
    Column("cost", "Cost"),
    Column("lines_of_code", "Agent lines of code"),
)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def overview(request, org_slug: str):
    """Agent runs, sessions, tokens and cost; tokens by project over time; the usage leaderboard."""
    context = page_context(request, org_slug, "overview")
    section, query = htmx_section(request, OVERVIEW_SECTIONS), context["query"]
    if query is not None:
        if section in (None, "kpis"):
            context["summary"] = metering.summary(query)
        if section in (None, "tokens-chart"):
            buckets, links = chart_buckets(request, query, context["filter_form"])
            context.update(links)
            context["tokens_series"] = selectors.tokens_by_project(query, buckets)
            add_charts(context, buckets, OVERVIEW_CHARTS)
        if section in (None, "leaderboard"):
            rows = selectors.leaderboard(query)
            context.update(table_context(request, rows, LEADERBOARD_COLUMNS, default_sort="cost", per_page=10))
            context["leading"] = ("#",)
    if section is None:
        context["live"] = live_context(request, context)
    return render_section(request, "overview", context, section)


USAGE_SECTIONS = {"usage-kpis": "kpis", "usage-activity": "activity", "usage-table": "table"}
USAGE_COLUMNS = {
    by: (
        Column("label", label, numeric=False),
        Column("requests", "Requests"),
        Column("input_tokens", "Input"),
        Column("output_tokens", "Output"),
        Column("cost", "Cost"),
    )
    for by, label in (("user", "User"), ("team", "Team"))
}


@login_required
@require_GET
@vary_on_headers("HX-Request")
def usage(request, org_slug: str):
    """Who uses what, by user or by team (`by=team`): KPIs, an activity chart and the breakdown."""
    context = page_context(request, org_slug, "usage")
    section, query = htmx_section(request, USAGE_SECTIONS), context["query"]
    by = "team" if request.GET.get("by") == "team" else "user"
    context["by"] = by
    context["by_links"] = [
        Link(
            key,
            label,
            url_with(request.path, request.GET, drop=TABLE_PARAMS, by=key if key == "team" else None),
            key == by,
        )
        for key, label in (("user", "By user"), ("team", "By team"))
    ]
    if query is not None:
        if section in (None, "kpis"):
            summary = metering.summary(query)
            context["summary"] = summary
            # One decimal, and none when it is whole: "3.5", "4".
            average = round(summary["requests"] / summary["unique_users"], 1) if summary["unique_users"] else 0
            context["avg_requests"] = int(average) if average == int(average) else average
        if section in (None, "activity", "table"):
            buckets, links = chart_buckets(request, query, context["filter_form"])
            context.update(links)
            breakdown = selectors.usage_breakdown(query, buckets, by=by)
            context["activity_series"] = breakdown.chart
            context["activity_peak"] = max((max(s.values, default=0) for s in breakdown.chart), default=0)
            add_charts(context, buckets, USAGE_CHARTS[by])
            columns = USAGE_COLUMNS[by]
            context["columns"] = columns
            context.update(table_context(request, breakdown.rows, columns, default_sort="cost", per_page=25))
            if section != "activity":
                selectors.add_models(query, by, context["table"].rows)
            context["between"] = ("Trend", "Models")
            context["table_noun"] = f"{by}s"
    if section is None:
        context["live"] = live_context(request, context)
    return render_section(request, "usage", context, section)


# --- Analytics, Agents and Resources -----------------------------------------------------------
# The same shape as Overview and Usage. Links that change only a section's own table state (page,
# sort, search) swap only that section; every other toggle (month, chart metric or interval, the
# trend filter, top consumers by user or agent) asks for the whole page and swaps the page root
# (#dashboard, see templates/dashboards/analytics.html), so no link keeps a stale parameter.

MONTH_DROP = ("range", "month", "start", "end", "interval", *TABLE_PARAMS)


def month_navigation(request, query) -> dict:
    """The Analytics header's month links (?range=month&month=YYYY-MM, keeping every filter): the
    month shown (the one the period ends in, outside a month view), the one before and, up to
    the current month, the one after."""
    tz = query.org.tzinfo
    in_month = request.GET.get("range") == "month" or bool(request.GET.get("month"))
    in_month = in_month and not (request.GET.get("start") or request.GET.get("end"))
    moment = query.start if in_month else query.end - timedelta(microseconds=1)
    shown = moment.astimezone(tz).date().replace(day=1)
    previous = (shown - timedelta(days=1)).replace(day=1)
    following = (shown + timedelta(days=32)).replace(day=1)

    def link(month):
        url = url_with(request.path, request.GET, drop=MONTH_DROP, range="month", month=f"{month:%Y-%m}")
        return Link(f"{month:%Y-%m}", f"{month:%B %Y}", url, in_month and month == shown)

    this_month = timezone.now().astimezone(tz).date().replace(day=1)
    return {
        "previous": link(previous),
        "shown": link(shown),
        "next": link(following) if following <= this_month else None,
    }


def page_number(request) -> int:
    try:
        return max(1, min(int(request.GET.get("page") or 1), 1_000_000))
    except ValueError:
        return 1


ANALYTICS_SECTIONS = {
    "analytics-body": "body",
    "analytics-kpis": "kpis",
    "analytics-cost": "cost",
    "analytics-projects": "projects",
    "analytics-agents": "agents",
    "analytics-services": "services",
    "analytics-requests": "requests",
}


@login_required
@require_GET
@vary_on_headers("HX-Request")
def analytics(request, org_slug: str):
    """Month navigation and refresh; KPIs; cost by service type (bars and doughnut, one legend) and
    by project; project trends; top agents; a card per service type; the requests table.

    `?export=csv` with the page's filters streams the requests as CSV instead.
    """
    context = page_context(request, org_slug, "analytics")
    query, form = context["query"], context["filter_form"]
    if request.GET.get("export") == "csv":
        if query is None:
            return HttpResponse(form.error_text(), status=400, content_type="text/plain; charset=utf-8")
        return requests_csv(query)
    section = htmx_section(request, ANALYTICS_SECTIONS)
    if query is not None:
        currency = query.org.currency

        def wants(name):
            return section in (None, "body", name)

        if section is None:
            context["month_nav"] = month_navigation(request, query)
        interval = chart_interval(query.start, query.end, form.cleaned_data.get("interval") or None)
        buckets = metering.Buckets.of(query.org, query.start, query.end, interval)
        context["interval_label"] = INTERVAL_LABELS[interval].lower()
        if wants("kpis"):
            context["summary"] = metering.summary(query)
        if wants("cost"):
            overview = selectors.cost_by_service_type(query, buckets)
            context["cost_overview"] = overview
            context["cost_doughnut"] = doughnut_spec(
                overview.slices, currency=currency, empty_text="No cost", title="Cost by service type"
            )
        if wants("projects"):
            trend_service = request.GET.get("trend_service")
            trend_service = trend_service if trend_service in ServiceType.values else ""
            slices = selectors.cost_by_project(query)
            trends = selectors.project_trends(query, buckets, service_type=trend_service or None)
            shown = trends[: selectors.TOP_TREND_PROJECTS]
            context.update(
                project_slices=slices,
                project_doughnut=doughnut_spec(
                    slices, currency=currency, empty_text="No cost", title="Cost by project"
                ),
                trend_service=trend_service,
                trend_choices=[("", "All service types"), *ServiceType.choices],
                trend_hidden=[
                    (name, value)
                    for name in request.GET
                    if name not in (*TABLE_PARAMS, "trend_service", "section")
                    for value in request.GET.getlist(name)
                ],
                trend_count=(len(shown), len(trends)),
                trend_series=shown,
            )
        if wants("agents"):
            agents_path = reverse("agents", args=[query.org.slug])
            top = selectors.top_agents(query)
            for agent in top:
                agent.url = url_with(agents_path, request.GET, drop=(*TABLE_PARAMS, "trend_service"), agent=agent.name)
            context["top_agents"] = top
        if wants("services"):
            context["service_cards"] = selectors.service_type_cards(query, buckets, currency=currency)
            context["service_views"] = selectors.SERVICE_VIEWS
        if wants("requests"):
            requests_page = selectors.request_page(query, page_number(request))

            def page_url(number):
                return url_with(request.path, request.GET, page=number if number > 1 else None)

            context.update(
                requests_page=requests_page,
                previous_url=page_url(requests_page.number - 1) if requests_page.has_previous else "",
                next_url=page_url(requests_page.number + 1) if requests_page.has_next else "",
                export_url=url_with(request.path, request.GET, drop=TABLE_PARAMS, export="csv"),
            )
        add_charts(context, buckets, ANALYTICS_CHARTS)
    return render_section(request, "analytics", context, section)


AGENTS_SECTIONS = {"agents-kpis": "kpis", "agents-chart": "chart", "agents-table": "table"}
AGENT_COLUMNS = (
    Column("label", "Agent", numeric=False),
    Column("sessions", "Sessions"),
    Column("avg_cost_per_session", "Avg cost / session"),
    Column("avg_duration_seconds", "Avg duration"),
    Column("total_tokens", "Tokens"),
    Column("requests", "Requests"),
    Column("cost", "Cost"),
    Column("accept_rate", "Accept rate"),
)
AGENT_INTERVALS = ("1h", "day", "week")


@login_required
@require_GET
@vary_on_headers("HX-Request")
def agents(request, org_slug: str):
    """Per agent: sessions, average cost and duration, tokens and accept rate (a table that agrees
    with the by-agent API row for row), and a metric per day or week stacked by agent."""
    context = page_context(request, org_slug, "agents")
    query, form = context["query"], context["filter_form"]
    section = htmx_section(request, AGENTS_SECTIONS)
    if query is not None:
        if section in (None, "kpis"):
            summary = metering.session_summary(query)
            accepted, rejected = summary["accepted_diffs"], summary["rejected_diffs"]
            context.update(
                summary=summary,
                avg_duration=duration_text(summary["avg_session_duration_seconds"]),
                accepted_diffs=accepted,
                rejected_diffs=rejected,
                accept_rate=round(accepted / (accepted + rejected), 4) if accepted + rejected else None,
            )
        if section in (None, "chart"):
            metric = form.cleaned_data.get("metric") or "cost"
            interval = chart_interval(query.start, query.end, form.cleaned_data.get("interval") or None)
            buckets = metering.Buckets.of(query.org, query.start, query.end, interval)
            choices = [i for i in AGENT_INTERVALS if i != "1h" or query.end - query.start <= timedelta(days=7)]
            context.update(
                metric=metric,
                metric_links=[
                    Link(key, label, url_with(request.path, request.GET, drop=TABLE_PARAMS, metric=key), key == metric)
                    for key, label in selectors.AGENT_METRICS
                ],
                interval_links=interval_links(
                    request, choices if interval in choices else [*choices, interval], interval
                ),
                agent_series=selectors.agent_series(query, buckets, metric),
            )
            add_charts(context, buckets, AGENT_CHARTS[metric], interval=INTERVAL_LABELS[interval].lower())
        if section in (None, "table"):
            rows = selectors.agent_rows(query)
            context["columns"] = AGENT_COLUMNS
            context.update(table_context(request, rows, AGENT_COLUMNS, default_sort="cost", per_page=25))
    return render_section(request, "agents", context, section)


RESOURCES_SECTIONS = {
    "resources-llm": "llm",
    "resources-consumers": "consumers",
    "resources-compute": "compute",
    "resources-storage": "storage",
    "resources-platform": "platform",
}


@login_required
@require_GET
@vary_on_headers("HX-Request")
def resources(request, org_slug: str):
    """LLM tokens (cached and fresh input, output), requests, top consumers and models; compute
    core-hours and RAM GB-hours; storage GB-hours; threads and messages. Buckets as DESIGN
    section 6 says (24 h: 5 min, 7 days: 1 h, 30 days: 6 h) unless `interval` picks another."""
    context = page_context(request, org_slug, "resources")
    query, form = context["query"], context["filter_form"]
    section = htmx_section(request, RESOURCES_SECTIONS)
    if query is not None:
        interval = form.cleaned_data.get("interval") or metering.interval_for(query.start, query.end)
        buckets = metering.Buckets.of(query.org, query.start, query.end, interval)
        choices = interval_choices(query.start, query.end, interval)
        context["interval_links"] = interval_links(request, choices, interval, drop=())
        context["interval_label"] = INTERVAL_LABELS[interval].lower()
        if section in (None, "llm"):
            context["llm"] = selectors.usage_totals(query)
            context["token_series"] = selectors.token_series(query, buckets)
            context["models"] = selectors.tokens_by_model(query)
        if section in (None, "llm", "consumers"):
            by = "agent" if request.GET.get("consumers") == "agent" else "user"
            context["consumers_by"] = by
            context["consumer_links"] = [
                Link(
                    key,
                    label,
                    url_with(request.path, request.GET, consumers=key if key == "agent" else None),
                    key == by,
                )
                for key, label in selectors.CONSUMERS
            ]
            context["consumers"] = selectors.top_consumers(query, by)
        if section in (None, "compute", "storage"):
            context["resources"] = selectors.resource_overview(query, buckets)
        if section in (None, "platform"):
            context["platform"] = selectors.platform_activity(query, buckets)
        add_charts(context, buckets, RESOURCES_CHARTS)
    return render_section(request, "resources", context, section)
