from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import render
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from accounts.access import Scope, scopes_for_user
from accounts.models import Membership, Organization, Role, Team, User
from dashboards import selectors
from dashboards.forms import TABLE_PARAMS, Column, FilterBar, Link, TableForm, table_headers, url_with
from metering import selectors as metering


@dataclass
class OrgPlace:
    """One org on the home page, as the viewer stands in it."""

    scope: Scope
    own_teams: list[Team] = field(default_factory=list)
    # Teams the viewer may see the people of, each with `member_count`:
    # all of them for an admin, their own for a manager, none for a member.
    visible_teams: list[Team] = field(default_factory=list)
    people_count: int | None = None

    @property
    def org(self) -> Organization:
        return self.scope.org

    @property
    def via_superuser(self) -> bool:
        return self.scope.via_superuser

    @property
    def role_label(self) -> str:
        return Role(self.scope.role).label


def org_places_for(user: User) -> list[OrgPlace]:
    """Every org `user` can open, in the order `access.default_org_for` picks from.

    A fixed number of queries however many orgs and teams: the scopes (access
    gate), then every team the viewer belongs to or may see with its member
    count, then the people of the orgs they administer.
    """
    places = [OrgPlace(scope=scope) for scope in scopes_for_user(user)]
    admin_org_ids = [p.org.pk for p in places if p.scope.role == Role.ADMIN]
    own_team_ids = {team_id for p in places for team_id in p.scope.team_ids}
    teams = Team.objects.filter(Q(org_id__in=admin_org_ids) | Q(pk__in=own_team_ids)).annotate(
        member_count=Count("memberships")
    )
    for team in teams:  # ordered by name
        for place in places:
            if place.org.pk != team.org_id:
                continue
            if team.pk in place.scope.team_ids:
                place.own_teams.append(team)
            if place.scope.role == Role.ADMIN or (place.scope.role == Role.MANAGER and team.pk in place.scope.team_ids):
                place.visible_teams.append(team)
    if admin_org_ids:
        people = dict(
            Membership.objects.filter(org_id__in=admin_org_ids)
            .order_by()
            .values("org_id")
            .annotate(n=Count("id"))
            .values_list("org_id", "n")
        )
        for place in places:
            if place.scope.role == Role.ADMIN:
                place.people_count = people.get(place.org.pk, 0)
    return places


@login_required
@require_GET
def home(request):
    places = org_places_for(request.user)
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
    from accounts.access import scope_for_request
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


def _page(page_name: str):
    @login_required
    @require_GET
    def view(request, org_slug: str):
        return render(request, f"dashboards/{page_name}.html", page_context(request, org_slug, page_name))

    view.__name__ = page_name
    return view


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


def chart_buckets(request, query, form) -> tuple[metering.Buckets, dict]:
    """The buckets of the page's charts, and the links that pick another interval."""
    interval = selectors.chart_interval(query.start, query.end, form.cleaned_data.get("interval") or None)
    links = [
        Link(
            choice,
            selectors.INTERVAL_LABELS[choice],
            url_with(request.path, request.GET, drop=TABLE_PARAMS, interval=choice),
            choice == interval,
        )
        for choice in selectors.interval_choices(query.start, query.end, interval)
    ]
    return metering.Buckets.of(query.org, query.start, query.end, interval), {"interval_links": links}


def table_context(request, rows: list, columns: tuple[Column, ...], *, default_sort: str, per_page: int) -> dict:
    """Search (q), sort and page `rows` as the URL says; totals of every row the search keeps."""
    state = TableForm(request.GET, columns=columns, default_sort=default_sort).state()
    matched = selectors.search_rows(rows, state.q)
    page = selectors.page_of(selectors.sort_rows(matched, state.sort, state.descending), state.page, per_page)

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
            series = selectors.tokens_by_project(query, buckets)
            context.update(links)
            context["tokens_series"] = series
            context["tokens_chart"] = selectors.chart_spec(
                buckets, series, empty_text="No tokens in this period", title="Tokens by project"
            )
        if section in (None, "leaderboard"):
            rows = selectors.leaderboard(query)
            context.update(table_context(request, rows, LEADERBOARD_COLUMNS, default_sort="cost", per_page=10))
            context["leading"] = ("#",)
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
            context["activity_chart"] = selectors.chart_spec(
                buckets,
                breakdown.chart,
                kind="bar" if by == "user" else "stacked-bar",
                empty_text="No requests in this period",
                title="Active users" if by == "user" else "Requests by team",
                integer=True,
            )
            columns = USAGE_COLUMNS[by]
            context["columns"] = columns
            context.update(table_context(request, breakdown.rows, columns, default_sort="cost", per_page=25))
            if section != "activity":
                selectors.add_models(query, by, context["table"].rows)
            context["between"] = ("Trend", "Models")
            context["table_noun"] = f"{by}s"
    return render_section(request, "usage", context, section)


analytics = _page("analytics")
agents = _page("agents")
resources = _page("resources")
